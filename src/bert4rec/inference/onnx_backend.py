"""Opt-in ONNX Runtime backend: the same `score()` as TransformerScorer, run by onnxruntime.

`bert4rec serve --backend onnx` exports the loaded model's inference path ((B, L) item indices ->
(B, n_items + 1) scores of the last position; batch and length dynamic) in memory at start-up with the
dynamo exporter, checks it against eager PyTorch, and scores single requests with it. On the ML-1M
model it cut the model call at batch 1 by 1.4-3.2x (benchmarks/results/serving/onnx_vs_eager.md); large
batches are faster in eager PyTorch, so evaluation keeps TransformerScorer. Needs the `onnx` extra.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.scoring import TransformerScorer
from bert4rec.models.transformer import SequenceTransformer


class _PredictPath(torch.nn.Module):
    def __init__(self, model: SequenceTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.model.logits(self.model(seq)[:, -1])  # `predict` without its no_grad wrapper


def export_onnx_bytes(model: SequenceTransformer) -> bytes:
    """Serialized ONNX model of `model.predict(seq)` (no users: models with user embeddings are refused)."""
    if model.user_emb is not None:
        raise Bert4RecError("the ONNX backend does not support models with use_user_embedding")
    was_training = model.training
    model.eval()
    example = torch.randint(1, model.n_items + 1, (2, min(37, model.cfg.max_len)))
    batch = torch.export.Dim("batch", min=1, max=65536)
    length = torch.export.Dim("length", min=1, max=model.cfg.max_len)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _PredictPath(model),
                (example,),
                dynamo=True,
                input_names=["seq"],
                output_names=["scores"],
                dynamic_shapes={"seq": {0: batch, 1: length}},
                optimize=True,
                verbose=False,
            )
    finally:
        model.train(was_training)
    assert program is not None
    return bytes(program.model_proto.SerializeToString())


class OnnxScorer(TransformerScorer):
    """TransformerScorer (same `score`, chunks and inputs) whose model calls run in ONNX Runtime."""

    def __init__(
        self,
        model: SequenceTransformer,
        name: str | None = None,
        threads: int = 1,
        chunk_size: int = 128,
        atol: float = 1e-4,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise Bert4RecError(
                f"the ONNX backend needs the onnx extra ({err}): pip install 'bert4rec[onnx]'"
            ) from None
        super().__init__(model, name=name, chunk_size=chunk_size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session: Any = ort.InferenceSession(
            export_onnx_bytes(model), opts, providers=["CPUExecutionProvider"]
        )
        self._check(atol)

    def _check(self, atol: float) -> None:
        """Refuse to serve an export whose scores differ from eager PyTorch."""
        rng = np.random.default_rng(0)
        histories = [rng.integers(1, self.model.n_items + 1, size=n) for n in (1, 7, self.model.cfg.max_len)]
        seq = self.kind.inference_batch(histories, self.model.cfg.max_len, self.model.n_items)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                eager = self.model.predict(seq).float().numpy()
        finally:
            self.model.train(was_training)
        diff = float(np.abs(self._run(seq.numpy()) - eager).max())
        if not diff <= atol:
            raise Bert4RecError(f"ONNX export differs from PyTorch (max |diff| {diff:.2e} > {atol})")

    def _run(self, seq: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {"seq": np.ascontiguousarray(seq, dtype=np.int64)})[0])

    def _scores(self, seq: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """(b, L) inputs -> (b, n_items + 1) scores; `users` is unused (no user embeddings)."""
        return torch.from_numpy(self._run(seq.numpy()))
