"""Exported files in onnxruntime: the one session factory (``onnx_session``) and runner
(``OnnxRunner``) everything in the project uses, the one measure of how far two sets of
logits are apart (``logit_agreement``), and the check of every export: the file run beside
the PyTorch model on the same random inputs, the largest logit difference held to a
tolerance."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import first_line

TOLERANCE = 1e-4  # max abs logit difference, float32
FP16_RTOL = 1e-2  # --fp16: max abs difference <= FP16_RTOL * max(1, max |logits|)
INT8_MIN_AGREEMENT = 0.9  # --int8: share of logit positions whose argmax matches PyTorch's (a sanity check)


@dataclass
class CheckResult:
    """onnxruntime against PyTorch eager on one random input."""

    shape: tuple[int, ...]
    max_abs_diff: float
    max_abs_logit: float
    tolerance: float
    agreement: float = 1.0  # share of positions whose argmax over classes matches PyTorch's
    min_agreement: float | None = None  # int8: held to this instead of the tolerance

    @property
    def passed(self) -> bool:
        if self.min_agreement is not None:
            return self.agreement >= self.min_agreement
        return self.max_abs_diff <= self.tolerance


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with full graph optimisation and quiet logging. Its
    worker threads (intra- and inter-op) do not spin-wait between runs: onnxruntime's
    default spinning would take the cores from PyTorch when the two are timed in turns
    (``bench --onnx``: measured +30-40% on eager's time, issue 22)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: fp16 graphs warn about every CPU fallback
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """An ONNX file in an ``onnx_session``, called like a model: a float tensor (any device)
    in, the file's first output as a float32 CPU tensor out (a float16 input is fed as such).
    A missing file, or one onnxruntime cannot load, is one error naming it."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such ONNX file")
        try:
            self.session = onnx_session(path, threads)
        except ImportError:  # onnxruntime itself is missing: the callers' hint says how to install it
            raise
        except Exception as err:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{path}: onnxruntime cannot load it: {first_line(err)}") from None
        self.input, self.output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.dtype = np.float16 if self.input.type == "tensor(float16)" else np.float32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = x.detach().float().cpu().numpy().astype(self.dtype, copy=False)
        (out,) = self.session.run([self.output.name], {self.input.name: feed})
        return torch.from_numpy(out).float()


def logit_agreement(got: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """``(max abs difference, share of positions whose argmax over classes agrees)`` of two
    ``[B, K, h, w]`` logit maps; ``(inf, 0)`` when their shapes differ."""
    if got.shape != expected.shape:
        return float("inf"), 0.0
    got, expected = got.float(), expected.float()
    diff = (got - expected).abs().max().item()
    return diff, (got.argmax(1) == expected.argmax(1)).float().mean().item()


def check_onnx(
    path: str | os.PathLike, model: nn.Module, shapes: list[tuple[int, ...]], fp16: bool = False, seed: int = 0,
    int8: bool = False,
) -> list[CheckResult]:
    """Run the ONNX file in onnxruntime (CPU) and ``model`` in PyTorch on the same random
    inputs of each shape; the max abs logit difference and the tolerance it is held to
    (``int8``: the argmax agreement, held to ``INT8_MIN_AGREEMENT``)."""
    run = OnnxRunner(path)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(shape, generator=generator)
        got = run(x)
        with torch.no_grad():
            expected = model(x.to(device)).float().cpu()
        diff, agreement = logit_agreement(got, expected)
        scale = expected.abs().max().item()
        tolerance = FP16_RTOL * max(1.0, scale) if fp16 else TOLERANCE
        results.append(CheckResult(shape=tuple(shape), max_abs_diff=diff, max_abs_logit=scale, tolerance=tolerance,
                                   agreement=agreement, min_agreement=INT8_MIN_AGREEMENT if int8 else None))
    return results


def describe_checks(checks: list[CheckResult]) -> str:
    """One line for a list of checks: each shape's difference, the tolerances, the scale
    (int8: each shape's argmax agreement too, and the agreement asked for)."""
    parts = [f"{'x'.join(map(str, c.shape))}: max abs diff {c.max_abs_diff:.2e}" for c in checks]
    if any(c.min_agreement is not None for c in checks):
        parts = [f"{part}, argmax agreement {100 * c.agreement:.1f}%" for part, c in zip(parts, checks)]
        floor = min(c.min_agreement for c in checks if c.min_agreement is not None)
        return "; ".join(parts) + f" (agreement >= {100 * floor:.0f}% asked)"
    tolerance = ", ".join(sorted({f"{c.tolerance:.1e}" for c in checks}))
    scale = max(c.max_abs_logit for c in checks)
    return "; ".join(parts) + f" (tolerance {tolerance}; max |logit| {scale:.3g})"
