"""Genre-level metrics: exact values on hand-built cases, the genre matrix, the evaluator, tables,
trackers, the report and the pipeline."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import polars as pl
import pytest
import torch

from bert4rec.config import EvalConfig
from bert4rec.data.sequences import SequenceSplit
from bert4rec.data.vocab import Vocab
from bert4rec.errors import ConfigError
from bert4rec.evaluation.evaluator import Evaluator
from bert4rec.evaluation.genres import ItemGenres, item_genres
from bert4rec.evaluation.metrics import (
    genre_metrics_per_user,
    genre_ndcg,
    genre_ndcg_per_user,
    genre_precision,
    genre_precision_per_user,
)
from bert4rec.evaluation.results import make_record, markdown_table, write_records
from bert4rec.training.tracking import flatten_metrics, mlflow_key

LOG3 = math.log2(3)


def make_split(sequences: list[list[int]], n_items: int) -> SequenceSplit:
    """Leave-one-out by hand: last item = test target, second last = validation (>= 3 items each)."""
    train = [np.asarray(s[:-2], dtype=np.int64) for s in sequences]
    val = np.array([s[-2] for s in sequences], dtype=np.int64)
    test = np.array([s[-1] for s in sequences], dtype=np.int64)
    vocab = Vocab([f"i{j}" for j in range(1, n_items + 1)], [f"u{u}" for u in range(len(sequences))])
    return SequenceSplit(vocab, train, val, test, {})


class FixedScorer:
    """The same item scores for every user."""

    name = "fixed"

    def __init__(self, item_scores: np.ndarray) -> None:
        self.item_scores = torch.as_tensor(item_scores, dtype=torch.float32)

    def score(self, users: np.ndarray, histories: object) -> torch.Tensor:
        return self.item_scores.expand(len(users), -1)


# genres A, B, C of items 1..6 (row 0 = PAD): 1 {A}, 2 {A,B}, 3 {B}, 4 {C}, 5 {A,B}, 6 {} (none)
GENRES = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0]],
    dtype=bool,
)


# --------------------------------------------------------------------------- pure metric functions


def test_genre_precision_counts_items_sharing_any_genre_over_k():
    # target 2 {A,B}: 1 shares A, 4 shares nothing, 3 shares B -> 2 of 3
    assert genre_precision([[1, 4, 3]], [2], GENRES, 3) == pytest.approx(2 / 3)
    # one shared genre is enough (an exact-set match would give 0 here)
    assert genre_precision([[1, 3]], [2], GENRES, 2) == pytest.approx(1.0)
    # always divided by k: an empty slot (index 0) is not rewarded
    assert genre_precision([[3, 0, 0]], [2], GENRES, 3) == pytest.approx(1 / 3)
    # the prefix of a longer list
    assert genre_precision([[4, 1, 3]], [2], GENRES, 1) == 0.0


def test_genre_ndcg_is_jaccard_graded_and_normalised_by_the_best_catalogue_list():
    # rel = Jaccard with {A,B}: item 1 -> 1/2, item 4 -> 0, item 3 -> 1/2
    dcg = 0.5 / 1 + 0.0 / LOG3 + 0.5 / 2
    # best list over items 1..6: rel 1 (item 2), 1 (item 5), 1/2 -> IDCG = 1 + 1/log2(3) + 0.5/2
    idcg = 1 + 1 / LOG3 + 0.5 / 2
    assert genre_ndcg([[1, 4, 3]], [2], GENRES, 3) == pytest.approx(dcg / idcg)
    # binary relevance (shares a genre = 1) would give (1 + 1/2) / idcg_binary, not this value
    assert genre_ndcg([[1, 4, 3]], [2], GENRES, 3) != pytest.approx((1 + 0.5) / (1 + 1 / LOG3 + 0.5))
    # excluding item 5 from the candidates lowers the ideal list to rel 1, 1/2, 1/2
    excluded = np.zeros((1, 7), dtype=bool)
    excluded[0, 5] = True
    idcg_without_5 = 1 + 0.5 / LOG3 + 0.5 / 2
    assert genre_ndcg([[1, 4, 3]], [2], GENRES, 3, excluded) == pytest.approx(dcg / idcg_without_5)
    # the ideal list itself scores 1
    assert genre_ndcg([[2, 5, 1]], [2], GENRES, 3) == pytest.approx(1.0)


def test_users_whose_target_has_no_genre_are_left_out_not_zero():
    top = [[1, 4, 3], [1, 2, 3]]
    targets = [2, 6]  # item 6 has no genre
    per_user = genre_precision_per_user(top, targets, GENRES, 3)
    assert per_user[0].item() == pytest.approx(2 / 3) and math.isnan(per_user[1].item())
    assert math.isnan(genre_ndcg_per_user(top, targets, GENRES, 3)[1].item())
    assert genre_precision(top, targets, GENRES, 3) == pytest.approx(2 / 3)  # mean over user 0 only
    assert math.isnan(genre_precision([[1]], [6], GENRES, 1))  # nobody to average


def test_all_cutoffs_in_one_pass_equal_separate_calls():
    rng = np.random.default_rng(0)
    genres = rng.random((41, 5)) < 0.3
    genres[0] = False
    top = torch.as_tensor(rng.integers(0, 41, size=(30, 10)))
    targets = torch.as_tensor(rng.integers(1, 41, size=30))
    excluded = torch.as_tensor(rng.random((30, 41)) < 0.2)
    excluded[torch.arange(30), targets] = False
    together = genre_metrics_per_user(top, targets, genres, [1, 5, 10], excluded)
    for k in (1, 5, 10):
        alone_p = genre_precision_per_user(top, targets, genres, k)
        alone_n = genre_ndcg_per_user(top, targets, genres, k, excluded)
        torch.testing.assert_close(together[f"genre_precision@{k}"], alone_p, equal_nan=True)
        torch.testing.assert_close(together[f"genre_ndcg@{k}"], alone_n, equal_nan=True)
        defined = together[f"genre_ndcg@{k}"][~torch.isnan(together[f"genre_ndcg@{k}"])]
        assert ((defined >= 0) & (defined <= 1 + 1e-9)).all()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="top 3 items"):
        genre_precision([[1, 2]], [2], GENRES, 3)
    with pytest.raises(ValueError, match="item indices"):
        genre_precision([[1, 9]], [2], GENRES, 2)
    with pytest.raises(ValueError, match="multi-hot"):
        genre_ndcg([[1]], [2], GENRES[:, 0], 1)
    with pytest.raises(ValueError, match="k must be"):
        genre_ndcg([[1]], [2], GENRES, 0)


# --------------------------------------------------------------------------- genre matrix


def test_item_genres_splits_trims_casefolds_and_maps_to_indices():
    vocab = Vocab([10, 20, 30, 40], ["u"])
    items = pl.DataFrame(
        {
            "item_id": [10, 20, 30, 99, 40],
            "genres": ["Action|Comedy", " comedy | Drama", None, "Horror", ""],
            "title": ["a", "b", "c", "d", "e"],
        }
    )
    genres = item_genres(items, vocab, "genres")
    assert genres is not None and genres.column == "genres"
    assert genres.names == ["Action", "Comedy", "Drama"]  # Horror belongs to an untrained item
    expected = np.array([[0, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(genres.matrix, expected)
    assert genres.n_items_with_genres == 2


def test_item_genres_from_a_list_or_a_single_category_column():
    vocab = Vocab(["a", "b", "c"], ["u"])
    listed = pl.DataFrame({"item_id": ["a", "b", "c"], "tags": [["x", "y"], ["y"], []]})
    genres = item_genres(listed, vocab, "tags")
    assert genres is not None and genres.names == ["x", "y"]
    np.testing.assert_array_equal(genres.matrix[1:], [[1, 1], [0, 1], [0, 0]])
    category = pl.DataFrame({"item_id": ["a", "b", "c"], "category_id": [7, 7, 3]})
    genres = item_genres(category, vocab, "category_id")
    assert genres is not None and genres.names == ["3", "7"]
    np.testing.assert_array_equal(genres.matrix[1:], [[0, 1], [0, 1], [1, 0]])


def test_missing_genre_column_is_skipped_by_default_and_an_error_when_named():
    vocab = Vocab([1, 2], ["u"])
    items = pl.DataFrame({"item_id": [1, 2], "title": ["a", "b"]})
    assert item_genres(items, vocab, "genres") is None
    assert item_genres(None, vocab, "genres") is None
    assert item_genres(items, vocab, None) is None
    with pytest.raises(ConfigError, match=r"eval.genre_column='category'.*'title'"):
        item_genres(items, vocab, "category")
    with pytest.raises(ConfigError, match="no item table"):
        item_genres(None, vocab, "category")
    empty = pl.DataFrame(
        {"item_id": [1, 2], "genres": [None, ""]}, schema={"item_id": pl.Int64, "genres": pl.Utf8}
    )
    assert item_genres(empty, vocab, "genres") is None


# --------------------------------------------------------------------------- evaluator


def tiny_case() -> tuple:
    """User 0: 5, 1, 2 (test target 2 {A,B}, input history 5, 1); user 1: 3, 4, 6 (target 6, no genre)."""
    split = make_split([[5, 1, 2], [3, 4, 6]], n_items=6)
    genres = ItemGenres("genres", ["A", "B", "C"], GENRES)
    # the same scores for both users: 1 > 5 > 3 > 4 > 2 > 6
    scorer = FixedScorer(np.array([0.0, 1.0, 0.7, 0.9, 0.8, 0.95, 0.1]))
    return split, genres, scorer


def test_evaluator_genre_metrics_exact_with_seen_items_filtered():
    split, genres, scorer = tiny_case()
    out = Evaluator(split, EvalConfig(ks=[1, 3]), genres).evaluate(scorer)
    full = out["full"]
    # user 0's list after excluding its history (1, 5): 3, 4, 2, 6; candidates 2, 3, 4, 6
    assert full["genre_precision@1"] == pytest.approx(1.0)  # item 3 shares B
    assert full["genre_precision@3"] == pytest.approx(2 / 3)  # 3 and 2 (the target) share, 4 does not
    assert full["genre_precision@10"] == pytest.approx(2 / 10)  # 6 items only: the rest of the 10 are empty
    assert full["genre_ndcg@1"] == pytest.approx(0.5)  # rel(3) = 1/2, best candidate rel 1
    assert full["genre_ndcg@3"] == pytest.approx((0.5 + 1 / 2) / (1 + 0.5 / LOG3))
    # user 1's target has no genre: averaged over user 0 only, and said so
    assert out["protocol"]["genres"]["n_users"] == 1 and out["n_users"] == 2
    assert out["protocol"]["genres"]["column"] == "genres"
    # genre metrics are for the full ranking only
    for mode in ("sampled_uniform", "sampled_popularity"):
        assert not any(key.startswith("genre_") for key in out[mode])


def test_evaluator_ideal_list_follows_the_candidates_without_filtering():
    split, genres, scorer = tiny_case()
    full = Evaluator(split, EvalConfig(ks=[3], filter_seen=False), genres).evaluate(scorer)["full"]
    # list 1, 5, 3: rel 1/2, 1, 1/2; ideal over all items: 1, 1, 1/2
    dcg = 0.5 + 1 / LOG3 + 0.5 / 2
    assert full["genre_ndcg@3"] == pytest.approx(dcg / (1 + 1 / LOG3 + 0.5 / 2))
    assert full["genre_precision@3"] == pytest.approx(1.0)


def test_evaluator_emits_genre_metrics_only_with_genres():
    split, genres, scorer = tiny_case()
    without = Evaluator(split, EvalConfig()).evaluate(scorer)
    assert not any(key.startswith("genre_") for key in without["full"])
    assert "genres" not in without["protocol"]
    with_genres = Evaluator(split, EvalConfig(), genres).evaluate(scorer)
    # the exact-item metrics do not change
    for key, value in without["full"].items():
        assert with_genres["full"][key] == value
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        Evaluator(split, EvalConfig(), ItemGenres("genres", ["A"], np.zeros((3, 1), dtype=bool)))


def test_evaluator_batches_and_chunks_do_not_change_genre_metrics(monkeypatch):
    rng = np.random.default_rng(3)
    split = make_split([list(rng.choice(np.arange(1, 41), size=8, replace=False)) for _ in range(50)], 40)
    matrix = rng.random((41, 6)) < 0.3
    matrix[0] = False
    genres = ItemGenres("genres", list("abcdef"), matrix)
    scorer = FixedScorer(rng.random(41))
    a = Evaluator(split, EvalConfig(batch_size=7), genres).evaluate(scorer, modes=("full",))["full"]
    b = Evaluator(split, EvalConfig(batch_size=512), genres).evaluate(scorer, modes=("full",))["full"]
    assert a == pytest.approx(b)
    monkeypatch.setattr("bert4rec.evaluation.evaluator.GENRE_CHUNK_ELEMENTS", 41 * 3)  # 3 users a chunk
    c = Evaluator(split, EvalConfig(batch_size=512), genres).evaluate(scorer, modes=("full",))["full"]
    assert c == pytest.approx(b)
    assert 0 < a["genre_ndcg@10"] < 1 and 0 < a["genre_precision@10"] < 1


# --------------------------------------------------------------------------- results, trackers, report


def genre_record(model: str) -> dict:
    split, genres, scorer = tiny_case()
    metrics = Evaluator(split, EvalConfig(), genres).evaluate(scorer)
    return make_record(model, "tiny", metrics, 1.0, {})


def test_results_json_and_table_carry_the_genre_metrics(tmp_path):
    record = genre_record("fixed")
    _, table = write_records([record], tmp_path, "run")
    saved = json.loads((tmp_path / "run_fixed.json").read_text())
    assert saved["metrics"]["full"]["genre_precision@10"] == pytest.approx(0.2)
    assert "genre_ndcg@10" in saved["metrics"]["full"]
    text = table.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert "genre P@10" in header and "genre NDCG@10" in header
    assert "| 0.2000 |" in text
    # no genre columns for data without genres
    plain = dict(record, metrics={**record["metrics"], "full": {"hr@10": 0.1, "ndcg@10": 0.05}})
    assert "genre" not in markdown_table([plain]).split("\n")[2]


def test_trackers_get_the_genre_metrics_with_mlflow_safe_names():
    flat = flatten_metrics(genre_record("fixed"))
    assert flat["test/full/genre_precision@10"] == pytest.approx(0.2)
    assert "test/full/genre_ndcg@10" in flat
    assert mlflow_key("test/full/genre_ndcg@10") == "test/full/genre_ndcg_at_10"


def test_report_has_a_genre_section_only_with_genre_metrics(tmp_path):
    from bert4rec.report import genre_section, render_report

    records = [genre_record("fixed"), genre_record("other")]
    html = genre_section(records)
    assert html is not None and 'id="genre-table"' in html and "0.2000" in html and "Jaccard" in html
    plain = dict(records[0], metrics={**records[0]["metrics"], "full": {"hr@10": 0.1}})
    assert genre_section([plain]) is None
    write_records(records, tmp_path / "results", "results")
    page = render_report(tmp_path)
    assert 'id="genres"' in page and "genre NDCG@10" in page


# --------------------------------------------------------------------------- pipeline


def test_pipeline_reports_genre_metrics_on_generated_data_with_genres(tiny_prepared, tmp_path):
    from helpers import tiny_config

    from bert4rec.pipeline import train_and_evaluate

    assert tiny_prepared.interactions.items is not None
    assert "genres" in tiny_prepared.interactions.items.columns
    for model in ("sasrec", "popularity"):
        cfg = tiny_config(epochs=1)
        run = train_and_evaluate(model, cfg, tiny_prepared, tmp_path, progress=False, save_artifact=False)
        full = run.record["metrics"]["full"]
        assert 0.0 <= full["genre_ndcg@10"] <= 1.0 and 0.0 <= full["genre_precision@10"] <= 1.0
        assert run.record["metrics"]["protocol"]["genres"]["n_users"] > 0

    # genre metrics turned off, or the data has no genres column: left out (not zero)
    off = tiny_config().model_copy(update={"eval": EvalConfig(genre_column=None)})
    run = train_and_evaluate("popularity", off, tiny_prepared, tmp_path, progress=False)
    assert not any(k.startswith("genre_") for k in run.record["metrics"]["full"])
    items = tiny_prepared.interactions.items.drop("genres")
    no_genres = dataclasses.replace(
        tiny_prepared, interactions=dataclasses.replace(tiny_prepared.interactions, items=items)
    )
    run = train_and_evaluate("popularity", tiny_config(), no_genres, tmp_path, progress=False)
    assert not any(k.startswith("genre_") for k in run.record["metrics"]["full"])

    # a named column the data lacks fails before any training
    bad = tiny_config().model_copy(update={"eval": EvalConfig(genre_column="category")})
    with pytest.raises(ConfigError, match="eval.genre_column='category'"):
        train_and_evaluate("bert4rec", bad, tiny_prepared, tmp_path, progress=False)
