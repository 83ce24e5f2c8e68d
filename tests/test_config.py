import json

import pytest

from bert4rec.config import (
    PRESETS,
    ExperimentConfig,
    ModelConfig,
    build_config,
    load_config,
    option_overrides,
    parse_overrides,
)
from bert4rec.errors import ConfigError


def test_defaults_round_trip_through_json(tmp_path):
    cfg = build_config("ml-1m", {"train": {"epochs": 3}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))
    assert load_config(path) == cfg
    assert cfg.model.max_len == 200 and cfg.train.mask_prob == 0.2 and cfg.train.epochs == 3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_validates(preset):
    # presets for a file format (e.g. beauty) need the file's path
    needs_path = PRESETS[preset].get("data", {}).get("dataset") == "file"
    overrides = {"data": {"path": "interactions.txt"}} if needs_path else None
    assert isinstance(build_config(preset, overrides), ExperimentConfig)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'ml-2m'.*ml-1m"):
        build_config("ml-2m")


def test_hidden_not_divisible_by_heads_is_a_clear_error():
    with pytest.raises(
        ConfigError, match=r"model: .*hidden_size \(64\) must be divisible by num_heads \(3\)"
    ):
        build_config(None, {"model": {"hidden_size": 64, "num_heads": 3}})
    with pytest.raises(ValueError):
        ModelConfig(hidden_size=10, num_heads=4)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"train": {"lr": -1}}, "train.lr"),
        ({"train": {"mask_prob": 1.5}}, "train.mask_prob"),
        ({"model": {"max_len": 1}}, "model.max_len"),
        ({"train": {"batch_size": "big"}}, "train.batch_size"),
        ({"train": {"epoch": 3}}, "train.epoch"),  # typo: extra fields are forbidden
        ({"eval": {"ks": [0, 10]}}, "eval"),
    ],
)
def test_invalid_hyperparameters_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"invalid configuration: {field}"):
        build_config(None, overrides)


def test_replacement_probabilities_must_leave_room():
    with pytest.raises(ConfigError, match="mask_token_prob"):
        build_config(None, {"train": {"mask_token_prob": 0.9, "random_token_prob": 0.2}})


def test_parse_overrides_nests_and_parses_json():
    assert parse_overrides(["train.epochs=5", "model.tie_weights=false", "data.dataset=ml-100k"]) == {
        "train": {"epochs": 5},
        "model": {"tie_weights": False},
        "data": {"dataset": "ml-100k"},
    }
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_overrides(["epochs"])


def test_file_dataset_needs_a_path():
    with pytest.raises(ConfigError, match="data: .*needs `path`"):
        build_config(None, {"data": {"dataset": "file"}})


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)


def test_per_model_overrides_apply_only_to_that_model():
    cfg = build_config("ml-1m", {"per_model": {"sasrec": {"model": {"dropout": 0.3}}}})
    assert cfg.for_model("sasrec").model.dropout == 0.3
    assert cfg.for_model("sasrec").model_type == "sasrec"
    assert cfg.for_model("bert4rec").model.dropout == 0.1
    # the ml-1m preset's own per-model learning rates survive a per_model override of another field
    assert cfg.for_model("bert4rec").train.lr == pytest.approx(4e-3)
    assert cfg.for_model("sasrec").train.lr == pytest.approx(2e-3)


def test_explicit_settings_beat_the_presets_per_model_defaults():
    preset = build_config("ml-1m")
    assert preset.for_model("bert4rec").model.max_len == 50  # the preset's per-model default
    assert preset.for_model("sasrec").model.max_len == 200
    assert preset.for_model("sasrec").train.lr == pytest.approx(2e-3)
    assert preset.for_model("sasrec").model.hidden_size == 128
    assert preset.for_model("sasrec").train.batch_size == 64
    assert preset.for_model("bert4rec").train.batch_size == 128
    assert (
        build_config("ml-1m", parse_overrides(["train.batch_size=256"])).for_model("sasrec").train.batch_size
        == 256
    )
    assert preset.for_model("bert4rec").model.hidden_size == 64
    width = build_config("ml-1m", parse_overrides(["model.hidden_size=96"]))
    assert width.for_model("sasrec").model.hidden_size == width.for_model("bert4rec").model.hidden_size == 96
    cfg = build_config("ml-1m", parse_overrides(["model.max_len=100"]))
    assert cfg.for_model("bert4rec").model.max_len == 100
    # the preset's other per-model values stay
    assert cfg.for_model("bert4rec").train.lr == pytest.approx(4e-3)
    assert cfg.for_model("sasrec").train.lr == pytest.approx(2e-3)
    lr = build_config("ml-1m", parse_overrides(["train.lr=1e-3"]))
    assert lr.for_model("bert4rec").train.lr == lr.for_model("sasrec").train.lr == pytest.approx(1e-3)
    assert lr.for_model("bert4rec").model.max_len == 50
    # a per_model setting the user gives is the most specific and wins
    both = build_config(
        "ml-1m", {"model": {"max_len": 100}, "per_model": {"bert4rec": {"model": {"max_len": 30}}}}
    )
    assert both.for_model("bert4rec").model.max_len == 30
    assert both.for_model("sasrec").model.max_len == 100


def test_beauty_preset_weights_positions_alike_with_each_models_loss():
    beauty = build_config("beauty", {"data": {"path": "beauty.txt.gz"}})
    sasrec, bert = beauty.for_model("sasrec").train, beauty.for_model("bert4rec").train
    assert (sasrec.loss, sasrec.loss_weighting) == ("full", "position")
    assert (bert.loss, bert.loss_weighting) == ("sampled", "position")
    mine = build_config("beauty", {"data": {"path": "b.txt"}, "train": {"loss_weighting": "batch"}})
    assert mine.for_model("sasrec").train.loss_weighting == "batch"  # an explicit setting wins


def test_invalid_per_model_override_names_the_field():
    with pytest.raises(ConfigError, match="num_heads"):
        build_config(None, {"per_model": {"bert4rec": {"model": {"num_heads": "many"}}}})
    with pytest.raises(ConfigError, match="per_model"):
        build_config(None, {"per_model": {"gpt": {}}})


def test_option_overrides_combine_sets_data_dir_and_budget():
    out = option_overrides(["train.epochs=3"], data_dir="/data", max_minutes=2.5)
    assert out == {"train": {"epochs": 3, "max_minutes": 2.5}, "data": {"data_dir": "/data"}}
    assert option_overrides([]) == {}


def test_item_text_columns_turn_the_hybrid_on_and_false_opts_out():
    assert build_config("ml-1m").model.content_fusion is False
    on = build_config("ml-1m", {"data": {"metadata_cols": ["title", "genres"]}})
    assert on.model.content_fusion is True
    assert on.for_model("sasrec").model.content_fusion is True  # the decision is saved in the config
    assert build_config(
        None, {"data": {"dataset": "file", "path": "x.csv", "items_path": "i.csv"}}
    ).model.content_fusion
    off = build_config("ml-1m", {"data": {"metadata_cols": ["title"]}, "model": {"content_fusion": False}})
    assert off.model.content_fusion is False
