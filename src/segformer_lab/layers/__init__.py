"""Small reusable building blocks. Nothing here knows about models or the registry.

Token mixers take and return channels-last maps ``[B, H, W, C]``; the block around them
applies norms and residuals.
"""

from .activation import build_act
from .attention import Attention, AttentionOutput, EfficientSelfAttention, GridKeyAttention, PooledSelfAttention
from .deformable import DeformableAttention
from .drop_path import DropPath
from .ffn import DepthwiseConv, MixCFN, MixConv, MixFFN, build_ffn
from .irmb import InvertedResidualMobileMixer
from .layout import to_nchw, to_nhwc
from .norm import ChannelsLastBatchNorm, ChannelsLastGroupNorm, LayerScale, build_norm
from .patch_embed import OverlapPatchEmbed, PoolPatchEmbed, build_patch_embed
from .pooling import PoolingMixer, adaptive_avg_pool2d
from .resizer import LearnableResizer
from .rope import POS_ENCODINGS, AxialRoPE, MixedRoPE, RotaryEmbedding2d, build_rope, rotate_pairs
from .separable import SeparableSelfAttention
from .xca import CrossCovarianceAttention

__all__ = [
    "POS_ENCODINGS",
    "Attention",
    "AttentionOutput",
    "AxialRoPE",
    "ChannelsLastBatchNorm",
    "ChannelsLastGroupNorm",
    "CrossCovarianceAttention",
    "DeformableAttention",
    "DepthwiseConv",
    "DropPath",
    "EfficientSelfAttention",
    "GridKeyAttention",
    "InvertedResidualMobileMixer",
    "LayerScale",
    "LearnableResizer",
    "MixCFN",
    "MixConv",
    "MixFFN",
    "MixedRoPE",
    "OverlapPatchEmbed",
    "PoolPatchEmbed",
    "PooledSelfAttention",
    "PoolingMixer",
    "RotaryEmbedding2d",
    "SeparableSelfAttention",
    "adaptive_avg_pool2d",
    "build_act",
    "build_ffn",
    "build_norm",
    "build_patch_embed",
    "build_rope",
    "rotate_pairs",
    "to_nchw",
    "to_nhwc",
]
