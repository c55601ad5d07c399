"""segformer-lab: efficient semantic segmentation with the SegFormer family."""

from .models import (
    ConfigError,
    DecoderConfig,
    ModelConfig,
    SegmentationModel,
    StageConfig,
    create_model,
    get_config,
    list_models,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DecoderConfig",
    "ModelConfig",
    "SegmentationModel",
    "StageConfig",
    "__version__",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]
