"""segformer-lab: efficient semantic segmentation with the SegFormer family."""

from .models import (
    CheckpointError,
    ConfigError,
    DecoderConfig,
    ImageClassifier,
    ModelConfig,
    SegmentationModel,
    StageConfig,
    create_classifier,
    create_model,
    get_config,
    list_models,
    load_classifier,
    load_model,
    load_weights,
    mit_stages,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DecoderConfig",
    "ImageClassifier",
    "ModelConfig",
    "SegmentationModel",
    "StageConfig",
    "__version__",
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

from .inference import Segmenter  # noqa: E402  (after the models it builds on)

__all__ += ["Segmenter"]
