"""segformer-lab: efficient semantic segmentation with the SegFormer family.

The public names below are imported on first use (PEP 562), so that ``import
segformer_lab`` and the command line's ``--help`` do not pay for torch; ``from
segformer_lab import create_model`` works as usual.
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the subpackage that defines it
_EXPORTS = {
    **dict.fromkeys(
        ("CheckpointError", "ConfigError", "DecoderConfig", "ImageClassifier", "ModelConfig", "SegmentationModel",
         "StageConfig", "create_classifier", "create_model", "get_config", "list_models", "load_classifier",
         "load_model", "load_weights", "mit_stages", "open_model", "register_model", "save_transformers"),
        "models",
    ),
    **dict.fromkeys(("OnnxSegmenter", "Segmenter", "optimize_for_inference"), "inference"),
    "Preprocessing": "data",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
