"""Invalid or unaffordable configurations are one clear error before anything is allocated or written."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_config
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.config import build_config, load_config, parse_overrides
from bert4rec.errors import ConfigError
from bert4rec.resources import ENV, check_training_memory, memory_budget, training_memory

DEMO = ["--preset", "demo", "--set", "data.n_users=60", "--set", "data.n_items=30", "--no-progress"]


@pytest.mark.parametrize(
    "sets,match",
    [
        (["train=5", "train.lr=1"], "train is a section"),
        (["train.lr=1", "train=5"], "replaces the section train"),
        (["=3"], "empty field name"),
        (["train..lr=1"], "empty field name"),
        (["train.lr"], "must look like section.field=value"),
    ],
)
def test_conflicting_or_malformed_overrides_are_one_config_error(sets, match):
    with pytest.raises(ConfigError, match=match):
        build_config("demo", parse_overrides(sets))


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_numbers_are_refused(value, tmp_path):
    with pytest.raises(ConfigError, match="train.lr: Input should be a finite number"):
        build_config("demo", parse_overrides([f"train.lr={value}"]))
    saved = tmp_path / "config.json"
    saved.write_text(
        json.dumps(build_config("demo").model_dump(mode="json")).replace('"lr": 0.01', f'"lr": {value}')
    )
    with pytest.raises(ConfigError, match="finite number"):
        load_config(saved)


@pytest.mark.parametrize(
    "override,match",
    [
        ("model.max_len=1e12", r"needs at least 466 TiB for 32,000,000,01\d,\d{3}\+ parameters"),
        ("model.hidden_size=1000000000", r"model.hidden_size: 1,000,000,000 needs at least [\d,]+ PiB"),
        (
            'per_model={"sasrec": {"model": {"max_len": 1e12}}}',
            "training sasrec with model.max_len: 1,000,000,000,000",
        ),
    ],
)
def test_sizes_that_cannot_fit_are_refused_with_the_estimate(override, match, monkeypatch):
    monkeypatch.setenv(ENV, "64")
    with pytest.raises(ConfigError, match=match) as err:
        build_config("demo", parse_overrides([override]))
    assert "64.00 GiB is available" in str(err.value) and ENV in str(err.value)


def test_the_memory_check_can_be_overridden(monkeypatch):
    monkeypatch.setenv(ENV, "off")
    assert memory_budget() is None
    assert build_config("demo", parse_overrides(["model.max_len=1e12"])).model.max_len == 10**12
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(ConfigError, match=ENV):
        memory_budget()
    monkeypatch.delenv(ENV)
    assert memory_budget() is None or memory_budget() > 0


def test_the_training_estimate_counts_the_real_parameters(tiny_prepared):
    from bert4rec.models import build_transformer

    cfg = tiny_config()
    split = tiny_prepared.split
    needed, params = training_memory(cfg, split.n_items, split.vocab.n_users, longest=16)
    model = build_transformer(cfg.model_type, cfg.model, split.n_items, split.vocab.n_users)
    assert params == model.num_parameters() or params == sum(p.numel() for p in model.parameters())
    assert needed > params * 4 * 4  # weights, gradients, two Adam moments, plus activations


def test_fit_refuses_before_building_the_model(tiny_prepared, tmp_path, monkeypatch):
    from bert4rec.training.fit import fit_transformer

    monkeypatch.setenv(ENV, "0.0001")  # ~100 KiB: the config alone passes, the data's items do not
    split = tiny_prepared.split
    with pytest.raises(ConfigError, match=f"training bert4rec on {split.n_items} items needs at least"):
        check_training_memory(tiny_config(), split.n_items, split.vocab.n_users, 16)
    with pytest.raises(ConfigError, match="needs at least"):
        fit_transformer(split, tiny_config(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "sets,match",
    [
        (["model.max_len=1e12"], "needs at least"),
        (["model.hidden_size=1000000000"], "needs at least"),
        (["train=5", "train.lr=1"], "train is a section"),
        (["train.lr=Infinity"], "finite number"),
        (["train.lr=-1"], "train.lr: Input should be greater than 0"),
        (["model.max_len=[1]"], "model.max_len"),
    ],
)
def test_cli_invalid_config_is_one_line_and_writes_nothing(tmp_path, sets, match):
    out = tmp_path / "run"
    args = [a for s in sets for a in ("--set", s)]
    result = CliRunner().invoke(app, ["train", *DEMO, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error:") and match in result.output
    assert not out.exists()


def test_cli_refuses_an_unaffordable_model_after_reading_the_data_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "0.0002")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["compare", *DEMO, "--models", "popularity,bert4rec", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "error: training bert4rec on" in result.output and "Traceback" not in result.output
    assert not out.exists(), "refused before the first model (popularity) wrote anything"


def test_a_training_payload_with_absurd_sizes_is_refused_naming_its_field(monkeypatch):
    """POST /jobs and train --payload map the spec's fields onto the config: the same bound holds."""
    from bert4rec.payload import PayloadError, parse_payload

    monkeypatch.setenv(ENV, "64")
    raw = {"data_path": "events.csv", "user_column": "u", "item_column": "i", "timestamp_column": "t"}
    with pytest.raises(PayloadError, match="needs at least") as err:
        parse_payload({**raw, "max_sequence_length": 10**12}).to_config()
    assert "max_sequence_length" in str(err.value)
