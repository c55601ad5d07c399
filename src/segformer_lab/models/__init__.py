"""Model configs, the registry, the SegFormer encoder and heads, the image classifier
for encoder pre-training, checkpoint loading."""

from .checkpoint import CheckpointError, LoadReport, load_classifier, load_model, load_weights
from .classifier import ImageClassifier, create_classifier
from .config import ConfigError, DecoderConfig, ModelConfig, StageConfig, mit_stages
from .registry import create_model, get_config, list_models, register_model
from .segmentor import SegmentationModel

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DecoderConfig",
    "ImageClassifier",
    "LoadReport",
    "ModelConfig",
    "SegmentationModel",
    "StageConfig",
    "create_classifier",
    "create_model",
    "get_config",
    "list_models",
    "load_classifier",
    "load_model",
    "load_weights",
    "mit_stages",
    "register_model",
]
