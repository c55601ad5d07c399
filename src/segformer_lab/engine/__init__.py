"""Training and evaluation on PyTorch Lightning: metrics, the optimiser recipe, the
Lightning modules (segmentation, and classification for encoder pre-training) and data
module, experiments and evaluation.

Inference itself (whole / sliding window / TTA) is ``segformer_lab.inference``, which
knows nothing of Lightning.
"""

from .._lazy import lazy_exports

# imported on first use: Lightning and the datasets load only with the module that needs them
# (analysis' benchmark imports the loss, benchmarks/bench_gpu.py runs without albumentations)
_EXPORTS = {
    **dict.fromkeys(("TrainingStopped",), "callbacks"),
    **dict.fromkeys(("ClassificationTask",), "classification"),
    **dict.fromkeys(("EpochSampler", "ResumableLoader", "SegmentationDataModule"), "datamodule"),
    **dict.fromkeys(("eval_preprocessing", "evaluate", "load_for_eval"), "evaluation"),
    **dict.fromkeys(("DEFAULTS", "resolve_config"), "config"),
    **dict.fromkeys(("build_model", "build_module", "build_trainer", "run_recipe", "train"), "experiment"),
    **dict.fromkeys(("SegmentationMetrics", "confusion_matrix", "most_confused", "scores"), "metrics"),
    **dict.fromkeys(("NonFiniteLossError", "SegmentationTask", "TrainingTask"), "module"),
    **dict.fromkeys(("OptimConfig", "WarmupDecay", "build_optimizer", "build_scheduler", "param_groups"), "optim"),
    **dict.fromkeys(("RunRecipe", "augmentation_of", "dataset_view"), "recipe"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DEFAULTS", "ClassificationTask", "EpochSampler", "NonFiniteLossError", "OptimConfig",
    "ResumableLoader", "RunRecipe", "SegmentationDataModule", "SegmentationMetrics", "SegmentationTask",
    "TrainingStopped", "TrainingTask", "WarmupDecay", "augmentation_of", "build_model", "build_module",
    "build_optimizer", "build_scheduler", "build_trainer", "confusion_matrix", "dataset_view", "eval_preprocessing",
    "evaluate", "load_for_eval", "most_confused", "param_groups", "resolve_config", "run_recipe", "scores", "train",
]
