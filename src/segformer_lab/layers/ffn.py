"""Feed-forward networks of the encoder blocks, on ``[B, H, W, C]`` maps."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .activation import build_act
from .layout import to_nchw, to_nhwc
from .norm import build_norm

# MixCFN's inner norms: BatchNorm as published, GroupNorm for the ablation
MIX_CFN_NORMS = ("batch", "group")


class DepthwiseConv(nn.Module):
    """3x3 depthwise convolution applied to a ``[B, H, W, C]`` map (channels-last view)."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_nhwc(self.dwconv(to_nchw(x)))


class MixFFN(nn.Module):
    """Mix-FFN (Xie et al., 2021, Eq. 3): Linear -> 3x3 depthwise conv -> GELU -> Linear.

    The depthwise convolution leaks enough zero-padding position information that
    SegFormer needs no positional embedding.
    """

    def __init__(self, dim: int, hidden_dim: int, act: str = "gelu") -> None:
        super().__init__()
        self.dense1 = nn.Linear(dim, hidden_dim)
        self.dwconv = DepthwiseConv(hidden_dim)
        self.act = build_act(act)
        self.dense2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.act(self.dwconv(self.dense1(x))))


class MixConv(nn.Module):
    """Depthwise convolutions of mixed kernel sizes (Tan & Le, BMVC 2019, MixConv): the
    first half of the channels gets 3x3, the second half 5x5, so one layer sees two
    receptive fields."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.conv3 = nn.Conv2d(self.split, self.split, 3, padding=1, groups=self.split)
        rest = channels - self.split
        self.conv5 = nn.Conv2d(rest, rest, 5, padding=2, groups=rest)

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One depthwise 5x5 kernel (3x3 kernels zero-padded) and bias for all channels."""
        kernel = torch.cat([F.pad(self.conv3.weight, (1, 1, 1, 1)), self.conv5.weight])
        return kernel, torch.cat([self.conv3.bias, self.conv5.bias])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_nchw(x)
        # split, not slicing: a slice's backward writes into a fresh contiguous gradient,
        # which sends the BatchNorm before it down its slow mixed-layout path in training
        small, large = torch.split(x, [self.split, x.shape[1] - self.split], dim=1)
        return to_nhwc(torch.cat([self.conv3(small), self.conv5(large)], dim=1))


class MixCFN(nn.Module):
    """Mix-CFN (BoostFormer; after the MixCFN of Wang et al., 2022, "Lightweight Vision
    Transformer with Cross Feature Attention"): 1x1 expansion -> norm -> MixConv
    (3x3 | 5x5 depthwise) -> norm -> activation -> 1x1 projection.

    The 1x1 convolutions are Linear layers over the channels-last map (same function and
    parameter count); ``norm`` is BatchNorm as published, or GroupNorm for the ablation.

    In eval mode with BatchNorm, both norms are per-channel affine maps that fold into the
    layer before them (the expansion and the two depthwise kernels, merged into one 5x5
    kernel with the 3x3 ones zero-padded): one linear layer, one depthwise convolution,
    the activation and the projection run, instead of seven passes over the 4C-channel
    map. Same function; the published layers are what the state dict holds.
    """

    def __init__(self, dim: int, hidden_dim: int, act: str = "gelu", norm: str = "batch", fold: bool = True) -> None:
        super().__init__()
        self.fold = fold
        self.dense1 = nn.Linear(dim, hidden_dim)
        self.norm1 = build_norm(norm, hidden_dim)
        self.mixconv = MixConv(hidden_dim)
        self.norm2 = build_norm(norm, hidden_dim)
        self.act = build_act(act)
        self.dense2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold and not self.training and isinstance(self.norm1, nn.BatchNorm2d):
            return self.dense2(self.act(self.folded(x)))
        x = self.norm1(self.dense1(x))
        return self.dense2(self.act(self.norm2(self.mixconv(x))))

    def folded(self, x: torch.Tensor) -> torch.Tensor:
        """``norm2(mixconv(norm1(dense1(x))))`` with eval-mode BatchNorms folded in."""
        scale1, shift1 = batch_norm_affine(self.norm1)
        x = F.linear(x, scale1[:, None] * self.dense1.weight, scale1 * self.dense1.bias + shift1)
        scale2, shift2 = batch_norm_affine(self.norm2)
        kernel, bias = self.mixconv.merged_kernel()
        kernel = scale2[:, None, None, None] * kernel
        out = F.conv2d(to_nchw(x), kernel, scale2 * bias + shift2, padding=2, groups=kernel.shape[0])
        return to_nhwc(out)


def batch_norm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) == scale * x + shift`` per channel in eval mode."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


# name -> builder(dim, hidden_dim, act, norm, fold); the one table configs validate against
FFNS: dict[str, Callable[..., nn.Module]] = {
    "mix_ffn": lambda dim, hidden_dim, act, norm, fold: MixFFN(dim, hidden_dim, act),
    "mix_cfn": MixCFN,
}


def build_ffn(
    kind: str, dim: int, hidden_dim: int, act: str = "gelu", norm: str = "batch", fold: bool = True
) -> nn.Module:
    """``"mix_ffn"`` (SegFormer) or ``"mix_cfn"`` (BoostFormer; ``norm`` is its inner norm,
    ``fold`` its eval-mode BatchNorm folding)."""
    if kind not in FFNS:
        raise ValueError(f"unknown FFN {kind!r}; choose one of {tuple(FFNS)}")
    return FFNS[kind](dim, hidden_dim, act, norm, fold)
