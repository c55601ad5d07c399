"""Evaluation of a trained model on a dataset: one confusion matrix per setting, with
an optional sweep over input resolutions (labels always stay at their original size).
The model is a ``SegmentationModel`` or an exported file in onnxruntime (``OnnxModel``):
both go through the same ``predict_labels`` and metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data import collate
from ..inference import OnnxModel, is_onnx_file, optimize_for_inference, predict_labels
from ..models import SegmentationModel
from ..models.factory import open_model
from .experiment import CLASSIFICATION, resolve_config
from .rundir import CONFIG_FILE
from .metrics import SegmentationMetrics


def load_for_eval(path: str | os.PathLike, **onnx_options: Any
                  ) -> tuple[SegmentationModel | OnnxModel, dict[str, Any] | None]:
    """The model to evaluate and, when ``path`` belongs to a run, the run's resolved config.

    ``path``: a run directory (its best weights), a Lightning ``.ckpt`` inside a run's
    ``checkpoints/`` (it carries its model's config), anything else ``open_model``
    takes (returned in eval mode), or a ``.onnx`` file (an ``OnnxModel``; ``onnx_options``
    are its ``num_classes``, ``mean``, ``std`` for a file without metadata)."""
    if is_onnx_file(path):
        return OnnxModel(path, **onnx_options), None
    if onnx_options:
        raise ValueError(f"{path}: {', '.join(onnx_options)} are for .onnx files without metadata; a checkpoint "
                         "knows its classes and normalisation")
    config = run_config(path)
    if config is not None and config["task"] == CLASSIFICATION:
        raise ValueError(f"{path} belongs to a classification run (encoder pre-training), and eval scores "
                         "segmentation: its val/top1 and val/top5 are in its logs; fine-tune it with "
                         f"model.pretrained={path}")
    return open_model(path), config  # ``path`` as given: it may be a Hub id


def run_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The resolved config of the run ``path`` belongs to (a run directory, or a ``.ckpt``
    in its ``checkpoints/``), or None."""
    path = Path(path)
    if not path.exists():  # a registered model's name, a Hub id: not their relative parents
        return None
    run_dir = path if path.is_dir() else path.parent.parent
    return resolve_config(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None


def short_side_resize(pixel_values: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``[B, 3, H, W]`` so that the shorter side is ``size``."""
    height, width = pixel_values.shape[-2:]
    factor = size / min(height, width)
    new = (max(1, round(height * factor)), max(1, round(width * factor)))
    return F.interpolate(pixel_values, size=new, mode="bilinear", align_corners=False)


def model_classes(model: SegmentationModel | OnnxModel) -> tuple[int, tuple[str, ...] | None]:
    """The number of classes ``model`` predicts, and their names if it knows them."""
    if isinstance(model, OnnxModel):
        return model.num_classes, model.class_names
    return model.config.num_classes, model.config.class_names


@torch.no_grad()
def evaluate(model: SegmentationModel | OnnxModel, dataset: Dataset, sizes: Sequence[int] | None = None,
             device: str | torch.device | None = None, num_workers: int = 0, progress: bool = True,
             **inference: Any) -> dict[int | None, dict[str, torch.Tensor]]:
    """Scores (``metrics.scores`` plus ``confmat``) of ``model`` on ``dataset``, one image at
    a time, with ``predict_labels(**inference)``. Without ``sizes`` the key is None; with
    ``sizes``, each input is resized to each short side and scored separately."""
    from tqdm import tqdm

    onnx = isinstance(model, OnnxModel)  # onnxruntime takes and gives CPU tensors
    device = torch.device(device or ("cuda" if torch.cuda.is_available() and not onnx else "cpu"))
    if not onnx:
        model = optimize_for_inference(model.to(device).eval())
    keys = list(sizes) if sizes else [None]
    metrics = {key: SegmentationMetrics(model_classes(model)[0]).to(device) for key in keys}
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, collate_fn=collate)
    for batch in tqdm(loader, desc="evaluating", unit="img", disable=not progress):
        if batch is None:  # a bad file left out (skip_bad)
            continue
        images, labels = batch["pixel_values"].to(device), batch["labels"].to(device)
        for key in keys:
            x = images if key is None else short_side_resize(images, key)
            metrics[key].update(predict_labels(model, x, labels.shape[-2:], **inference), labels)
    return {key: {k: v.cpu() for k, v in metric.compute().items()} for key, metric in metrics.items()}
