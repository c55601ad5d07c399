"""2-D rotary position embeddings for attention over feature maps.

Rotary embeddings (RoPE; Su et al., 2021) rotate each pair of query/key channels by an
angle proportional to the token's position, so that the logit ``q_p . k_q`` depends on
positions only through ``p - q``. Heo et al. (2024, "Rotary Position Embedding for
Vision Transformer", rope-vit) extend them to images in two ways:

- **axial**: in every head, half of the channel pairs rotate with the column ``x`` and
  half with the row ``y``, at frequencies ``1 / theta**(4k/d)``, ``k < d/4``;
- **mixed**: every pair rotates by ``t_x f_x + t_y f_y`` with learnable frequencies per
  head (and per block), so a pair can follow any direction in the plane.

Everything here is real-valued (cos/sin; no complex dtypes) so it exports to ONNX, and
angles are computed in float32 whatever autocast says: in bf16 a position of a few
hundred times a frequency has no correct digits left.

Keys under spatial reduction. Efficient attention computes keys from a reduced map: each
key summarises a window of query positions. The attention module passes in its own
window-averaging function (``reduce``: a ``[N, C, H, W]`` map -> ``[N, C, h, w]``), and
keys are rotated either by the window's *centre* (``key_positions="centre"``; averaging
coordinates gives the exact centre, partial windows included) or by the *average of
the window's rotation factors* (``"pooled"``, the SegFormer-with-RoPE seed's variant:
a factor of magnitude < 1 that also shrinks the key).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

KEY_POSITIONS = ("centre", "pooled")
Reduce = Callable[[torch.Tensor], torch.Tensor]


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs ``(x[2j], x[2j+1])`` by the angle with ``cos``/``sin``.

    rope-vit's ``view_as_complex(x) * exp(i angle)``, which is also how it runs in eager
    mode: one complex product forward and backward, in ``x``'s memory layout (cheaper
    than the four real products and stack, twice as cheap in a training step's backward:
    docs/benchmarks.md). Tracers and exporters get the real form, as ONNX has no complex
    numbers, and so do half-precision inputs (no complex bfloat16). ``x`` is ``[..., N, d]``;
    ``cos``/``sin`` are ``[..., N, d/2]`` and broadcast against it.
    """
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
    if tracing or x.dtype not in (torch.float32, torch.float64):
        x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
    if x.stride(-1) != 1 or any(stride % 2 for stride in x.stride()[:-1]) or x.storage_offset() % 2:
        x = x.contiguous()  # complex numbers need whole, aligned pairs
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2)


def grid_coordinates(
    height: int, width: int, device: torch.device, reference: tuple[int, int] | None = None
) -> torch.Tensor:
    """``[2, H, W]`` float32 (row, column) positions of a grid's cells.

    Integer cell indices by default (rope-vit: a larger image extrapolates to larger
    positions). With ``reference=(h0, w0)`` positions are rescaled so the whole grid spans
    ``h0 x w0`` cells whatever its size (interpolation).
    """
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    if reference is not None:
        ys = ys * (reference[0] / height)
        xs = xs * (reference[1] / width)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def axial_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """``1 / theta**(4k/d)`` for ``k < d/4``: one frequency per pair, per axis."""
    return 1.0 / theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim)


def mixed_frequencies(head_dim: int, num_heads: int, theta: float, generator: torch.Generator | None = None):
    """rope-vit's initialisation of mixed frequencies, ``[2 (x, y), heads, d/2]``.

    Per head a random direction ``a``: the first ``d/4`` pairs point along ``a``, the others
    along ``a + pi/2``, with the axial magnitudes ``1 / theta**(4k/d)``.
    """
    magnitude = axial_frequencies(head_dim, theta)
    angles = torch.rand(num_heads, 1, generator=generator) * 2 * math.pi
    directions = torch.cat([angles.expand(-1, magnitude.numel()), (angles + math.pi / 2).expand(-1, magnitude.numel())], 1)
    magnitude = magnitude.repeat(2)
    return torch.stack([magnitude * directions.cos(), magnitude * directions.sin()])


class RotaryEmbedding2d(nn.Module):
    """Base class: rotates queries and keys of one attention module.

    Subclasses define ``frequency_matrix()``, ``[heads or 1, 2, d/2]``: a token at
    ``(x, y)`` gets the angles ``(x, y) @ M``, one product for every pair of every head.
    Tables are computed from the actual feature-map shape at every call (any resolution,
    nothing about the training size is stored). What depends only on the shape (the
    positions of queries and keys) is cached per shape and device; so are the tables,
    when they do not depend on trainable parameters being optimised.
    """

    cache_size = 8

    def __init__(self, head_dim: int, key_positions: str = "centre", reference_grid: tuple[int, int] | None = None):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head dimension divisible by 4, got {head_dim}")
        if key_positions not in KEY_POSITIONS:
            raise ValueError(f"key_positions must be one of {KEY_POSITIONS}, got {key_positions!r}")
        self.head_dim = head_dim
        self.key_positions = key_positions
        self.reference_grid = tuple(reference_grid) if reference_grid else None
        self._cache: dict = {}
        self._points: dict = {}

    def frequency_matrix(self) -> torch.Tensor:
        raise NotImplementedError

    def angles(self, points: torch.Tensor) -> torch.Tensor:
        """``[heads|1, N, d/2]`` angles of the tokens at ``points`` (``[N, 2]``, ``(x, y)``)."""
        return points @ self.frequency_matrix().float().to(points.device)

    def points(self, height: int, width: int, reduce: Reduce | None, device: torch.device) -> torch.Tensor:
        """``[N (+ M), 2]`` float32 ``(x, y)`` positions of the ``N`` queries of an ``H x W``
        grid, then, with ``reduce`` and centre keys, of the ``M`` keys (window centres:
        averaging coordinates gives the exact centre, partial windows included)."""
        coords = grid_coordinates(height, width, device, self.reference_grid)  # [2 (y, x), H, W]
        positions = coords.flatten(1)
        if reduce is not None and self.key_positions == "centre":
            positions = torch.cat([positions, reduce(coords[None])[0].flatten(1)], dim=1)
        return positions.flip(0).t()

    def tables(self, height: int, width: int, reduce: Reduce | None, device: torch.device,
               points: torch.Tensor | None = None):  # fmt: skip
        """``(cos_q, sin_q, cos_k, sin_k)`` for an ``H x W`` query grid, each ``[heads|1, N, d/2]``
        (``points``: this grid's ``points``, if at hand)."""
        if points is None:
            points = self.points(height, width, reduce, device)
        n = height * width
        with torch.autocast(device.type, enabled=False):
            angles = self.angles(points)  # the queries' and the centre keys' at once
            cos, sin = angles.cos(), angles.sin()
            cos_q, sin_q = cos[:, :n], sin[:, :n]
            if reduce is None:
                return cos_q, sin_q, cos_q, sin_q
            if self.key_positions == "centre":
                return cos_q, sin_q, cos[:, n:], sin[:, n:]
            # "pooled": average the rotation factors (cos, sin) over each key's window.
            heads, _, half = cos_q.shape
            factors = torch.cat([cos_q, sin_q], dim=-1).transpose(1, 2).reshape(heads, 2 * half, height, width)
            pooled = reduce(factors).flatten(2).transpose(1, 2)
            cos_k, sin_k = pooled.split(half, dim=-1)
            return cos_q, sin_q, cos_k, sin_k

    def cached_tables(self, height: int, width: int, reduce: Reduce | None, device: torch.device):
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
            return self.tables(height, width, reduce, device)  # computed in the graph, for every input size
        points = _cached(self._points, (height, width, device), lambda: self.points(height, width, reduce, device),
                         self.cache_size)  # fmt: skip
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return self.tables(height, width, reduce, device, points)
        key = (height, width, device, tuple(p._version for p in self.parameters()))
        return _cached(self._cache, key, lambda: self.tables(height, width, reduce, device, points), self.cache_size)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int], reduce: Reduce | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate ``q`` (``[B, heads, H*W, d]`` on ``grid``) and ``k`` (on ``reduce``'s grid)."""
        cos_q, sin_q, cos_k, sin_k = self.cached_tables(grid[0], grid[1], reduce, q.device)
        q_rot = rotate_pairs(q.float(), cos_q, sin_q).to(q.dtype)
        k_rot = rotate_pairs(k.float(), cos_k, sin_k).to(k.dtype)
        return q_rot, k_rot

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, key_positions={self.key_positions!r}, reference_grid={self.reference_grid}"


def _cached(cache: dict, key: tuple, compute: Callable[[], object], size: int):
    """``cache[key]``, computed on a miss; a full cache is emptied first."""
    if key not in cache:
        if len(cache) >= size:
            cache.clear()
        cache[key] = compute()
    return cache[key]


class AxialRoPE(RotaryEmbedding2d):
    """Axial 2-D RoPE: pairs ``[0, d/4)`` rotate with x, ``[d/4, d/2)`` with y. No parameters."""

    def __init__(self, head_dim: int, theta: float = 100.0, **kwargs) -> None:
        super().__init__(head_dim, **kwargs)
        self.theta = theta
        self.register_buffer("frequencies", axial_frequencies(head_dim, theta), persistent=False)

    def frequency_matrix(self) -> torch.Tensor:
        """``[[f, 0], [0, f]]``: x drives the first ``d/4`` pairs, y the others."""
        f = self.frequencies
        zeros = torch.zeros_like(f)
        return torch.stack([torch.cat([f, zeros]), torch.cat([zeros, f])])[None]


class MixedRoPE(RotaryEmbedding2d):
    """Mixed 2-D RoPE: learnable per-head frequencies ``freqs[2, heads, d/2]``,
    angle ``t_x f_x + t_y f_y``. Exclude ``freqs`` from weight decay.

    A checkpoint of the same model without RoPE may lack ``freqs``: they then keep their
    initialisation (``optional_checkpoint_keys``, read by the checkpoint loader)."""

    optional_checkpoint_keys = ("freqs",)

    def __init__(self, head_dim: int, num_heads: int, theta: float = 10.0, **kwargs) -> None:
        super().__init__(head_dim, **kwargs)
        self.theta = theta
        self.freqs = nn.Parameter(mixed_frequencies(head_dim, num_heads, theta))

    def frequency_matrix(self) -> torch.Tensor:
        return self.freqs.transpose(0, 1)


# name -> builder(head_dim, num_heads, theta, **placement); ``theta=None`` takes rope-vit's
# defaults (100 for axial, 10 for mixed). The one table configs validate against.
POS_ENCODINGS: dict[str, Callable[..., RotaryEmbedding2d | None]] = {
    "none": lambda head_dim, num_heads, theta, **placement: None,
    "axial": lambda head_dim, num_heads, theta, **placement: AxialRoPE(
        head_dim, theta=100.0 if theta is None else theta, **placement
    ),
    "mixed": lambda head_dim, num_heads, theta, **placement: MixedRoPE(
        head_dim, num_heads, theta=10.0 if theta is None else theta, **placement
    ),
}


def build_rope(
    kind: str,
    head_dim: int,
    num_heads: int,
    theta: float | None = None,
    key_positions: str = "centre",
    reference_grid: tuple[int, int] | None = None,
) -> RotaryEmbedding2d | None:
    """The rotary embedding for ``kind`` (``"none"`` -> ``None``). ``theta=None`` takes
    rope-vit's defaults: 100 for axial, 10 for mixed."""
    if kind not in POS_ENCODINGS:
        raise ValueError(f"unknown position encoding {kind!r}; choose one of {tuple(POS_ENCODINGS)}")
    return POS_ENCODINGS[kind](head_dim, num_heads, theta, key_positions=key_positions, reference_grid=reference_grid)
