"""Parameter counts of a model and of its parts: the one count the model card, the
profiler and the model catalogue report."""

from __future__ import annotations

from torch import nn

PARTS = ("encoder", "decode_head")  # counted separately where the model has them


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"total": ..., "encoder": ..., "decode_head": ...}``: every parameter of the model,
    and of each part it has."""
    counts = {"total": sum(p.numel() for p in model.parameters())}
    for part in PARTS:
        module = getattr(model, part, None)
        if module is not None:
            counts[part] = sum(p.numel() for p in module.parameters())
    return counts
