"""Seed ensembles: EnsembleScorer's arithmetic and evaluate_bundles's checks on saved bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_config

from bert4rec.errors import ConfigError, DataError
from bert4rec.evaluation.scoring import EnsembleScorer


class Fixed:
    """A scorer returning the same rows whatever it is asked."""

    def __init__(self, rows: list[list[float]], name: str = "fixed") -> None:
        self.rows = torch.tensor(rows)
        self.name = name

    def score(self, users, histories):  # type: ignore[no-untyped-def]
        return self.rows.clone()


USERS = np.array([0, 1])
HIST = [np.array([1]), np.array([2])]
A = [[9.0, 1.0, 2.0, 3.0], [0.0, 3.0, 0.0, -1.0]]
B = [[-5.0, 2.0, 0.0, 1.0], [7.0, 0.0, 4.0, 0.0]]


def test_log_prob_ensemble_is_the_mean_of_member_log_softmax_over_the_real_items():
    out = EnsembleScorer([Fixed(A), Fixed(B)], combine="log_prob").score(USERS, HIST)
    a, b = torch.tensor(A)[:, 1:], torch.tensor(B)[:, 1:]
    expected = (torch.log_softmax(a, 1) + torch.log_softmax(b, 1)) / 2
    torch.testing.assert_close(out[:, 1:], expected)
    assert bool(torch.isneginf(out[:, 0]).all())  # PAD never ranks, whatever the members gave it


def test_log_prob_ranks_every_user_s_items_as_the_members_summed_raw_scores():
    """log_softmax only subtracts a constant per user and member, so a log_prob ensemble of
    dot-product models ranks as one dot product over the members' concatenated vectors (the way
    to serve it from one vector index)."""
    rng = np.random.default_rng(0)
    members = [rng.normal(size=(5, 9)).tolist() for _ in range(3)]
    out = EnsembleScorer([Fixed(m) for m in members], combine="log_prob").score(np.arange(5), [])
    summed = torch.tensor(members).sum(0)[:, 1:]
    assert torch.equal(out[:, 1:].argsort(1, descending=True), summed.argsort(1, descending=True))
    torch.testing.assert_close(out[:, 1:] - out[:, 1:2], (summed - summed[:, :1]) / 3)


def test_the_default_prob_ensemble_is_the_log_of_the_mean_probability():
    out = EnsembleScorer([Fixed(A), Fixed(B)]).score(USERS, HIST)
    a, b = torch.tensor(A)[:, 1:], torch.tensor(B)[:, 1:]
    expected = ((torch.softmax(a, 1) + torch.softmax(b, 1)) / 2).log()
    torch.testing.assert_close(out[:, 1:], expected)


def test_a_member_shifted_by_a_constant_per_user_changes_nothing():
    """Softmax-trained members agree only up to a constant per user: normalising removes it."""
    shifted = (torch.tensor(B) + torch.tensor([[100.0], [-40.0]])).tolist()
    plain = EnsembleScorer([Fixed(A), Fixed(B)]).score(USERS, HIST)
    moved = EnsembleScorer([Fixed(A), Fixed(shifted)]).score(USERS, HIST)
    torch.testing.assert_close(plain, moved)


def test_members_with_different_vocabularies_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="share one item vocabulary"):
        EnsembleScorer([Fixed(A), Fixed([[0.0, 1.0], [0.0, 1.0]], name="small")]).score(USERS, HIST)
    with pytest.raises(ValueError, match="combine"):
        EnsembleScorer([Fixed(A)], combine="max")
    with pytest.raises(ValueError, match="at least one"):
        EnsembleScorer([])


@pytest.fixture(scope="module")
def sasrec_bundles(tmp_path_factory, tiny_prepared):
    """Tiny SASRec bundles: seeds 1 and 2 of one config, seed 3 with another learning rate, seed 1
    with shorter windows; and a BERT4Rec of seed 1."""
    from bert4rec.pipeline import train_and_evaluate

    short = tiny_config(seed=1)
    short = short.model_copy(update={"model": short.model.model_copy(update={"max_len": 8})})
    out = {}
    for label, kind, cfg in (
        ("s1", "sasrec", tiny_config(seed=1)),
        ("s2", "sasrec", tiny_config(seed=2)),
        ("lr", "sasrec", tiny_config(seed=3, lr=0.005)),
        ("len8", "sasrec", short),
        ("bert", "bert4rec", tiny_config(seed=1)),
    ):
        run = train_and_evaluate(kind, cfg, tiny_prepared, tmp_path_factory.mktemp(label), progress=False)
        assert run.artifact is not None
        out[label] = (run.artifact, run.record)
    return out


def test_a_one_member_ensemble_scores_exactly_as_its_member(sasrec_bundles, tiny_prepared):
    """Normalising keeps each user's ranking, so the member's own test metrics come back."""
    from bert4rec.artifacts import load_bundle
    from bert4rec.evaluation.evaluator import Evaluator
    from bert4rec.evaluation.scoring import TransformerScorer

    path, record = sasrec_bundles["s1"]
    bundle = load_bundle(path)
    metrics = Evaluator(tiny_prepared.split, bundle.config.eval).evaluate(
        EnsembleScorer([TransformerScorer(bundle.model)]), which="test"
    )
    for metric in ("ndcg@10", "hr@10", "mrr"):
        assert metrics["full"][metric] == pytest.approx(record["metrics"]["full"][metric], abs=1e-6)


def test_one_bundle_is_re_evaluated_as_it_is(sasrec_bundles):
    from bert4rec.pipeline import evaluate_bundles

    path, record = sasrec_bundles["s1"]
    ev = evaluate_bundles([path])
    assert ev.model == "sasrec" and ev.member_seeds == [1] and ev.combine is None
    assert ev.metrics["full"]["ndcg@10"] == pytest.approx(record["metrics"]["full"]["ndcg@10"], abs=1e-6)
    val = evaluate_bundles([path], which="val")
    assert val.which == "val" and val.metrics["full"] != ev.metrics["full"]


def test_two_seeds_make_one_ensemble_with_its_provenance(sasrec_bundles):
    from bert4rec.pipeline import evaluate_bundles

    ev = evaluate_bundles([sasrec_bundles["s1"][0], sasrec_bundles["s2"][0]], combine="log_prob")
    assert ev.model == "sasrec_ensemble" and ev.member_seeds == [1, 2] and ev.combine == "log_prob"
    assert 0.0 <= ev.metrics["full"]["ndcg@10"] <= 1.0
    assert (
        ev.run["seed"] == 1
        and ev.run["data_fingerprint"] == sasrec_bundles["s1"][1]["run"]["data_fingerprint"]
    )
    assert ev.config["train"]["seed"] == 1
    # each bundle keeps its training seconds: the ensemble's are the members' sum
    seconds = [sasrec_bundles[k][1]["train_seconds"] for k in ("s1", "s2")]
    assert ev.train_seconds == pytest.approx(sum(seconds), abs=0.02) and ev.train_seconds > 0
    assert evaluate_bundles([sasrec_bundles["s1"][0]]).train_seconds == pytest.approx(seconds[0], abs=0.01)


@pytest.mark.parametrize("bad", [None, "12", -1.0, float("nan"), float("inf"), True])
def test_training_seconds_from_an_old_or_odd_bundle_are_unknown_not_fatal(bad):
    from types import SimpleNamespace

    from bert4rec.pipeline import _summed_train_seconds

    good = SimpleNamespace(run={"train_seconds": 10.5})
    odd = SimpleNamespace(run={} if bad is None else {"train_seconds": bad})
    assert _summed_train_seconds([good, good]) == 21.0
    assert _summed_train_seconds([good, odd]) is None


def test_members_must_be_one_config_with_distinct_seeds(sasrec_bundles):
    from bert4rec.pipeline import evaluate_bundles

    with pytest.raises(ConfigError, match="train.lr"):
        evaluate_bundles([sasrec_bundles["s1"][0], sasrec_bundles["lr"][0]])
    with pytest.raises(ConfigError, match="repeat a train.seed"):
        evaluate_bundles([sasrec_bundles["s1"][0], sasrec_bundles["s1"][0]])
    with pytest.raises(ConfigError, match="at least one"):
        evaluate_bundles([])
    with pytest.raises(ConfigError, match="combine must be one of prob, log_prob"):
        evaluate_bundles([sasrec_bundles["s1"][0]], combine="max")
    with pytest.raises(ConfigError, match="which must be 'val' or 'test'"):
        evaluate_bundles([sasrec_bundles["s1"][0]], which="train")


def test_a_mixed_ensemble_takes_members_of_other_settings_and_names_the_differences(
    sasrec_bundles, tiny_prepared
):
    """`mixed=True`: members may differ in model/training settings (each scores its own window
    length) and even share a seed; the differences come back per member."""
    from bert4rec.artifacts import load_bundle
    from bert4rec.evaluation.evaluator import Evaluator
    from bert4rec.evaluation.scoring import TransformerScorer
    from bert4rec.pipeline import evaluate_bundles

    paths = [sasrec_bundles[k][0] for k in ("s1", "len8", "lr")]
    ev = evaluate_bundles(paths, mixed=True)
    assert ev.model == "sasrec_ensemble" and ev.member_seeds == [1, 1, 3]
    assert ev.member_differences == [[], ["model.max_len"], ["train.lr"]]
    members = [TransformerScorer(load_bundle(p).model) for p in paths]
    expected = Evaluator(tiny_prepared.split, load_bundle(paths[0]).config.eval).evaluate(
        EnsembleScorer(members), which="test"
    )
    assert ev.metrics["full"]["ndcg@10"] == pytest.approx(expected["full"]["ndcg@10"], abs=1e-6)
    assert evaluate_bundles(paths[:2], mixed=True).metrics["full"] != ev.metrics["full"]
    # a seed ensemble keeps refusing the same members, and reports no differences
    with pytest.raises(ConfigError, match=r"in more than train.seed \(model.max_len\)"):
        evaluate_bundles([sasrec_bundles["s2"][0], paths[1]])
    assert evaluate_bundles(paths[:1]).member_differences == []


def test_a_mixed_ensemble_still_refuses_another_model_type_and_a_repeated_member(sasrec_bundles):
    from bert4rec.pipeline import evaluate_bundles

    s1, bert = sasrec_bundles["s1"][0], sasrec_bundles["bert"][0]
    with pytest.raises(ConfigError, match="a bert4rec model.*one model type"):
        evaluate_bundles([s1, bert], mixed=True)
    with pytest.raises(ConfigError, match="the same configuration and seed as"):
        evaluate_bundles([s1, sasrec_bundles["s2"][0], s1], mixed=True)


def test_other_data_than_the_members_were_trained_on_is_refused(sasrec_bundles, monkeypatch):
    import bert4rec.pipeline as pipeline

    real_prepare = pipeline.prepare
    other = tiny_config()
    other = other.model_copy(update={"data": other.data.model_copy(update={"n_users": 140})})
    monkeypatch.setattr(pipeline, "prepare", lambda cfg: real_prepare(other))
    with pytest.raises(DataError, match="not the data the model was trained on"):
        pipeline.evaluate_bundles([sasrec_bundles["s1"][0]])


def test_the_cli_evaluates_several_models_as_one_ensemble(sasrec_bundles):
    from typer.testing import CliRunner

    from bert4rec.cli import app

    runner = CliRunner()
    a, b = str(sasrec_bundles["s1"][0]), str(sasrec_bundles["s2"][0])
    result = runner.invoke(app, ["evaluate", "--model", a, "--model", b, "--combine", "log_prob"])
    assert result.exit_code == 0, result.output
    assert "sasrec_ensemble" in result.output and "ndcg@10" in result.output
    lr = str(sasrec_bundles["lr"][0])
    bad = runner.invoke(app, ["evaluate", "--model", a, "--model", lr])
    assert bad.exit_code != 0 and "in more than train.seed (train.lr)" in bad.output
    assert "Traceback" not in bad.output
    mixed = runner.invoke(app, ["evaluate", "--model", a, "--model", lr, "--mixed"])
    assert mixed.exit_code == 0 and "sasrec_ensemble" in mixed.output, mixed.output
