"""Scale-out with Lightning: DDP on CPU (gloo) through the CLI, and mixed precision."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from helpers import tiny_config

from bert4rec.training.fit import fit_transformer, make_train_loader, shard_train_loader

EPOCHS = 4


@pytest.mark.slow
def test_two_cpu_processes_train_like_one(tmp_path, tiny_prepared):
    """`bert4rec train --devices 2 --strategy ddp` (Lightning starts the second process by re-running
    the command; gloo on CPU) against one process with the same global batch (2 x 16 vs 32).

    Exact: each process trains on half of the length buckets; the validation NDCG@10 that early
    stopping saw (split between the processes, sums all-reduced) equals one process's computation
    on the saved weights; only rank 0 printed and wrote results, logs, checkpoints and the model.

    Within noise: test and best validation NDCG@10 match the single process's. The batches differ
    (sharded buckets, another masking stream on rank 1), so the runs are two draws of the same
    training. Over 6 seeds on this data (150 users, 4 epochs) one process's best validation
    NDCG@10 had a std of 0.022 and test NDCG@10 of 0.041; the difference of two draws has
    std ~ sqrt(2) times that (0.031, 0.058), so the tolerances are ~2.5 and ~2 of those.
    """
    from bert4rec.artifacts import load_bundle
    from bert4rec.evaluation.evaluator import Evaluator
    from bert4rec.evaluation.scoring import TransformerScorer
    from bert4rec.pipeline import train_and_evaluate

    split = tiny_prepared.split
    common = {"epochs": EPOCHS, "patience": EPOCHS, "accelerator": "cpu"}
    ddp_cfg = tiny_config(batch_size=16, **common)
    (tmp_path / "config.json").write_text(ddp_cfg.model_dump_json())
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "bert4rec.cli", "train", "--config", str(tmp_path / "config.json")]
    cmd += ["--devices", "2", "--strategy", "ddp", "--out", str(out), "--no-progress", "--examples", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # rank 0 alone printed and wrote
    assert proc.stdout.count("Dataset statistics") == 1
    assert sorted(p.name for p in (out / "results").iterdir()) == ["results.md", "results_bert4rec.json"]
    assert sorted(p.name for p in (out / "bert4rec" / "logs").iterdir()) == ["metrics.csv"]
    assert sorted(p.name for p in (out / "bert4rec" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in out.iterdir()) == ["bert4rec", "results"]

    record = json.loads((out / "results" / "results_bert4rec.json").read_text())
    assert record["epochs"] == EPOCHS and len(record["history"]) == EPOCHS
    # each process ran half of the 16-window buckets per epoch
    steps_per_process = math.ceil(len(make_train_loader(split, ddp_cfg)) / 2)
    last_step = int(
        (out / "bert4rec" / "logs" / "metrics.csv").read_text().strip().splitlines()[-1].split(",")[2]
    )
    assert last_step + 1 == EPOCHS * steps_per_process
    # the synced validation metric is the single-process value on the best weights
    bundle = load_bundle(out / "bert4rec" / "model")
    evaluator = Evaluator(split, ddp_cfg.eval)
    assert record["best_val_ndcg@10"] == pytest.approx(
        evaluator.evaluate_ndcg10(TransformerScorer(bundle.model), which="val"), abs=1e-5
    )

    one = train_and_evaluate(
        "bert4rec", tiny_config(batch_size=32, **common), tiny_prepared, tmp_path / "one", progress=False,
        save_artifact=False,
    ).record  # fmt: skip
    assert record["best_val_ndcg@10"] == pytest.approx(one["best_val_ndcg@10"], abs=0.08)
    assert record["metrics"]["full"]["ndcg@10"] == pytest.approx(one["metrics"]["full"]["ndcg@10"], abs=0.12)


def test_bucket_loader_is_sharded_and_a_plain_one_left_to_lightning(tiny_prepared):
    loader = make_train_loader(tiny_prepared.split, tiny_config())
    assert shard_train_loader(loader, 1) is loader
    sharded = shard_train_loader(loader, 2)
    assert len(sharded) == math.ceil(len(loader) / 2)
    plain = make_train_loader(tiny_prepared.split, tiny_config(bucket_by_length=False))
    assert shard_train_loader(plain, 2) is plain  # Lightning injects its DistributedSampler


def test_mixed_precision_setting_reaches_lightning(tmp_path, tiny_prepared, monkeypatch):
    """bf16-mixed is meant for GPUs; CPU autocast supports it too, which keeps this test device-free."""
    from bert4rec.training.module import SequenceModule

    seen = []
    step = SequenceModule.training_step

    def recording_step(self, batch, batch_idx):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(SequenceModule, "training_step", recording_step)
    cfg = tiny_config(epochs=1, precision="bf16-mixed", accelerator="cpu")
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    assert seen and all(seen)  # every training step ran under bf16 autocast
    assert result.history and math.isfinite(result.history[0]["train_loss_epoch"])
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # weights stay fp32


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_nodes_started_by_torchrun(tmp_path, tiny_prepared):
    """Multi-node as the README documents it: `torchrun --nnodes 2 ... -m bert4rec.cli train
    --set train.num_nodes=2`, started once per "machine" (here two torchrun launches on loopback, one
    process each, gloo). Lightning reads the torchelastic variables and starts no processes itself;
    both nodes train on their half of the batches with the same learning-rate schedule, and only
    global rank 0 (node 0) writes results, logs and the model."""
    cfg = tiny_config(batch_size=16, epochs=2, patience=2, accelerator="cpu")
    (tmp_path / "config.json").write_text(cfg.model_dump_json())
    out = tmp_path / "runs"
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for inherited in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(inherited, None)
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        cmd += ["--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port)]
        cmd += ["-m", "bert4rec.cli", "train", "--config", str(tmp_path / "config.json"), "--out", str(out)]
        cmd += ["--devices", "1", "--strategy", "ddp", "--set", "train.num_nodes=2", "--no-progress"]
        cmd += ["--examples", "0"]
        log = open(tmp_path / f"node{node}.log", "w")  # noqa: SIM115 (closed below)
        procs.append(
            (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path), log)
        )
    for proc, log in procs:
        try:
            proc.wait(timeout=240)
        finally:
            proc.kill()
            log.close()
    logs = [(tmp_path / f"node{n}.log").read_text() for n in (0, 1)]
    for (proc, _), text in zip(procs, logs, strict=True):
        assert proc.returncode == 0, text[-3000:]
    assert logs[0].count("Dataset statistics") == 1 and "Dataset statistics" not in logs[1]
    record = json.loads((out / "results" / "results_bert4rec.json").read_text())
    assert record["config"]["train"]["num_nodes"] == 2
    assert len(record["history"]) == 2
    # each node trained every second batch: the logged global step counts one node's steps
    steps_per_process = math.ceil(len(make_train_loader(tiny_prepared.split, cfg)) / 2)
    last_step = int(
        (out / "bert4rec" / "logs" / "metrics.csv").read_text().strip().splitlines()[-1].split(",")[2]
    )
    assert last_step + 1 == 2 * steps_per_process
