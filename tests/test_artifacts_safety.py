"""Bundles are untrusted input (every tamper case is one ArtifactError line that quotes no file
content) and saving over a bundle never leaves no bundle, wherever the save is killed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from bert4rec import artifacts
from bert4rec.artifacts import POINTER, bundle_version, load_bundle, save_bundle
from bert4rec.cli import app
from bert4rec.errors import ArtifactError

SECRET = "SECRET-CONTENT-7f3a"  # planted in tampered files: no error message may quote it


@pytest.fixture
def copy(tiny_artifact, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(tiny_artifact, dst)
    return dst


def _resign(live: Path, name: str) -> None:
    """Update the manifest's digest and size of `name`, as a careful attacker would."""
    manifest = json.loads((live / "manifest.json").read_text())
    manifest["files"][name] = artifacts._sha256(live / name)
    manifest["sizes"][name] = (live / name).stat().st_size
    (live / "manifest.json").write_text(json.dumps(manifest))


def _edit_manifest(live: Path, **changes: object) -> None:
    manifest = json.loads((live / "manifest.json").read_text())
    manifest.update(changes)
    (live / "manifest.json").write_text(json.dumps(manifest))


def _refused(path: Path, match: str) -> str:
    with pytest.raises(ArtifactError, match=match) as err:
        load_bundle(path)
    message = str(err.value)
    assert "\n" not in message and SECRET not in message
    return message


@pytest.mark.parametrize("content", ["[]", '"x"', "1", "null", '{"format_version": 1, "files": []}'])
def test_manifest_of_the_wrong_json_type(copy, content):
    (bundle_version(copy) / "manifest.json").write_text(content)
    _refused(copy, "manifest.json is corrupted|not supported")


def test_manifest_names_outside_the_folder_are_refused(copy, tmp_path):
    live = bundle_version(copy)
    (tmp_path / "outside.json").write_text(SECRET)
    manifest = json.loads((live / "manifest.json").read_text())
    for name in ("../../outside.json", "/etc/passwd", "/dev/zero", "sub/config.json", "content.safetensors"):
        manifest["files"] = {**manifest["files"], name: "0" * 64}
        (live / "manifest.json").write_text(json.dumps(manifest))
        message = _refused(copy, "not a bundle file")
        assert "passwd" not in message and "outside.json" not in message
        del manifest["files"][name]


@pytest.mark.parametrize("target", ["/dev/zero", "real-file"])
def test_a_symlinked_file_is_refused_without_reading_it(copy, tmp_path, target):
    live = bundle_version(copy)
    weights = live / "model.safetensors"
    if target == "real-file":
        shutil.copy(weights, tmp_path / "weights")
        target = str(tmp_path / "weights")
    weights.unlink()
    weights.symlink_to(target)
    _refused(copy, "not a regular file")


def test_a_fifo_is_refused_without_blocking(copy):
    live = bundle_version(copy)
    (live / "vocab.json").unlink()
    os.mkfifo(live / "vocab.json")
    _refused(copy, "not a regular file")


def test_sizes_are_checked_before_reading(copy, monkeypatch):
    live = bundle_version(copy)
    with open(live / "metrics.json", "r+b") as f:  # a sparse 1 GiB file
        f.truncate(1 << 30)
    _refused(copy, "metrics.json has 1073741824 bytes but the manifest says")
    manifest = json.loads((live / "manifest.json").read_text())
    manifest["sizes"]["metrics.json"] = 1 << 30  # sizes agree, but more than the memory budget
    (live / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("BERT4REC_MEMORY_LIMIT_GB", "0.5")
    _refused(copy, r"needs at least 1.00 GiB for its files but only 0.50 GiB")


@pytest.mark.parametrize("field,value", [("max_len", 10**12), ("hidden_size", 10**9)])
def test_absurd_sizes_in_config_are_refused_without_allocating(copy, field, value):
    live = bundle_version(copy)
    config = json.loads((live / "config.json").read_text())
    config["model"][field] = value
    (live / "config.json").write_text(json.dumps(config))
    _resign(live, "config.json")
    _refused(copy, "does not match config.json")


def test_a_non_transformer_model_type_is_refused(copy):
    live = bundle_version(copy)
    _edit_manifest(live, model_type="popularity")
    _refused(copy, "only Transformer models")
    _edit_manifest(live, model_type="bert4rec")
    config = json.loads((live / "config.json").read_text())
    config["model_type"] = "mf"
    (live / "config.json").write_text(json.dumps(config))
    _resign(live, "config.json")
    _refused(copy, "config.json says model_type 'mf'")


def test_a_config_with_planted_values_is_refused_without_quoting_them(copy):
    live = bundle_version(copy)
    config = json.loads((live / "config.json").read_text())
    config["model_type"] = SECRET
    config["train"]["lr"] = SECRET
    (live / "config.json").write_text(json.dumps(config))
    _resign(live, "config.json")
    _refused(copy, "config.json is not a valid configuration")


@pytest.mark.parametrize("bad", ["too_high", "zero", "offsets"])
def test_out_of_range_stored_sequences_are_refused(copy, bad):
    live = bundle_version(copy)
    data = load_file(str(live / "data.safetensors"))
    n_items = len(json.loads((live / "vocab.json").read_text())["item_ids"])
    if bad == "too_high":
        data["items"][3] = n_items + 5
    elif bad == "zero":
        data["items"][0] = 0
    else:
        data["offsets"][2] = 10**9
    save_file(data, str(live / "data.safetensors"))
    _resign(live, "data.safetensors")
    _refused(copy, "inconsistent with vocab.json")


def test_a_vocab_of_the_wrong_types_is_refused(copy):
    live = bundle_version(copy)
    vocab = json.loads((live / "vocab.json").read_text())
    vocab["item_ids"][0] = [SECRET]
    (live / "vocab.json").write_text(json.dumps(vocab))
    _resign(live, "vocab.json")
    _refused(copy, "item_ids must be a list of ints and strings")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_and_serve_does_not_start(copy, value):
    live = bundle_version(copy)
    weights = load_file(str(live / "model.safetensors"))
    weights = {k: torch.full_like(v, value) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, str(live / "model.safetensors"))
    _resign(live, "model.safetensors")
    _refused(copy, "NaN or infinite")
    pytest.importorskip("fastapi")
    from bert4rec.api import create_app

    with pytest.raises(ArtifactError, match="NaN or infinite"):
        create_app(copy)


@pytest.mark.parametrize("pointer", ["../../etc", "v-does-not-exist", SECRET + "/x", ""])
def test_a_tampered_pointer_is_refused(copy, pointer):
    (copy / POINTER).write_text(pointer)
    message = _refused(copy, "CURRENT")
    assert "etc" not in message


def test_cli_prints_one_line_for_a_tampered_bundle(copy):
    live = bundle_version(copy)
    (live / "manifest.json").write_text(f'["{SECRET}"]')
    for args in (["recommend", "--model", str(copy), "--user", "1"], ["evaluate", "--model", str(copy)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and SECRET not in result.output
        assert result.output.count("error:") == 1 and "manifest.json is corrupted" in result.output


def test_a_bundle_written_before_versioning_still_loads_and_is_upgraded(copy, tmp_path, tiny_prepared):
    old = tmp_path / "old"
    shutil.copytree(bundle_version(copy), old)  # the files directly in the folder, no CURRENT
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["sizes"]  # as written before sizes were recorded
    (old / "manifest.json").write_text(json.dumps(manifest))
    bundle = load_bundle(old)
    assert bundle.path == old
    _save(old, bundle, tiny_prepared, {"saved": "again"})
    assert load_bundle(old).metrics == {"saved": "again"}
    assert sorted(p.name for p in old.iterdir() if not p.name.startswith("v-")) == [POINTER]


# ------------------------------------------------------------------------------ atomic replace


def _save(path: Path, bundle, prepared, metrics: dict) -> Path:  # type: ignore[no-untyped-def]
    return save_bundle(
        path,
        config=bundle.config,
        model=bundle.model,
        split=prepared.split,
        items=bundle.items,
        display_col=bundle.display_col,
        metrics=metrics,
        run={},
    )


def _steps(tmp_path, bundle, prepared, monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    monkeypatch.setattr(artifacts, "_save_step", seen.append)
    _save(tmp_path / "probe", bundle, prepared, {})
    monkeypatch.undo()
    return seen


class _Killed(BaseException):
    pass


def test_a_save_interrupted_at_every_step_leaves_a_loadable_bundle(
    tmp_path, tiny_artifact, tiny_prepared, monkeypatch
):
    bundle = load_bundle(tiny_artifact)
    steps = _steps(tmp_path, bundle, tiny_prepared, monkeypatch)
    assert {"model.safetensors", "manifest.json", "pointer written", "switched"} <= set(steps)
    for step in steps:
        target = tmp_path / step.replace(" ", "_")
        _save(target, bundle, tiny_prepared, {"generation": "old"})

        def die(at: str, step: str = step) -> None:
            if at == step:
                raise _Killed(step)

        monkeypatch.setattr(artifacts, "_save_step", die)
        with pytest.raises(_Killed):
            _save(target, bundle, tiny_prepared, {"generation": "new"})
        monkeypatch.undo()
        switched = steps.index(step) >= steps.index("switched")
        assert load_bundle(target).metrics == {"generation": "new" if switched else "old"}, step
        _save(target, bundle, tiny_prepared, {"generation": "next"})  # and the next save works
        assert load_bundle(target).metrics == {"generation": "next"}
        assert sorted(p.name for p in target.iterdir())[0] == POINTER and len(list(target.iterdir())) == 2


CHILD = textwrap.dedent(
    """
    import os, sys
    from helpers import tiny_config
    from bert4rec import artifacts
    from bert4rec.pipeline import prepare

    source, target, step = sys.argv[1:]
    bundle = artifacts.load_bundle(source)
    split = prepare(tiny_config()).split
    artifacts._save_step = lambda at: os._exit(17) if at == step else None
    artifacts.save_bundle(target, config=bundle.config, model=bundle.model, split=split,
                          items=bundle.items, display_col=bundle.display_col,
                          metrics={"generation": "new"}, run={})
    """
)
# every on-disk state a hard kill can leave: a half-written version folder, a complete one that
# nothing points at, a pointer temp file beside the old pointer, and the old version after the switch
KILL_STEPS = ("model.safetensors", "manifest.json", "pointer written", "switched")


def test_a_save_killed_with_os_exit_leaves_a_loadable_bundle(tmp_path, tiny_artifact, tiny_prepared):
    """No cleanup runs in a killed process: what it left is ignored by the loader and removed by
    the next save. (The in-process test above interrupts every step; these are real kills.)"""
    bundle = load_bundle(tiny_artifact)
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(artifacts.__file__).parents[1]), tests])}
    children = []
    for step in KILL_STEPS:
        target = tmp_path / step.replace(" ", "_")
        _save(target, bundle, tiny_prepared, {"generation": "old"})
        args = [sys.executable, "-c", CHILD, str(tiny_artifact), str(target), step]
        children.append((target, step, subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)))
    for target, step, child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 17, (step, err[-2000:])
        assert len(list(target.iterdir())) > 2, "the kill left something behind"
        switched = step == "switched"
        assert load_bundle(target).metrics == {"generation": "new" if switched else "old"}, step
        _save(target, bundle, tiny_prepared, {"generation": "next"})
        assert load_bundle(target).metrics == {"generation": "next"}
        names = sorted(p.name for p in target.iterdir())
        assert names[0] == POINTER and len(names) == 2, (step, names)  # stale versions cleaned
