"""Attention token mixers whose keys and values sit on a (reduced) spatial grid.

Both kinds here take a channels-last map ``[B, H, W, C]``: queries come from every
position, keys and values from a reduced map, one key per window of positions. The
window-averaging function that describes the reduction is also what places the keys
for rotary position embeddings (``layers.rope``), so RoPE composes with any of them.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .activation import build_act
from .layout import to_nchw, to_nhwc
from .pooling import adaptive_avg_pool2d, ceil_avg_pool2d
from .rope import RotaryEmbedding2d

KV_POOLINGS = ("adaptive", "average")


class GridKeyAttention(nn.Module):
    """Multi-head attention of every position over keys/values of a reduced grid.

    Subclasses define ``reduce`` (the key/value source map ``[B, h, w, C]``) and
    ``key_windows`` (the function that averages an NCHW map over the windows that become
    one key each, or ``None`` when keys are the query grid). Heads run in
    ``scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int, rope: RotaryEmbedding2d | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.rope = rope

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def key_windows(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        raise NotImplementedError

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, heads, H*W, head_dim]`` (a view)."""
        b, h, w, _ = x.shape
        return x.view(b, h * w, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        kv = self.reduce(x)
        q = self.split_heads(self.query(x))
        k = self.split_heads(self.key(kv))
        v = self.split_heads(self.value(kv))
        if self.rope is not None:
            q, k = self.rope(q, k, (h, w), self.key_windows())
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(b, h, w, c)


class EfficientSelfAttention(GridKeyAttention):
    """Efficient self-attention with sequence reduction (PVT, Wang et al., ICCV 2021; SegFormer).

    Keys and values come from the map reduced by a ``sr_ratio``-strided
    ``sr_ratio`` x ``sr_ratio`` convolution and a LayerNorm, so the cost is
    ``N * N / sr_ratio**2`` instead of ``N**2``; ``sr_ratio == 1`` is plain multi-head
    self-attention. Rows and columns past the last full window are dropped by the
    convolution, and by ``window_average`` alike.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, rope: RotaryEmbedding2d | None = None) -> None:
        super().__init__(dim, num_heads, rope)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.layer_norm = nn.LayerNorm(dim)

    def window_average(self, t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, self.sr_ratio, self.sr_ratio)

    def key_windows(self):
        return self.window_average if self.sr_ratio > 1 else None

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.sr_ratio == 1:
            return x
        return self.layer_norm(to_nhwc(self.sr(to_nchw(x))))


class PooledSelfAttention(GridKeyAttention):
    """Pooled-KV attention (BoostFormer's SegFormerV2 attention; pooling reduction as in
    PVTv2-Li, Wang et al., 2022, and P2T): keys and values come from the map average-pooled
    to a fixed ``grid`` x ``grid`` (``pooling="adaptive"``, 49 keys by default whatever the
    input size) or by ``sr_ratio`` windows (``"average"``, partial windows at the border
    kept), then LayerNorm and an activation. No reduction parameters besides the norm.

    Adaptive pooling runs as two small matrix products whose bins follow the input's
    shape, so exported graphs stay exact at any size. When the map is smaller than the
    grid, cells repeat positions, as ``nn.AdaptiveAvgPool2d`` does.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        pooling: str = "adaptive",
        grid: int = 7,
        sr_ratio: int = 1,
        act: str = "gelu",
        rope: RotaryEmbedding2d | None = None,
    ) -> None:
        super().__init__(dim, num_heads, rope)
        if pooling not in KV_POOLINGS:
            raise ValueError(f"unknown key/value pooling {pooling!r}; choose one of {KV_POOLINGS}")
        self.pooling, self.grid, self.sr_ratio = pooling, grid, sr_ratio
        self.layer_norm = nn.LayerNorm(dim)
        self.act = build_act(act)

    def window_average(self, t: torch.Tensor) -> torch.Tensor:
        if self.pooling == "adaptive":
            return adaptive_avg_pool2d(t, self.grid)
        return ceil_avg_pool2d(t, self.sr_ratio)

    def key_windows(self):
        return self.window_average

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.layer_norm(to_nhwc(self.window_average(to_nchw(x)))))

    def extra_repr(self) -> str:
        size = f"grid={self.grid}" if self.pooling == "adaptive" else f"sr_ratio={self.sr_ratio}"
        return f"pooling={self.pooling!r}, {size}"


class AttentionOutput(nn.Module):
    """The output projection after the heads are concatenated."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class Attention(nn.Module):
    """An attention core followed by its output projection, or by nothing
    (``output_projection=False``: BoostFormer's "SelfOutput removed").

    The submodules are named ``self`` and ``output`` so that parameter names match
    Hugging Face's SegFormer (``attention.self.query``, ``attention.output.dense``).
    """

    def __init__(self, core: nn.Module, dim: int, output_projection: bool = True) -> None:
        super().__init__()
        self.self = core
        self.output = AttentionOutput(dim) if output_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.self(x)
        return x if self.output is None else self.output(x)
