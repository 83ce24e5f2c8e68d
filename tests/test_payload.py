"""The spec's training payload: names, defaults, JSON/YAML files, errors naming the field."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from bert4rec.artifacts import bundle_version
from bert4rec.cli import app
from bert4rec.payload import FIELD_MAP, PayloadError, TrainingPayload, load_payload, parse_payload

REQUIRED = {"data_path": "events.csv", "user_column": "user", "item_column": "item", "timestamp_column": "ts"}

# every field of the spec's training payload table, with the spec's default
SPEC_DEFAULTS = {
    "max_sequence_length": 50,
    "sequence_sampling": "sliding_window",
    "masking_ratio": 0.15,
    "hidden_size": 64,
    "model_depth": 2,
    "attention_heads": 4,
    "batch_size": 128,
    "training_epochs": 10,
    "learning_rate": 0.001,
    "dropout_rate": 0.1,
    "weight_tying": False,
    "gradient_clipping": 1,
    "use_attention_mask": True,
    "negative_samples": 100,
    "top_k": 10,
}


def _errors(raw: object) -> dict[str, str]:
    with pytest.raises(PayloadError) as info:
        parse_payload(raw)
    return dict(info.value.errors)


def test_contract_spec_names_and_defaults():
    """The spec's names are the payload's fields, with the spec's defaults."""
    payload = parse_payload(REQUIRED)
    for name, default in SPEC_DEFAULTS.items():
        assert getattr(payload, name) == default, name
    assert {"user_column", "item_column", "timestamp_column", "metadata_columns", "display_name"} <= set(
        TrainingPayload.model_fields
    )
    required = {n for n, f in TrainingPayload.model_fields.items() if f.is_required()}
    assert required == {"data_path", "user_column", "item_column", "timestamp_column"}
    # every field is mapped somewhere (or documented as special)
    special = {"use_attention_mask", "model_type", "preset"}
    assert set(TrainingPayload.model_fields) - special == set(FIELD_MAP)


def test_spec_defaults_reach_the_config():
    cfg = parse_payload(REQUIRED).to_config()
    assert cfg.model_type == "bert4rec"
    assert (cfg.data.dataset, str(cfg.data.path)) == ("file", "events.csv")
    assert (cfg.data.user_col, cfg.data.item_col, cfg.data.time_col) == ("user", "item", "ts")
    m, t = cfg.model, cfg.train
    assert (m.max_len, m.hidden_size, m.num_layers, m.num_heads, m.dropout, m.tie_weights) == (
        50, 64, 2, 4, 0.1, False,
    )  # fmt: skip
    assert (t.mask_prob, t.batch_size, t.epochs, t.lr, t.grad_clip, t.windows_per_user) == (
        0.15, 128, 10, 0.001, 1.0, None,
    )  # fmt: skip
    assert cfg.eval.n_negatives == 100 and 10 in cfg.eval.ks
    assert not m.content_fusion


def test_every_field_maps_onto_the_config():
    raw = {
        **REQUIRED,
        "model_type": "sasrec",
        "items_path": "items.csv",
        "metadata_columns": ["title", "category", "description"],
        "display_name": "title",
        "max_sequence_length": 20,
        "sequence_sampling": "last_window",
        "masking_ratio": 0.3,
        "hidden_size": 96,
        "model_depth": 3,
        "attention_heads": 3,
        "batch_size": 64,
        "training_epochs": 7,
        "learning_rate": 0.004,
        "dropout_rate": 0.25,
        "weight_tying": True,
        "gradient_clipping": 0,
        "negative_samples": 50,
        "top_k": 7,
    }
    cfg = parse_payload(raw).to_config()
    assert cfg.model_type == "sasrec"
    assert str(cfg.data.items_path) == "items.csv" and cfg.data.display_col == "title"
    assert cfg.data.metadata_cols == ["title", "category", "description"]
    assert cfg.model.content_fusion  # the spec: metadata columns activate the hybrid engine
    assert (cfg.model.max_len, cfg.model.hidden_size, cfg.model.num_layers, cfg.model.num_heads) == (
        20,
        96,
        3,
        3,
    )
    assert cfg.model.dropout == 0.25 and cfg.model.tie_weights
    assert (cfg.train.mask_prob, cfg.train.batch_size, cfg.train.epochs, cfg.train.lr) == (0.3, 64, 7, 0.004)
    assert cfg.train.grad_clip is None  # 0 turns clipping off
    assert cfg.train.windows_per_user == 1
    assert cfg.eval.n_negatives == 50 and 7 in cfg.eval.ks


def test_metadata_columns_turn_on_the_hybrid_with_tied_weights():
    """Without weight_tying given, the hybrid ties the output vectors (they carry the text part)."""
    cfg = parse_payload({**REQUIRED, "metadata_columns": ["title"]}).to_config()
    assert cfg.model.content_fusion and cfg.model.tie_weights
    untied = parse_payload({**REQUIRED, "metadata_columns": ["title"], "weight_tying": False}).to_config()
    assert untied.model.content_fusion and not untied.model.tie_weights


def test_preset_keeps_its_values_for_fields_left_out():
    cfg = parse_payload({**REQUIRED, "preset": "ml-1m", "training_epochs": 3}).to_config()
    assert cfg.train.epochs == 3  # given: the payload wins
    assert cfg.train.lr == 4e-3 and cfg.model.max_len == 50  # the preset's BERT4Rec values
    assert cfg.model.num_heads == 2 and cfg.train.mask_prob == 0.2
    assert cfg.data.dataset == "file"  # the payload's data, not ML-1M
    # an explicit learning rate beats the preset's per-model one
    assert (
        parse_payload({**REQUIRED, "preset": "ml-1m", "learning_rate": 0.002}).to_config().train.lr == 0.002
    )


def test_json_and_yaml_files_round_trip_to_the_same_config(tmp_path):
    raw = {**REQUIRED, "max_sequence_length": 30, "metadata_columns": ["title"], "weight_tying": True}
    (tmp_path / "p.json").write_text(json.dumps(raw))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "p.yml").write_text(yaml.safe_dump(raw))
    configs = [load_payload(tmp_path / name).to_config() for name in ("p.json", "p.yaml", "p.yml")]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0] == parse_payload(raw).to_config()
    # the payload itself round-trips through its JSON form
    payload = load_payload(tmp_path / "p.yaml")
    assert parse_payload(payload.model_dump(mode="json")) == payload


def test_unknown_field_is_named_with_the_closest_valid_one():
    errors = _errors({**REQUIRED, "max_seq_length": 20, "epochs": 3})
    assert "did you mean 'max_sequence_length'" in errors["max_seq_length"]
    assert "unknown field" in errors["epochs"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_sequence_length", 1, "greater than or equal to 2"),
        ("masking_ratio", 1.5, "less than 1"),
        ("hidden_size", "wide", "valid integer"),
        ("model_depth", 0, "greater than or equal to 1"),
        ("batch_size", -1, "greater than or equal to 1"),
        ("training_epochs", 0, "greater than or equal to 1"),
        ("learning_rate", 0, "greater than 0"),
        ("dropout_rate", 1.0, "less than 1"),
        ("sequence_sampling", "random", "sliding_window"),
        ("negative_samples", 0, "greater than or equal to 1"),
        ("top_k", 0, "greater than or equal to 1"),
        ("gradient_clipping", -1, "greater than or equal to 0"),
        ("model_type", "gpt", "bert4rec"),
        ("preset", "nope", "unknown preset"),
        ("metadata_columns", ["title", "title"], "distinct"),
        ("use_attention_mask", False, "padding positions are never attended"),
    ],
)
def test_each_bad_field_is_named(field, value, expected):
    errors = _errors({**REQUIRED, field: value})
    assert list(errors) == [field]
    assert expected in errors[field]


def test_heads_must_divide_hidden_size():
    errors = _errors({**REQUIRED, "hidden_size": 30, "attention_heads": 4})
    assert list(errors) == ["attention_heads"]
    assert "hidden_size (30) must be divisible by attention_heads (4)" in errors["attention_heads"]


def test_missing_required_fields_are_named():
    errors = _errors({"user_column": "user"})
    assert set(errors) == {"data_path", "item_column", "timestamp_column"}
    assert _errors(["not", "a", "mapping"]).keys() == {"payload"}


def test_bad_files_are_named(tmp_path):
    with pytest.raises(PayloadError, match="file not found"):
        load_payload(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("user_column: [unclosed\n")
    with pytest.raises(PayloadError, match=r"bad.yaml.*invalid YAML at line"):
        load_payload(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text('{"user_column": }')
    with pytest.raises(PayloadError, match=r"invalid JSON at line 1"):
        load_payload(tmp_path / "bad.json")


def test_cli_train_with_a_payload_file(tmp_path, tiny_prepared):
    """`train --payload` trains on the payload's file and columns; errors are one line, exit 2."""
    frame = tiny_prepared.interactions.frame.rename({"user_id": "user", "item_id": "item", "timestamp": "ts"})
    frame.write_csv(tmp_path / "events.csv")
    payload = {
        **REQUIRED,
        "data_path": str(tmp_path / "events.csv"),
        "max_sequence_length": 12,
        "hidden_size": 16,
        "attention_heads": 2,
        "model_depth": 1,
        "training_epochs": 1,
        "batch_size": 64,
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(payload))
    runner = CliRunner()
    out = tmp_path / "run"
    progress = tmp_path / "progress.json"
    args = ["train", "--payload", str(tmp_path / "job.yaml"), "--out", str(out), "--no-progress"]
    result = runner.invoke(
        app, [*args, "--examples", "0", "--progress-file", str(progress), "--set", "train.num_threads=1"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results" / "results_bert4rec.json").read_text())
    assert record["config"]["model"]["max_len"] == 12 and record["config"]["data"]["user_col"] == "user"
    assert record["config"]["train"]["num_threads"] == 1  # --set applies over the payload
    assert (bundle_version(out / "bert4rec" / "model") / "model.safetensors").exists()
    state = json.loads(progress.read_text())
    assert state["stage"] == "trained" and state["epoch"] == 1 and state["step"] > 0
    assert state["val_ndcg@10"] is not None and state["elapsed_s"] >= 0

    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({**payload, "model_deph": 2}))
    bad = runner.invoke(app, ["train", "--payload", str(tmp_path / "typo.yaml"), "--out", str(out)])
    assert bad.exit_code == 2 and "did you mean 'model_depth'" in bad.output
    both = runner.invoke(app, [*args, "--preset", "demo"])
    assert both.exit_code == 2 and "drop --preset" in both.output
