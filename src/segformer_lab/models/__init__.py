"""Model configs, the registry, the SegFormer encoder and heads, the image classifier
for encoder pre-training, the factory, checkpoint loading.

Modules, bottom to top: ``heads``, ``labels`` (class names) < ``config`` (which validates names against the
builder tables of ``layers`` and ``heads``) < ``registry`` (names -> configs);
``encoder``, ``pretrained`` (the on-disk format), ``parameters``, ``hub`` (model card,
upload, Hub ids) < ``segmentation_model``, ``classifier`` < ``checkpoint/`` (every other format) <
``factory`` (``create_model``, ``open_model``).
"""

from .checkpoint import CheckpointError, LoadReport, load_classifier, load_model, load_weights, save_transformers
from .classifier import ImageClassifier
from .config import DecoderConfig, ModelConfig, StageConfig, mit_stages
from .config_checks import ConfigError
from .factory import create_classifier, create_model, open_model
from .registry import get_config, list_models, register_model
from .segmentation_model import SegmentationModel

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
    "open_model",
    "register_model",
    "save_transformers",
]
