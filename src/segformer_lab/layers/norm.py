"""Normalisations for channels-last ``[B, H, W, C]`` maps, chosen by name, and layer scale."""

from __future__ import annotations

import torch
from torch import nn

from .layout import to_nchw, to_nhwc


class ChannelsLastBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` applied to a ``[B, H, W, C]`` map (through its NCHW view, no copy)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_nhwc(super().forward(to_nchw(x)))


class ChannelsLastGroupNorm(nn.GroupNorm):
    """``GroupNorm(1, C)`` (statistics over channels and positions per sample) on a
    ``[B, H, W, C]`` map: BatchNorm's role without a dependence on the batch."""

    def __init__(self, channels: int) -> None:
        super().__init__(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_nhwc(super().forward(to_nchw(x)))


# name -> builder(channels); the one table configs validate against
NORMS: dict[str, type[nn.Module]] = {
    "layer": nn.LayerNorm,  # over channels
    "batch": ChannelsLastBatchNorm,
    "group": ChannelsLastGroupNorm,
}


def build_norm(kind: str, channels: int) -> nn.Module:
    """``"layer"`` (LayerNorm over channels), ``"batch"`` or ``"group"`` for ``[B, H, W, C]`` maps."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose one of {tuple(NORMS)}")
    return NORMS[kind](channels)


class LayerScale(nn.Module):
    """Learnable per-channel gain on a residual branch (Touvron et al., ICCV 2021, CaiT),
    initialised small so that a deep stack starts close to the identity."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma
