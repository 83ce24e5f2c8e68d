"""Checkpoints are untrusted input: `--resume` and the end-of-fit reload never unpickle code and
never follow a path out of the run's checkpoint folder."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import tiny_config
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.errors import ArtifactError
from bert4rec.training.fit import fit_transformer, load_checkpoint


class _Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any code an attacker would run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.marker, "w"))


def _malicious_checkpoint(path, marker) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "epoch": 0, "payload": _Payload(str(marker))}, path)


def test_the_crafted_checkpoint_would_run_code_under_a_plain_torch_load(tmp_path):
    """The payload is real: without weights_only it creates the marker (so the tests below can fail)."""
    marker = tmp_path / "pwned"
    _malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(tmp_path / "evil.ckpt", weights_only=False)
    assert marker.exists()


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path, tiny_prepared):
    marker = tmp_path / "pwned"
    _malicious_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(ArtifactError, match="not a plain weights checkpoint") as err:
        fit_transformer(
            tiny_prepared.split, tiny_config(epochs=1), tmp_path / "run", resume=True, progress=False
        )
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_load_checkpoint_refuses_symlinks_devices_and_paths_outside_the_folder(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    elsewhere = tmp_path / "elsewhere.ckpt"
    torch.save({"state_dict": {}}, elsewhere)
    (ckpt_dir / "last.ckpt").symlink_to(elsewhere)
    with pytest.raises(ArtifactError, match="symbolic link"):
        load_checkpoint(ckpt_dir / "last.ckpt", ckpt_dir)
    with pytest.raises(ArtifactError, match="outside the run's checkpoint folder"):
        load_checkpoint(ckpt_dir / ".." / "elsewhere.ckpt", ckpt_dir)
    (ckpt_dir / "dir.ckpt").mkdir()
    with pytest.raises(ArtifactError, match="not a regular file"):
        load_checkpoint(ckpt_dir / "dir.ckpt", ckpt_dir)
    (ckpt_dir / "cut.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ArtifactError, match="cannot be read|not a plain weights"):
        load_checkpoint(ckpt_dir / "cut.ckpt", ckpt_dir)
    torch.save([1, 2, 3], ckpt_dir / "list.ckpt")
    with pytest.raises(ArtifactError, match="no state_dict"):
        load_checkpoint(ckpt_dir / "list.ckpt", ckpt_dir)


def test_resume_refuses_a_checkpoint_naming_files_outside_the_run(tmp_path, tiny_prepared):
    """Lightning deletes the "previous best" a checkpoint names: a tampered name must not reach it."""
    run = tmp_path / "run"
    fit_transformer(tiny_prepared.split, tiny_config(epochs=1), run, progress=False)
    last = run / "checkpoints" / "last.ckpt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    checkpoint = torch.load(last, weights_only=True)
    key = next(k for k in checkpoint["callbacks"] if k.startswith("ModelCheckpoint"))
    checkpoint["callbacks"][key]["best_k_models"] = {
        str(run / "checkpoints" / ".." / ".." / "victim.txt"): 1.0
    }
    torch.save(checkpoint, last)
    before = last.read_bytes()
    with pytest.raises(ArtifactError, match="refers to a file outside"):
        fit_transformer(tiny_prepared.split, tiny_config(epochs=2), run, resume=True, progress=False)
    assert victim.read_text() == "keep me" and last.read_bytes() == before


def test_a_normal_checkpoint_loads_weights_only(tmp_path, tiny_prepared):
    run = tmp_path / "run"
    result = fit_transformer(tiny_prepared.split, tiny_config(epochs=1), run, progress=False)
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt", run / "checkpoints")
    assert checkpoint["state_dict"].keys() and result.best_checkpoint


def test_cli_resume_with_a_malicious_checkpoint_prints_one_line(tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "pwned"
    _malicious_checkpoint(out / "bert4rec" / "checkpoints" / "last.ckpt", marker)
    args = [
        "--preset",
        "demo",
        "--set",
        "data.n_users=60",
        "--set",
        "data.n_items=30",
        "--set",
        "model.max_len=8",
    ]
    result = CliRunner().invoke(app, ["train", *args, "--out", str(out), "--resume", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "not a plain weights checkpoint" in result.output
    assert not marker.exists()
    assert os.listdir(out / "bert4rec" / "checkpoints") == ["last.ckpt"]
