"""Model configs, the registry, the SegFormer encoder and heads, checkpoint loading."""

from .config import ConfigError, DecoderConfig, ModelConfig, StageConfig, mit_stages
from .registry import create_model, get_config, list_models, register_model
from .segmentor import SegmentationModel

__all__ = [
    "ConfigError",
    "DecoderConfig",
    "ModelConfig",
    "SegmentationModel",
    "StageConfig",
    "create_model",
    "get_config",
    "list_models",
    "mit_stages",
    "register_model",
]
