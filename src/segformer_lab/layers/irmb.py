"""The attention half of EMO's inverted residual mobile block (iRMB; Zhang et al., ICCV 2023).

"Rethinking Mobile Block for Efficient Attention-based Models" folds attention into an
inverted residual: values are expanded ``expansion`` times, mixed by attention, refined
by a depthwise convolution and projected back. This is the seed team's variant used as
a SegFormer token mixer: keys come from an average-pooled map (sequence reduction
without parameters) and queries/keys carry no projection at all.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .activation import build_act
from .layout import to_nchw, to_nhwc


class InvertedResidualMobileMixer(nn.Module):
    """iRMB token mixer on a layer-normalised ``[B, H, W, C]`` map (EMO, Zhang et al., 2023).

    ``P = AvgPool(u)`` with a ``pool_size`` window and stride; queries are ``u`` and keys
    are ``P`` (both unprojected), values are ``Conv1x1(C -> expansion * C)(P)``. The
    multi-head attention ``a = softmax(Q K^T / sqrt(d)) V`` (``d = C / heads``; value
    heads are ``expansion`` times wider) is followed by ``Conv1x1(act(BN(a + DW3x3(a))))``
    back to ``C`` channels. The surrounding block owns the LayerNorm and the residual.

    Pooling uses ``ceil_mode=True`` so a side that is not a multiple of ``pool_size``
    keeps its last, partial window as one more key (averaged over the pixels it actually
    covers); a side shorter than ``pool_size`` gives one key. There are
    ``ceil(H / pool_size) * ceil(W / pool_size)`` keys.
    """

    def __init__(
        self, dim: int, num_heads: int, expansion: float = 4.0, pool_size: int = 5, act: str = "gelu"
    ) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        if dim % num_heads or hidden % num_heads:
            raise ValueError(f"widths {dim} (keys) and {hidden} (values) must both divide into {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.hidden = hidden
        self.pool_size = pool_size
        self.value = nn.Conv2d(dim, hidden, kernel_size=1)
        # BatchNorm follows, so a bias here would only be cancelled by its mean.
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden, bias=False)
        self.norm = nn.BatchNorm2d(hidden)
        self.act = build_act(act)
        self.proj = nn.Conv2d(hidden, dim, kernel_size=1)

    def pool(self, u: torch.Tensor, spare: int = 0) -> torch.Tensor:
        """The key map: ``[B, H, W, C]`` -> ``[B, ceil(H/p), ceil(W/p), C]`` window averages.

        Equal to ``avg_pool2d(kernel=p, stride=p, ceil_mode=True, count_include_pad=False)``,
        computed as a zero-padded pool rescaled by each window's true pixel count, because
        ``ceil_mode`` makes ``torch.export`` guard on the input size (dynamic H, W fail).

        ``spare`` appends that many more rows and columns of windows that lie wholly in the
        padding; they are zero (see :meth:`attend` for why an export wants one).
        """
        p = self.pool_size
        _, h, w, _ = u.shape
        kh, kw = (h + p - 1) // p + spare, (w + p - 1) // p + spare
        padded = F.pad(u, (0, 0, 0, kw * p - w, 0, kh * p - h))
        pooled = to_nhwc(F.avg_pool2d(to_nchw(padded), p, p))
        # Pixels of the input in each window: p, except in a side's last, partial window;
        # spare windows cover none (clamped to 1: their sum is 0, and 0 / 1 stays 0).
        rows = (h - p * torch.arange(kh, device=u.device)).clamp(1, p)
        cols = (w - p * torch.arange(kw, device=u.device)).clamp(1, p)
        scale = (p * p) / (rows[:, None] * cols[None, :]).to(u.dtype)
        return pooled * scale[:, :, None]

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, K]`` -> ``[B, heads, H*W, K / heads]``."""
        b, h, w, k = x.shape
        return x.reshape(b, h * w, self.num_heads, k // self.num_heads).transpose(1, 2)

    def attend(self, u: torch.Tensor, spare_keys: bool | None = None) -> torch.Tensor:
        """The attention output ``a``: ``[B, H, W, C]`` -> ``[B, H, W, expansion * C]``.

        ``spare_keys`` (default: only while ``torch.export`` traces, which ONNX export
        uses) pools one spare row and column of keys (:meth:`pool`) and masks them out of
        the softmax: the same numbers, from a graph with no tensor of ``ceil(H/p)`` or
        ``ceil(W/p)`` keys. Such a size is 1 whenever a side is at most ``p``, e.g. stage
        3 of a 64x96 export; ``torch.export`` then specialises the key grid to its
        export-time size (a guard on "this dim is 1", from the meta tensors' stride
        checks), which narrows the dynamic height/width range, and the ONNX exporter,
        falling back to ``draft_export``, writes that fixed size into the graph: it fails
        or mixes up batches at other sizes. ``ceil(side / p) + 1`` is never 1, so the
        spare key keeps every size symbolic. Eager calls skip it (no mask, fewer keys).
        """
        if spare_keys is None:
            spare_keys = torch.compiler.is_exporting()
        b, h, w, _ = u.shape
        kv = self.pool(u, spare=int(spare_keys))
        v = to_nhwc(self.value(to_nchw(kv)))
        mask = None
        if spare_keys:  # keep the windows that start inside the map
            p = self.pool_size
            rows = p * torch.arange(kv.shape[1], device=u.device) < h
            cols = p * torch.arange(kv.shape[2], device=u.device) < w
            mask = (rows[:, None] & cols[None, :]).reshape(1, -1)  # [queries=1, keys], broadcast
        q, k, v = self.split_heads(u), self.split_heads(kv), self.split_heads(v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).reshape(b, h, w, self.hidden)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        a = to_nchw(self.attend(u))
        return to_nhwc(self.proj(self.act(self.norm(a + self.dwconv(a)))))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, hidden={self.hidden}, pool_size={self.pool_size}"
