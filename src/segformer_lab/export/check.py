"""The onnxruntime check: an exported file run beside the PyTorch model on the same
random inputs, and the largest logit difference held to a tolerance."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

TOLERANCE = 1e-4  # max abs logit difference, float32
FP16_RTOL = 1e-2  # --fp16: max abs difference <= FP16_RTOL * max(1, max |logits|)


@dataclass
class CheckResult:
    """onnxruntime against PyTorch eager on one random input."""

    shape: tuple[int, ...]
    max_abs_diff: float
    max_abs_logit: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with full graph optimisation and quiet logging. Its
    worker threads do not spin-wait between runs: spinning threads would take the cores
    from PyTorch when the two are timed in turns (``bench --onnx``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: fp16 graphs warn about every CPU fallback
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def check_onnx(
    path: str | os.PathLike, model: nn.Module, shapes: list[tuple[int, ...]], fp16: bool = False, seed: int = 0
) -> list[CheckResult]:
    """Run the ONNX file in onnxruntime (CPU) and ``model`` in PyTorch on the same random
    inputs of each shape; the max abs logit difference and the tolerance it is held to."""
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(shape, generator=generator)
        (out,) = session.run(None, {name: x.numpy()})
        with torch.no_grad():
            expected = model(x.to(device)).float().cpu()
        got = torch.from_numpy(out).float()
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
        scale = expected.abs().max().item()
        tolerance = FP16_RTOL * max(1.0, scale) if fp16 else TOLERANCE
        results.append(CheckResult(shape=tuple(shape), max_abs_diff=diff, max_abs_logit=scale, tolerance=tolerance))
    return results


def describe_checks(checks: list[CheckResult]) -> str:
    """One line for a list of checks: each shape's difference, the tolerances, the scale."""
    parts = [f"{'x'.join(map(str, c.shape))}: max abs diff {c.max_abs_diff:.2e}" for c in checks]
    tolerance = ", ".join(sorted({f"{c.tolerance:.1e}" for c in checks}))
    scale = max(c.max_abs_logit for c in checks)
    return "; ".join(parts) + f" (tolerance {tolerance}; max |logit| {scale:.3g})"
