"""Deformable attention token mixer (DAT; Xia et al., CVPR 2022, "Vision Transformer
with Deformable Attention").

Every query attends to the same small set of keys: ``ceil(H/r) x ceil(W/r)`` features
bilinearly sampled from the map at data-dependent positions. A light offset network
looks at the queries and moves each point of a uniform *reference grid* (one point per
``r x r`` cell, ``r = sr_ratio``) by a bounded offset; keys and values are linear maps
of the features found there, and a continuous relative position bias (a small MLP on
log-spaced query-key displacements; the "log-CPB" of Swin V2 that DAT++ adopts) is added
to the logits.

Coordinates. Positions are in *pixel coordinates* of the input map: the centre of pixel
``(row i, column j)`` is the point ``(x, y) = (j, i)``; the last dimension of every
position tensor is ``(x, y)``. The reference point of grid cell ``(p, q)`` is the centre of
the pixels it covers: rows ``p*r .. min(p*r + r, H) - 1``, columns likewise (a last,
partial cell is centred on its in-image pixels). Offsets and displacements are measured
in *reference-grid cells* (``r`` pixels), so ``offset_range = s`` lets a point move at
most ``s`` cells, ``s * r`` pixels, along each axis.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .attention import AttentionOutput
from .layout import to_nchw, to_nhwc


def signed_log(t: torch.Tensor) -> torch.Tensor:
    """``sign(t) * log(1 + |t|)``: the log-spaced displacement fed to the bias MLP."""
    return torch.sign(t) * torch.log1p(t.abs())


def pixel_to_grid(p: torch.Tensor, size) -> torch.Tensor:
    """Pixel coordinate -> ``grid_sample``'s normalised coordinate (``align_corners=False``).

    With ``align_corners=False`` the values -1 and 1 are the *outer edges* of the first and
    last pixel, so the centre of pixel ``j`` (coordinate ``j``) is at ``(2j + 1) / size - 1``.
    """
    return (2 * p + 1) / size - 1


def cell_centres(cells, size, stride: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Centres, in pixel coordinates, of ``cells`` consecutive runs of ``stride`` pixels
    along an axis of ``size`` pixels; a last, partial run is centred on its in-image pixels."""
    first = torch.arange(cells, device=device, dtype=dtype) * stride
    last = (first + (stride - 1)).clamp(max=size - 1)
    return (first + last) / 2


class OffsetNetwork(nn.Module):
    """DAT's offset network: ``(r+2)``-wide depthwise conv with stride ``r`` -> LayerNorm ->
    GELU -> bias-free 1x1 conv to 2 channels ``(dx, dy)`` (raw, before ``tanh``).

    The input is padded by 1 pixel before and ``r`` pixels after each axis, so output cell
    ``p`` sees exactly its ``r`` pixels plus a one-pixel margin on both sides (its window is
    centred on its reference point) and there are ``ceil(H/r)`` outputs for every ``H``.
    With ``r = 1`` this is the usual 3x3 conv with padding 1. The last conv starts at zero,
    so the module starts by sampling the reference grid exactly.
    """

    def __init__(self, channels: int, sr_ratio: int) -> None:
        super().__init__()
        self.sr_ratio = sr_ratio
        self.dwconv = nn.Conv2d(channels, channels, sr_ratio + 2, stride=sr_ratio, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.proj = nn.Conv2d(channels, 2, 1, bias=False)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Zero the last conv: no offsets, so attention starts on the reference grid
        (a model's generic weight initialisation calls this again after its own)."""
        nn.init.zeros_(self.proj.weight)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` queries -> ``[N, ceil(H/r), ceil(W/r), 2]`` raw offsets ``(x, y)``."""
        r = self.sr_ratio
        t = self.dwconv(F.pad(q, (1, r, 1, r)))
        t = F.gelu(self.norm(to_nhwc(t)))
        return to_nhwc(self.proj(to_nchw(t)))


class DeformableAttention(nn.Module):
    """Deformable multi-head attention (DAT, Xia et al., 2022) on a ``[B, H, W, C]`` map.

    1. ``q = query(x)``.
    2. Per offset group (``C / offset_groups`` channels, one shared ``offset`` network),
       offsets ``offset_range * tanh(offset(q))`` (reference-grid cells) move the
       ``ceil(H/r) x ceil(W/r)`` reference points (see the module docstring).
    3. ``x`` is sampled there per group (bilinear, zero padding, ``align_corners=False``).
    4. ``k = key(samples)``, ``v = value(samples)``; per head
       ``softmax(q k^T / sqrt(d) + B) v`` with ``B = position_bias(sign(D) log(1 + |D|))``,
       ``D`` = query position minus sampled position, in reference-grid cells. The
       ``num_heads / offset_groups`` heads whose query channels lie in a group use that
       group's positions (DAT's grouping).
    5. Heads concatenated, then ``output`` (an ``AttentionOutput``) if ``output_projection``.

    No norm and no residual: the block does those. The bias MLP is evaluated for every
    query-key pair (``H W * ceil(H/r) ceil(W/r) * 32`` hidden activations per group), as in
    DAT; it is meant for the coarser stages.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int = 1,
        offset_groups: int = 1,
        offset_range: float = 4.0,
        output_projection: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        if num_heads % offset_groups:
            raise ValueError(f"{num_heads} heads cannot be split into {offset_groups} offset groups")
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be >= 1, got {sr_ratio}")
        if offset_range < 0:
            raise ValueError(f"offset_range must be >= 0, got {offset_range}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.sr_ratio = sr_ratio
        self.offset_groups = offset_groups
        self.offset_range = offset_range
        self.query = nn.Linear(dim, dim)
        self.offset = OffsetNetwork(dim // offset_groups, sr_ratio)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.position_bias = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, num_heads // offset_groups))
        self.output = AttentionOutput(dim) if output_projection else None

    def merge_groups(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, groups, ...]`` -> ``[B * groups, ...]``.

        One group is squeezed, not reshaped: reshaping ``[B, 1, h, w, ...]`` to
        ``[B, h, w, ...]`` tries to build ``h`` from the size-1 axis and guards on
        ``1 % h != 0``, which torch.export cannot prove for a derived grid size such as
        ``ceil(H/r)`` and so refuses the dynamic range.
        """
        return t.squeeze(1) if self.offset_groups == 1 else t.flatten(0, 1)

    def split_groups(self, t: torch.Tensor) -> torch.Tensor:
        """``[B * groups, ...]`` -> ``[B, groups, ...]``."""
        return t.unsqueeze(1) if self.offset_groups == 1 else t.unflatten(0, (-1, self.offset_groups))

    def reference_points(self, height: int, width: int, grid: tuple[int, int] | None = None,
                         device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``[ceil(H/r), ceil(W/r), 2]`` reference points ``(x, y)`` in pixel coordinates.

        ``grid`` is the reference grid's size when the caller already has it (the offset
        network's output shape); by default it is computed.
        """
        r = self.sr_ratio
        gh, gw = grid if grid is not None else ((height + r - 1) // r, (width + r - 1) // r)
        dtype = dtype or torch.get_default_dtype()
        ys = cell_centres(gh, height, r, device, dtype)
        xs = cell_centres(gw, width, r, device, dtype)
        gx, gy = torch.meshgrid(xs, ys, indexing="xy")
        return torch.stack((gx, gy), dim=-1)

    def sampling_positions(self, q: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` queries -> ``[B, groups, ceil(H/r), ceil(W/r), 2]`` sampling
        positions ``(x, y)`` in pixel coordinates (reference points plus offsets), in at
        least float32."""
        h, w = q.shape[1], q.shape[2]
        raw = self.offset(self.merge_groups(to_nchw(q).unflatten(1, (self.offset_groups, -1))))
        gh, gw = raw.shape[1], raw.shape[2]
        dtype = torch.promote_types(q.dtype, torch.float32)  # bf16 cannot hold pixel positions
        offsets = torch.tanh(raw.to(dtype)) * (self.offset_range * self.sr_ratio)
        reference = self.reference_points(h, w, (gh, gw), q.device, dtype)
        return self.split_groups(reference + offsets)

    def sample(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Bilinear samples of ``x`` (``[B, H, W, C]``) at ``positions`` (``[B, groups, h, w, 2]``,
        pixel coordinates): ``[B, h, w, C]``; group ``i``'s channels are read at its positions.

        Sampling runs in the positions' dtype (at least float32): in bfloat16 a normalised
        coordinate near 1 moves in steps of 1/128, half a pixel of a 128-wide map."""
        h, w = x.shape[1], x.shape[2]
        source = self.merge_groups(to_nchw(x).unflatten(1, (self.offset_groups, -1)))
        grid = torch.stack((pixel_to_grid(positions[..., 0], w), pixel_to_grid(positions[..., 1], h)), dim=-1)
        grid = self.merge_groups(grid)
        out = F.grid_sample(source.to(grid.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return to_nhwc(self.split_groups(out.to(x.dtype)).flatten(1, 2))

    def relative_position_bias(self, positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``[B, heads, H*W, h*w]`` logit bias from the displacements between every query
        position and every sampled position, in reference-grid cells."""
        ys = torch.arange(height, device=positions.device, dtype=positions.dtype)
        xs = torch.arange(width, device=positions.device, dtype=positions.dtype)
        queries = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # every pixel is a query
        keys = positions.flatten(2, 3)  # [B, g, Nk, 2]
        delta = (queries.flatten(0, 1)[:, None] - keys[:, :, None]) / self.sr_ratio  # [B, g, Nq, Nk, 2]
        features = signed_log(delta).to(self.position_bias[0].weight.dtype)
        bias = self.position_bias(features)  # [B, g, Nq, Nk, heads / g]
        return bias.permute(0, 1, 4, 2, 3).flatten(1, 2)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, C]`` -> ``[B, heads, h*w, head_dim]``."""
        return t.flatten(1, 2).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def attend(self, q: torch.Tensor, samples: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of the queries ``[B, H, W, C]`` over the samples ``[B, h, w, C]``
        taken at ``positions``; heads concatenated, no output projection: ``[B, H, W, C]``."""
        h, w = q.shape[1], q.shape[2]
        bias = self.relative_position_bias(positions, h, w).to(q.dtype)
        out = F.scaled_dot_product_attention(self.split_heads(q), self.split_heads(self.key(samples)),
                                             self.split_heads(self.value(samples)), attn_mask=bias)
        # The layout of SDPA's output depends on the kernel it picks (CPU flash attention
        # returns it [B, N, heads, d]-strided, the math kernel, used when the bias requires
        # grad, contiguous): copy to one layout so that merging the heads is always a view.
        out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format)
        return out.flatten(2).unflatten(1, (h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query(x)
        positions = self.sampling_positions(q)
        out = self.attend(q, self.sample(x, positions), positions)
        return out if self.output is None else self.output(out)
