"""Model configs, the registry, the SegFormer encoder and heads, checkpoint loading."""

from .checkpoint import CheckpointError, LoadReport, load_model, load_weights
from .config import ConfigError, DecoderConfig, ModelConfig, StageConfig, mit_stages
from .registry import create_model, get_config, list_models, register_model
from .segmentor import SegmentationModel

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DecoderConfig",
    "LoadReport",
    "ModelConfig",
    "SegmentationModel",
    "StageConfig",
    "create_model",
    "get_config",
    "list_models",
    "load_model",
    "load_weights",
    "mit_stages",
    "register_model",
]
