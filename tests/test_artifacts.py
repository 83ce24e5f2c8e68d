import json
import shutil

import numpy as np
import pytest
import torch

from bert4rec import artifacts
from bert4rec.artifacts import bundle_version, full_sequences, load_bundle, save_bundle
from bert4rec.errors import ArtifactError
from bert4rec.evaluation.scoring import TransformerScorer


def test_bundle_round_trip_gives_identical_scores(tiny_artifact, tiny_prepared):
    bundle = load_bundle(tiny_artifact)
    assert bundle.config.model_type == "bert4rec"
    assert bundle.vocab.item_ids == tiny_prepared.split.vocab.item_ids
    assert {"full", "sampled_uniform", "sampled_popularity"} <= set(bundle.metrics)
    assert bundle.run["data_fingerprint"] == tiny_prepared.split.fingerprint
    seqs = full_sequences(tiny_prepared.split)
    assert all(np.array_equal(a, b) for a, b in zip(bundle.sequences, seqs, strict=True))
    assert bundle.items is not None and "title" in bundle.items.columns
    # a second load scores exactly the same
    again = load_bundle(tiny_artifact)
    users = np.arange(3)
    torch.testing.assert_close(
        TransformerScorer(bundle.model).score(users, seqs[:3]),
        TransformerScorer(again.model).score(users, seqs[:3]),
    )
    assert not any(p.suffix in (".pkl", ".pickle", ".pt", ".ckpt") for p in tiny_artifact.rglob("*")), (
        "no pickle"
    )


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(tiny_artifact, dst)
    return dst


@pytest.fixture
def live(artifact_copy):
    """The folder holding the copy's current files (the version CURRENT points at)."""
    return bundle_version(artifact_copy)


def test_missing_folder_and_missing_manifest(tmp_path, artifact_copy, live):
    with pytest.raises(ArtifactError, match="not a folder"):
        load_bundle(tmp_path / "nope")
    (live / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_bundle(artifact_copy)


def test_corrupted_weights_are_detected(artifact_copy, live):
    path = live / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model.safetensors is corrupted"):
        load_bundle(artifact_copy)


def test_missing_required_file(artifact_copy, live):
    (live / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match="vocab.json"):
        load_bundle(artifact_copy)


def test_config_that_does_not_match_the_weights(artifact_copy, live):
    cfg_path = live / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["hidden_size"] = 32
    cfg_path.write_text(json.dumps(cfg))
    manifest = json.loads((live / "manifest.json").read_text())
    manifest["files"]["config.json"] = artifacts._sha256(cfg_path)  # a consistent-looking but wrong bundle
    manifest["sizes"]["config.json"] = cfg_path.stat().st_size
    (live / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not match config.json"):
        load_bundle(artifact_copy)


def test_unsupported_format_version(artifact_copy, live):
    manifest = json.loads((live / "manifest.json").read_text())
    manifest["format_version"] = 99
    (live / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format 99 is not supported"):
        load_bundle(artifact_copy)


def test_failed_save_leaves_nothing_behind(tmp_path, tiny_prepared, monkeypatch):
    from bert4rec.config import ModelConfig, build_config
    from bert4rec.models import BERT4Rec

    cfg = build_config("demo")
    model = BERT4Rec(ModelConfig(max_len=8, hidden_size=8, num_heads=2), tiny_prepared.split.n_items)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "_write_json", boom)
    target = tmp_path / "out" / "model"
    with pytest.raises(OSError, match="disk full"):
        save_bundle(
            target,
            config=cfg,
            model=model,
            split=tiny_prepared.split,
            items=None,
            display_col=None,
            metrics={},
            run={},
        )
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == [], "temporary folder was removed"


def test_overwriting_an_existing_bundle_is_atomic(tmp_path, tiny_prepared, tiny_artifact):
    bundle = load_bundle(tiny_artifact)
    target = tmp_path / "model"
    for _ in range(2):
        save_bundle(
            target,
            config=bundle.config,
            model=bundle.model,
            split=tiny_prepared.split,
            items=bundle.items,
            display_col="title",
            metrics={"x": 1},
            run={},
        )
    assert load_bundle(target).metrics == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
