"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]  # the checkout: configs/, benchmarks/
EXPORTED_CLASSES = ("sky", "road", "car")  # in the metadata of conftest's ``exported_b0``
EXPORTED_PALETTE = ((10, 20, 30), (200, 100, 0), (0, 255, 128))


@torch.no_grad()
def randomised(model: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Perturb every weight (norms too, which initialise to 1 and 0) by ``scale`` and the
    BatchNorm running statistics, so that any tensor loaded into the wrong place, or
    not used, changes the outputs. Returns ``model`` in the mode it was in."""
    g = torch.Generator().manual_seed(seed)
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.add_(scale * torch.randn(t.shape, generator=g))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(5 * scale * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model
