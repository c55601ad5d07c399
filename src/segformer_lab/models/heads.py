"""Decode heads: turn the encoder's stage maps into per-pixel class logits at stride 4."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import to_nchw, to_nhwc
from .config import DecoderConfig


class StageProjection(nn.Module):
    """Per-stage channel projection of the all-MLP head (a Linear over channels)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)


def resize_to(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Bilinear resize (align_corners=False), as the published decoder does.

    Called only on the deeper stages: stage 1 already has the output size. No shape
    comparison here, so exported graphs carry no guard on the input size."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class AllMLPHead(nn.Module):
    """SegFormer's all-MLP decoder (Xie et al., 2021, Sec. 3.2).

    Published computation: per stage ``F_i = Up(Linear_i(x_i))`` to stride 4, then
    ``linear_fuse`` (a bias-free 1x1 conv) over ``concat(F_4, F_3, F_2, F_1)``, BatchNorm,
    ReLU, dropout, 1x1 classifier.

    Fast path (``fold=True``): ``linear_fuse`` is linear and bilinear upsampling is a
    linear map over positions with weights summing to one, so the two commute and
    ``linear_fuse(concat(F)) = sum_i Up(W_i Linear_i(x_i))``, where ``W_i`` is the slice of
    ``linear_fuse`` that sees stage ``i``. ``W_i Linear_i`` is folded into one Linear
    (``W_i A_i``, ``W_i b_i``) applied at the stage's own resolution, so the 1x1
    convolution over ``4 * D`` channels at stride 4, most of the published MACs, never
    runs. In eval mode the BatchNorm affine is folded in too. The weights stay the
    published ones (checkpoints are unchanged) and gradients flow to them.
    """

    def __init__(self, in_widths: tuple[int, ...], config: DecoderConfig, num_classes: int) -> None:
        super().__init__()
        d = config.width
        self.fold = config.fold
        self.linear_c = nn.ModuleList(StageProjection(w, d) for w in in_widths)
        self.linear_fuse = nn.Conv2d(d * len(in_widths), d, kernel_size=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(d)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Conv2d(d, num_classes, kernel_size=1)

    def fuse_slices(self) -> list[torch.Tensor]:
        """``W_i``: the ``[D, D]`` block of ``linear_fuse`` applied to stage ``i``.

        The published head concatenates the stages in reverse order (deepest first).
        """
        d = self.linear_fuse.out_channels
        n = len(self.linear_c)
        w = self.linear_fuse.weight.view(d, n * d)
        return [w[:, (n - 1 - i) * d : (n - i) * d] for i in range(n)]

    def folded_projections(self, fold_norm: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-stage weights ``W_i A_i`` and the single bias ``sum_i W_i b_i``; with
        ``fold_norm`` the BatchNorm's running-statistics affine is folded in as well."""
        weights, bias = [], 0
        for w_fuse, proj in zip(self.fuse_slices(), self.linear_c):
            weights.append(w_fuse @ proj.proj.weight)
            bias = bias + w_fuse @ proj.proj.bias
        if fold_norm:
            bn = self.batch_norm
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            weights = [scale[:, None] * w for w in weights]
            bias = scale * (bias - bn.running_mean) + bn.bias
        return weights, bias

    def fused_features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """BatchNorm(linear_fuse(concat)) computed the fast way; ``[B, D, H_1, W_1]``."""
        fold_norm = not self.training and self.batch_norm.track_running_stats
        weights, bias = self.folded_projections(fold_norm)
        # Stage 1 sets the output size and takes the bias (bilinear resizing preserves
        # constants, so one bias for all stages is exact). Accumulating in place is
        # autograd-safe: neither linear nor resize needs its output for backward.
        out = to_nchw(F.linear(to_nhwc(features[0]), weights[0], bias))
        for x, w in zip(features[1:], weights[1:]):
            out += resize_to(to_nchw(F.linear(to_nhwc(x), w)), out.shape[-2:])
        return out if fold_norm else self.batch_norm(out)

    def published_features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """BatchNorm(linear_fuse(concat)) exactly as published; ``[B, D, H_1, W_1]``."""
        projected = [to_nchw(p.proj(to_nhwc(x))) for x, p in zip(features, self.linear_c)]
        size = projected[0].shape[-2:]
        projected = projected[:1] + [resize_to(y, size) for y in projected[1:]]
        return self.batch_norm(self.linear_fuse(torch.cat(projected[::-1], dim=1)))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.fused_features(features) if self.fold else self.published_features(features)
        x = self.dropout(F.relu(x, inplace=True))
        w = self.classifier.weight.view(self.classifier.out_channels, -1)
        return to_nchw(F.linear(to_nhwc(x), w, self.classifier.bias))


def build_head(in_widths: tuple[int, ...], config: DecoderConfig, num_classes: int) -> nn.Module:
    if config.type == "all_mlp":
        return AllMLPHead(in_widths, config, num_classes)
    raise ValueError(f"unknown decoder type {config.type!r}")
