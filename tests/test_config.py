import json

import pytest
from helpers import tiny_config

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
    # label smoothing lifted BERT4Rec on Beauty over three seeds, not SASRec (docs/benchmarks/beauty.md)
    assert (bert.label_smoothing, sasrec.label_smoothing) == (0.1, 0.0)
    # BERT4Rec trains 80 epochs without early stopping: three seeds 0.0204 against 0.0197 with 50
    assert (bert.epochs, bert.patience) == (80, None)
    assert (sasrec.epochs, sasrec.patience) == (50, 10)
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


@pytest.mark.parametrize(
    ("preset", "hidden", "heads", "depth", "max_len", "epochs"),
    [
        # SPEC.md, use-case presets: hidden / heads / depth / max length / epochs
        ("video-streaming", 128, 4, 3, 50, 20),
        ("ecommerce-session", 64, 2, 2, 20, 15),
        ("music-playlist", 96, 3, 3, 30, 25),
    ],
)
def test_use_case_presets_carry_the_specs_values(preset, hidden, heads, depth, max_len, epochs):
    for model_type in ("bert4rec", "sasrec"):
        cfg = build_config(preset).for_model(model_type)
        assert (cfg.model.hidden_size, cfg.model.num_heads, cfg.model.num_layers) == (hidden, heads, depth)
        assert (cfg.model.max_len, cfg.train.epochs) == (max_len, epochs)


@pytest.mark.parametrize("preset", ["video-streaming", "ecommerce-session", "music-playlist"])
def test_use_case_presets_build_models_that_run(preset):
    import torch

    from bert4rec.models import build_transformer
    from bert4rec.training.losses import training_loss

    for model_type in ("bert4rec", "sasrec"):
        cfg = build_config(preset).for_model(model_type)
        model = build_transformer(model_type, cfg.model, n_items=40)
        seq = torch.randint(1, 41, (3, cfg.model.max_len))
        labels = torch.zeros_like(seq)
        labels[:, -1] = seq[:, -1]
        assert torch.isfinite(training_loss(model, seq, labels))
        assert model.predict(seq).shape == (3, 41)


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"train": {"epoch": 3}}, "did you mean train.epochs?"),
        ({"model": {"hidden": 32}}, "did you mean model.hidden_size?"),
        ({"trian": {"epochs": 3}}, "did you mean train?"),
        ({"model_typ": "sasrec"}, "did you mean model_type?"),
        ({"per_model": {"sasrec": {"train": {"batch_sise": 64}}}}, "did you mean train.batch_size?"),
    ],
)
def test_a_mistyped_field_suggests_the_closest_valid_one(overrides, hint):
    with pytest.raises(ConfigError) as err:
        build_config("demo", overrides)
    assert hint in str(err.value) and "Extra inputs are not permitted" in str(err.value)


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(ConfigError) as err:
        build_config(None, {"data": {"xyzzy": 1}})
    assert "data.xyzzy" in str(err.value) and "did you mean" not in str(err.value)


def test_a_config_file_with_a_mistyped_field_gets_the_suggestion(tmp_path):
    from bert4rec.config import load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train": {"epoch": 3}}))
    with pytest.raises(ConfigError, match=r"config.json: .*train.epoch.*did you mean train.epochs\?"):
        load_config(path)


def test_describe_fields_covers_every_field_with_a_description():
    from bert4rec.config import DataConfig, EvalConfig, ModelConfig, TrainConfig, describe_fields

    rows = {row["field"]: row for row in describe_fields()}
    for section, model in (
        ("data", DataConfig),
        ("model", ModelConfig),
        ("train", TrainConfig),
        ("eval", EvalConfig),
    ):
        assert {f"{section}.{name}" for name in model.model_fields} <= set(rows)
    assert all(row["description"] for row in rows.values()), [
        f for f, r in rows.items() if not r["description"]
    ]
    assert rows["train.epochs"]["default"] == 50 and rows["train.epochs"]["type"] == "int"
    assert rows["train.grad_clip"]["type"] == "float | None" and "value" not in rows["train.epochs"]
    preset = {row["field"]: row for row in describe_fields("ml-1m", "sasrec")}
    assert preset["train.epochs"]["value"] == 100 and preset["model.hidden_size"]["value"] == 128
    with pytest.raises(ConfigError, match="unknown preset"):
        describe_fields("nope")
    for name in PRESETS:  # every preset can be listed, also those for a file format
        assert len(describe_fields(name)) == len(rows)


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


def test_baseline_settings_are_config_fields_the_baselines_read(tiny_prepared, tmp_path):
    from bert4rec.models.baselines import build_baseline
    from bert4rec.pipeline import train_and_evaluate

    cfg = build_config(None, parse_overrides(["baselines.item_knn.k_neighbors=3", "baselines.mf.factors=8"]))
    assert build_baseline("item_knn", cfg.baselines).config.k_neighbors == 3
    assert build_baseline("mf", cfg.baselines).config.factors == 8
    assert build_baseline("item_knn").config.k_neighbors == 100  # the defaults
    tiny = tiny_config().model_copy(update={"baselines": cfg.baselines})
    run = train_and_evaluate("item_knn", tiny, tiny_prepared, tmp_path, progress=False)
    assert run.record["config"]["baseline"]["k_neighbors"] == 3
    assert run.scorer.similarity.getnnz(axis=1).max() <= 3  # the fitted model kept 3 neighbours
    with pytest.raises(
        ConfigError, match=r"baselines\.mf\.factors: Input should be greater than or equal to 1"
    ):
        build_config(None, {"baselines": {"mf": {"factors": 0}}})


def test_per_model_entries_of_a_baseline_must_change_something():
    per_mf = build_config(None, {"per_model": {"mf": {"baselines": {"mf": {"iterations": 2}}}}})
    assert per_mf.for_model("mf").baselines.mf.iterations == 2
    assert per_mf.for_model("bert4rec").baselines.mf.iterations == 15
    with pytest.raises(
        ConfigError, match=r"per_model\.mf\.train changes nothing .*\(baselines\.mf\.<field>\)"
    ):
        build_config(None, {"per_model": {"mf": {"train": {"lr": 0.1}}}})
    with pytest.raises(ConfigError, match="popularity has no settings"):
        build_config(None, {"per_model": {"popularity": {"model": {"max_len": 5}}}})
