"""Training and evaluation on PyTorch Lightning: metrics, the optimiser recipe, the
Lightning modules (segmentation, and classification for encoder pre-training) and data
module, experiments and evaluation.

Inference itself (whole / sliding window / TTA) is ``segformer_lab.inference``, which
knows nothing of Lightning.
"""

from .callbacks import TrainingStopped
from .classification import ClassificationTask
from .datamodule import EpochSampler, ResumableLoader, SegmentationDataModule
from .evaluation import eval_preprocessing, evaluate, load_for_eval
from .experiment import DEFAULTS, build_model, build_module, build_trainer, resolve_config, run_recipe, train
from .metrics import SegmentationMetrics, confusion_matrix, most_confused, scores
from .module import NonFiniteLossError, SegmentationTask, TrainingTask
from .optim import OptimConfig, WarmupDecay, build_optimizer, build_scheduler, param_groups
from .recipe import RunRecipe, augmentation_of, dataset_view

__all__ = [
    "DEFAULTS", "ClassificationTask", "EpochSampler", "NonFiniteLossError", "OptimConfig",
    "ResumableLoader", "RunRecipe", "SegmentationDataModule", "SegmentationMetrics", "SegmentationTask",
    "TrainingStopped", "TrainingTask", "WarmupDecay", "augmentation_of", "build_model", "build_module",
    "build_optimizer", "build_scheduler", "build_trainer", "confusion_matrix", "dataset_view", "eval_preprocessing",
    "evaluate", "load_for_eval", "most_confused", "param_groups", "resolve_config", "run_recipe", "scores", "train",
]
