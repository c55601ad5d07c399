"""Evaluation of a trained model on a dataset: one confusion matrix per setting, with
an optional sweep over input resolutions (labels always stay at their original size).
The model is a ``SegmentationModel`` or an exported file in onnxruntime (``OnnxModel``):
both go through the same preprocessing (``eval_preprocessing``: the run's, else the
model's own, else the defaults), ``predict_labels`` and metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import DATASET_DEFAULT, IMAGE_DEFAULT, Preprocessing, choose_preprocessing, collate
from ..inference import OnnxModel, is_onnx_file, optimize_for_inference, predict_labels, preprocessing_of
from ..inference.devices import resolve_device
from ..inference.logits import check_settings
from ..models import CheckpointError, SegmentationModel
from ..models.factory import open_model
from ..models.pretrained import WEIGHTS_NAME
from .experiment import run_recipe
from .rundir import CHECKPOINT_DIR, LAST_CHECKPOINT
from .metrics import SegmentationMetrics
from .recipe import RunRecipe


def load_for_eval(path: str | os.PathLike, **onnx_options: Any
                  ) -> tuple[SegmentationModel | OnnxModel, RunRecipe | None]:
    """The model to evaluate and, when ``path`` belongs to a run, the run's recipe
    (``recipe.run_recipe``).

    ``path``: a run directory (its best weights), a Lightning ``.ckpt`` inside a run's
    ``checkpoints/`` (it carries its model's config), anything else ``open_model``
    takes (returned in eval mode), or a ``.onnx`` file (an ``OnnxModel``; ``onnx_options``
    are its ``num_classes``, ``mean``, ``std`` for a file without metadata)."""
    if is_onnx_file(path):
        return OnnxModel(path, **onnx_options), None
    if onnx_options:
        raise ValueError(f"{path}: {', '.join(onnx_options)} are for .onnx files without metadata; a checkpoint "
                         "knows its classes and normalisation")
    recipe = run_recipe(path)
    last = Path(path) / CHECKPOINT_DIR / LAST_CHECKPOINT
    if recipe is not None and Path(path).is_dir() and not (Path(path) / WEIGHTS_NAME).is_file() and last.is_file():
        raise CheckpointError(f"{path} holds no best weights yet (the run stopped before its first validation): "
                              f"evaluate its last checkpoint, {last}")
    return open_model(path), recipe  # ``path`` as given: it may be a Hub id


def eval_preprocessing(model: SegmentationModel | OnnxModel, recipe: RunRecipe | None, source: str,
                       **given: Any) -> tuple[Preprocessing, str]:
    """The preprocessing a dataset is scored with, and the line that says which: the
    options ``given`` (None: not given) over the run's (``recipe``), else over the model's
    own (its config's, an ONNX file's metadata), else over ``DATASET_DEFAULT`` (mmseg's
    ADE20K protocol: keep the ratio within 2048 x 512)."""
    if recipe is not None:
        return choose_preprocessing(recipe.preprocessing, DATASET_DEFAULT, str(recipe.where), **given)
    return preprocessing_of(model, DATASET_DEFAULT, source, **given)


def short_side_resize(pixel_values: torch.Tensor, size: int, preprocessing: Preprocessing = IMAGE_DEFAULT
                      ) -> torch.Tensor:
    """``[B, 3, H, W]`` resized so that the shorter side is ``size`` (then aligned as
    ``preprocessing`` says), with its interpolation (``data.resize_pixels``)."""
    height, width = pixel_values.shape[-2:]
    return preprocessing.resize(pixel_values, preprocessing.at_short_side(size).input_size(height, width))


def model_classes(model: SegmentationModel | OnnxModel) -> tuple[int, tuple[str, ...] | None]:
    """The number of classes ``model`` predicts, and their names if it knows them."""
    if isinstance(model, OnnxModel):
        return model.num_classes, model.class_names
    return model.config.num_classes, model.config.class_names


@torch.no_grad()
def evaluate(model: SegmentationModel | OnnxModel, dataset: Dataset, sizes: Sequence[int] | None = None,
             device: str | torch.device | None = None, num_workers: int = 0, progress: bool = True,
             preprocessing: Preprocessing = IMAGE_DEFAULT, **inference: Any
             ) -> dict[int | None, dict[str, torch.Tensor]]:
    """Scores (``metrics.scores`` plus ``confmat``) of ``model`` on ``dataset`` (whose
    transforms prepare the images: a ``Preprocessing``), one image at a time, with
    ``predict_labels(**inference)``. Without ``sizes`` the key is None; with ``sizes``,
    each input is resized to each short side (``short_side_resize`` with
    ``preprocessing``'s interpolation and alignment) and scored separately."""
    from tqdm import tqdm

    onnx = isinstance(model, OnnxModel)  # onnxruntime takes and gives CPU tensors
    device = resolve_device(device or ("cuda" if torch.cuda.is_available() and not onnx else "cpu"), onnx=onnx)
    check_settings(**{key: inference[key] for key in ("mode", "crop", "stride", "scales") if key in inference})
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
            x = images if key is None else short_side_resize(images, key, preprocessing)
            metrics[key].update(predict_labels(model, x, labels.shape[-2:], **inference), labels)
    return {key: {k: v.cpu() for k, v in metric.compute().items()} for key, metric in metrics.items()}
