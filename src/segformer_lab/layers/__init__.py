"""Small reusable building blocks. Nothing here knows about models or the registry."""

from .attention import AttentionOutput, EfficientAttention, EfficientSelfAttention
from .drop_path import DropPath
from .ffn import DepthwiseConv, MixFFN
from .layout import to_nchw, to_nhwc
from .patch_embed import OverlapPatchEmbed
from .rope import POS_ENCODINGS, AxialRoPE, MixedRoPE, RotaryEmbedding2d, build_rope, rotate_pairs

__all__ = [
    "POS_ENCODINGS",
    "AttentionOutput",
    "AxialRoPE",
    "MixedRoPE",
    "RotaryEmbedding2d",
    "build_rope",
    "rotate_pairs",
    "DepthwiseConv",
    "DropPath",
    "EfficientAttention",
    "EfficientSelfAttention",
    "MixFFN",
    "OverlapPatchEmbed",
    "to_nchw",
    "to_nhwc",
]
