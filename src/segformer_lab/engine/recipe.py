"""A run's recipe as its model's users need it: ``RunRecipe``, what
``experiment.run_recipe(path)`` (the one reader of a run's ``config.yaml``) returns: its
dataset view (format, root, options, splits), its validation preprocessing (the
``data.Preprocessing`` training validated with and stored beside the weights) and its
inference settings. ``eval``, ``export`` (INT8 calibration and the ONNX report), the demo
and the server read runs through it, so they cannot disagree on what a run means.

The validation preprocessing of a recipe is ``data.val_transforms`` (the ``val``
pipeline's keys: ``scale`` or ``size``, ``multiple_of``, ``interpolation``, ``antialias``,
``mean``, ``std``; ``none``: the images' own size) with the ``val`` section's ``mode``,
``crop`` and ``stride``; ``val.scales`` and ``val.flip`` (test-time augmentation) are
inference settings of the evaluator, not of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..data import Preprocessing, PreprocessingError, build_dataset, build_transforms

VALIDATION_PIPELINES = ("val", "none")  # the val_transforms a Preprocessing describes
NO_TTA = {"scales": [1.0], "flip": False}  # predict_labels' test-time augmentation: none


def recipe_preprocessing(config: dict[str, Any]) -> Preprocessing:
    """The validation preprocessing a resolved segmentation ``config`` describes (see the
    module notes); a ``val_transforms`` pipeline that is not a preprocessing is refused."""
    spec = dict(config["data"]["val_transforms"])
    name = spec.pop("name")
    if name not in VALIDATION_PIPELINES:
        raise ValueError(f"data.val_transforms: {name!r} is not a validation pipeline "
                         f"({', '.join(VALIDATION_PIPELINES)}: a resize and normalisation every consumer of the "
                         "model can repeat); use "
                         "{name: val, size: [H, W]} or {name: val, scale: [LONG, SHORT]}")
    try:
        preprocessing = build_transforms(name, **spec) if name == "val" else Preprocessing(**spec)
        val = config["val"]
        return preprocessing.replace(mode=val["mode"], crop=val["crop"], stride=val["stride"])
    except (PreprocessingError, TypeError) as err:
        raise ValueError(f"data.val_transforms / val: {err}") from None


def dataset_view(data: tuple[str, str], split: str, preprocessing: Preprocessing, num_classes: int | None,
                 skip_bad: bool = False, recipe: RunRecipe | None = None) -> Dataset:
    """The ``split`` of ``data`` (format, root) as a model sees it: through
    ``preprocessing`` (labels at their own size), with the dataset options of ``recipe``
    (``reduce_zero_label``, ``palette``...) when ``data`` is of the run's own format. An
    empty split is refused naming it."""
    same_format = recipe is not None and data[0] == recipe.data[0]
    options = recipe.config["data"]["options"] if same_format else {}
    dataset = build_dataset(*data, split, transforms=preprocessing, num_classes=num_classes, skip_bad=skip_bad,
                            **options)  # fmt: skip
    if len(dataset) == 0:
        raise ValueError(f"{data[0]}:{data[1]} has no images in its {split!r} split")
    return dataset


@dataclass(frozen=True)
class RunRecipe:
    """A segmentation run's recipe as its model's users need it. ``config``: the resolved
    ``config.yaml``; ``where``: that file."""

    config: dict[str, Any]
    preprocessing: Preprocessing
    where: Path

    @property
    def data(self) -> tuple[str, str]:
        """The run's dataset: (format, root)."""
        return self.config["data"]["format"], str(self.config["data"]["root"])

    @property
    def tta(self) -> dict[str, Any]:
        """The run's test-time augmentation (``predict_labels``' ``scales`` and ``flip``)."""
        return {key: self.config["val"][key] for key in NO_TTA}

    @property
    def inference(self) -> dict[str, Any]:
        """Every ``predict_labels`` setting of the run's validation: mode, crop, stride, scales, flip."""
        return {**self.preprocessing.inference, **self.tta}

    def split(self, which: str = "val") -> str:
        """The run's ``val`` or ``train`` split name."""
        return self.config["data"][f"{which}_split"]


def read_recipe(config: dict[str, Any], where: Path) -> RunRecipe:
    """The ``RunRecipe`` of a resolved segmentation ``config`` (read from ``where``)."""
    return RunRecipe(config, recipe_preprocessing(config), where)


def augmentation_of(recipe: RunRecipe | None) -> dict[str, Any]:
    """The run's test-time augmentation (``scales``, ``flip``), or none outside a run."""
    return dict(recipe.tta if recipe is not None else NO_TTA)
