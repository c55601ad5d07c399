"""Training and evaluation: metrics, inference (whole / sliding window / TTA), the
optimiser recipe, the Lightning modules (segmentation, and classification for encoder
pre-training) and data module, experiments and evaluation.

Names are imported on first use, so that ``engine.inference`` (used by prediction and
export) does not pay for importing Lightning and torchmetrics.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClassificationModule": "classification",
    "EpochSampler": "datamodule",
    "ResumableLoader": "datamodule",
    "SegmentationDataModule": "datamodule",
    "evaluate": "evaluation",
    "load_for_eval": "evaluation",
    "DEFAULTS": "experiment",
    "build_model": "experiment",
    "build_module": "experiment",
    "build_trainer": "experiment",
    "resolve_config": "experiment",
    "train": "experiment",
    "predict_logits": "inference",
    "slide_logits": "inference",
    "SegmentationMetrics": "metrics",
    "confusion_matrix": "metrics",
    "scores": "metrics",
    "NonFiniteLossError": "module",
    "SegmentationModule": "module",
    "TrainingModule": "module",
    "OptimConfig": "optim",
    "WarmupDecay": "optim",
    "build_optimizer": "optim",
    "build_scheduler": "optim",
    "param_groups": "optim",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
