"""Token mixers by name: the one table that configs validate against and encoders build from.

Every builder takes the same keyword arguments (``dim``, ``num_heads``, ``sr_ratio``,
``kv_pooling``, ``kv_grid``, ``expansion``, ``act``, ``output_projection``, ``rope``) and
reads the ones its mixer has; each mixer maps a ``[B, H, W, C]`` map to the same shape.
Only the mixers in ``GRID_KEY_MIXERS`` take a rotary embedding: their keys sit on a
spatial grid.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .attention import Attention, EfficientSelfAttention, PooledSelfAttention
from .deformable import DeformableAttention
from .irmb import InvertedResidualMobileMixer
from .pooling import PoolingMixer
from .separable import SeparableSelfAttention
from .xca import CrossCovarianceAttention


def _efficient(dim, num_heads, *, sr_ratio, output_projection, rope, **_) -> nn.Module:
    return Attention(EfficientSelfAttention(dim, num_heads, sr_ratio, rope), dim, output_projection)


def _pooled(dim, num_heads, *, sr_ratio, kv_pooling, kv_grid, act, output_projection, rope, **_) -> nn.Module:
    core = PooledSelfAttention(dim, num_heads, kv_pooling, kv_grid, sr_ratio, act, rope)
    return Attention(core, dim, output_projection)


TOKEN_MIXERS: dict[str, Callable[..., nn.Module]] = {
    "efficient": _efficient,
    "pooled": _pooled,
    "pooling": lambda dim, num_heads, **_: PoolingMixer(),
    "xca": lambda dim, num_heads, *, output_projection, **_: CrossCovarianceAttention(
        dim, num_heads, output_projection=output_projection
    ),
    "separable": lambda dim, num_heads, *, sr_ratio, output_projection, **_: SeparableSelfAttention(
        dim, num_heads, sr_ratio, output_projection=output_projection
    ),
    "deformable": lambda dim, num_heads, *, sr_ratio, output_projection, **_: DeformableAttention(
        dim, num_heads, sr_ratio, output_projection=output_projection
    ),
    "irmb": lambda dim, num_heads, *, expansion, act, **_: InvertedResidualMobileMixer(
        dim, num_heads, expansion=expansion, act=act
    ),
}
# Mixers whose keys sit on a spatial grid, where rotary embeddings apply.
GRID_KEY_MIXERS = ("efficient", "pooled")


def build_token_mixer(kind: str, dim: int, num_heads: int, **settings) -> nn.Module:
    """The token mixer ``kind`` of width ``dim``; ``settings`` are the keyword arguments
    above (each builder reads its own)."""
    if kind not in TOKEN_MIXERS:
        raise ValueError(f"unknown token mixer {kind!r}; choose one of {tuple(TOKEN_MIXERS)}")
    return TOKEN_MIXERS[kind](dim, num_heads, **settings)
