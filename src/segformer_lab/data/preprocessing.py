"""``Preprocessing``: how a model takes an image, defined once. A small frozen dataclass
(as transformers' image processors and timm's ``pretrained_cfg``) that travels with the
model (``ModelConfig.preprocessing``: ``config.json``, a run's checkpoints, an ONNX file's
metadata, transformers' ``preprocessor_config.json``) and that every consumer applies:
the validation transforms of training, ``eval``, ``predict``, ``Segmenter``, the ONNX
runner, INT8 calibration, the ONNX report and the demo.

- resize: ``scale`` (keep the aspect ratio, long side <= max(scale) and short side <=
  min(scale): mmseg's ``(2048, 512)``, in either order), or ``size`` (a fixed
  ``(height, width)``), or neither (the image's own size, sides below the model's minimum
  of 32 scaled up). ``multiple_of`` then rounds each side UP to a multiple (mmseg's
  AlignedResize, the protocol SegFormer's published scores were measured with; rounding up
  only ever enlarges by less than one multiple, so it never shrinks what the keep-ratio
  fit chose and cannot cut detail).
- one resize (``resize_pixels``): torch ``bilinear`` (or ``bicubic``), ``align_corners=False``,
  antialiased when a side shrinks (``antialias``; a photo shrunk without it aliases, and
  transformers' PIL resize antialiases too); applied to the normalised float image, which
  is the same as resizing first (normalisation is per-channel affine, resizing is linear
  with weights summing to one).
- ``mean``/``std``: ``pixel = (rgb / 255 - mean) / std`` (ImageNet's by default).
- ``reduce_zero_label``: the labels the model was trained on had 0 = "other" (ignored)
  and classes from 1 (ADE20K): transformers' ``do_reduce_labels``.
- ``mode`` (``whole``/``slide``) with ``crop`` and ``stride``: how the resized image is
  run (sliding windows for large inputs).

Labels are never resized for scoring: predictions are upsampled to the label size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .io import IMAGENET_MEAN, IMAGENET_STD

MODES = ("whole", "slide")
INTERPOLATIONS = ("bilinear", "bicubic")
MIN_SIDE = 32  # the smallest side the models take (SegmentationModel.min_size)
Size = tuple[int, int]


class PreprocessingError(ValueError):
    """A preprocessing value that cannot be used; the message names the key."""


def _pair(value: Any, key: str) -> Size:
    """An int or ``[a, b]`` as a pair of positive ints."""
    values = [value, value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        pair = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise PreprocessingError(f"preprocessing {key}: expected a number or [a, b], got {value!r}") from None
    if len(pair) != 2 or min(pair) < 1:
        raise PreprocessingError(f"preprocessing {key}: expected two positive sides, got {value!r}")
    return pair  # type: ignore[return-value]


def _triple(value: Any, key: str) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise PreprocessingError(f"preprocessing {key}: expected 3 numbers (R G B), got {value!r}") from None
    if len(triple) != 3:
        raise PreprocessingError(f"preprocessing {key}: expected 3 numbers (R G B), got {len(triple)}")
    if key == "std" and min(triple) <= 0:
        raise PreprocessingError(f"preprocessing std: values must be positive, got {list(triple)}")
    return triple  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocessing:
    """How images reach a model; see the module notes. Lists (as read from JSON) are
    accepted and normalised to tuples; an invalid value raises ``PreprocessingError``."""

    scale: Size | None = None
    size: Size | None = None
    multiple_of: int | None = None
    interpolation: str = "bilinear"
    antialias: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    reduce_zero_label: bool = False
    mode: str = "whole"
    crop: Size = (512, 512)
    stride: Size = (341, 341)

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for key in ("scale", "size"):
            if getattr(self, key) is not None:
                fix(key, _pair(getattr(self, key), key))
        if self.scale is not None and self.size is not None:
            raise PreprocessingError("preprocessing: give scale (keep the aspect ratio) or size (fixed), not both")
        if self.multiple_of is not None and (isinstance(self.multiple_of, bool) or int(self.multiple_of) < 1):
            raise PreprocessingError(f"preprocessing multiple_of: expected a positive integer, "
                                     f"got {self.multiple_of!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessingError(f"preprocessing interpolation: {self.interpolation!r} is unknown; choose one "
                                     f"of {INTERPOLATIONS}")
        if self.mode not in MODES:
            raise PreprocessingError(f"preprocessing mode: {self.mode!r} is unknown; choose one of {MODES}")
        fix("mean", _triple(self.mean, "mean"))
        fix("std", _triple(self.std, "std"))
        fix("crop", _pair(self.crop, "crop"))
        fix("stride", _pair(self.stride, "stride"))
        for key in ("antialias", "reduce_zero_label"):
            if not isinstance(getattr(self, key), bool):
                raise PreprocessingError(f"preprocessing {key}: expected true or false, got {getattr(self, key)!r}")

    # --- what it does ---------------------------------------------------------------
    def input_size(self, height: int, width: int, min_side: int = MIN_SIDE) -> Size:
        """The size an image of ``height`` x ``width`` is given to the model at."""
        if self.scale is not None:
            h, w = fit_size(height, width, self.scale, self.multiple_of)
        else:
            h, w = self.size or (height, width)
            if self.size is None and min(h, w) < min_side:
                factor = min_side / min(h, w)
                h, w = max(min_side, math.ceil(h * factor)), max(min_side, math.ceil(w * factor))
            h, w = align(h, self.multiple_of), align(w, self.multiple_of)
        if min(h, w) < min_side:
            raise PreprocessingError(f"input size {h}x{w} is too small: the model needs sides >= {min_side} "
                                     f"({self.describe()})")
        return h, w

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        """``uint8 [B, 3, H, W]`` -> ``(rgb / 255 - mean) / std`` as float32."""
        mean = torch.tensor(self.mean, device=rgb.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=rgb.device).view(1, 3, 1, 1)
        return (rgb.float().div_(255.0) - mean) / std

    def resize(self, pixel_values: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``[B, 3, H, W]`` at ``size`` with this interpolation (see ``resize_pixels``)."""
        return resize_pixels(pixel_values, size, self.interpolation, self.antialias)

    def pixel_values(self, rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """``uint8 [H, W, 3]`` RGB -> the model's input ``float32 [1, 3, h, w]``."""
        x = self.normalise(torch.tensor(rgb, device=device).permute(2, 0, 1)[None])
        return self.resize(x, self.input_size(*rgb.shape[:2]))

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A dataset transform (the validation pipeline): ``(pixel_values float32 [3, h, w],
        labels int64 [H, W] at the original size, or None)``."""
        labels = None if mask is None else torch.from_numpy(np.array(mask, dtype=np.int64))
        return self.pixel_values(image)[0], labels

    @property
    def inference(self) -> dict[str, Any]:
        """The keyword arguments of ``predict_labels`` this preprocessing sets."""
        return {"mode": self.mode, "crop": self.crop, "stride": self.stride}

    def at_short_side(self, side: int) -> Preprocessing:
        """The same, resized so that the short side is ``side`` (a resolution sweep; the
        long side unbounded)."""
        return self.replace(scale=(10**6, side), size=None)

    def at_own_size(self) -> Preprocessing:
        """The same without its resize or alignment: images read at their own size (what a
        resolution sweep resizes from)."""
        return self.replace(scale=None, size=None, multiple_of=None)

    def override(self, **given: Any) -> Preprocessing:
        """The same with the values given (None: not given) put over it; a given ``size``
        replaces the ``scale`` and the other way round (command-line options over a
        model's preprocessing)."""
        given = {key: value for key, value in given.items() if value is not None}
        if "size" in given and "scale" not in given:
            given["scale"] = None
        if "scale" in given and "size" not in given:
            given["size"] = None
        return self.replace(**given)

    def replace(self, **changes: Any) -> Preprocessing:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise PreprocessingError(f"unknown preprocessing key(s) {unknown}; known: {sorted(FIELDS)}")
        return dataclasses.replace(self, **changes)

    # --- what it is written as -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists), every key."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "preprocessing") -> Preprocessing:
        """The preprocessing of a ``to_dict`` dict (missing keys: the defaults); an unknown
        key or a bad value raises ``PreprocessingError`` naming ``where``."""
        if not isinstance(d, Mapping):
            raise PreprocessingError(f"{where}: expected a mapping of preprocessing keys, got {d!r}")
        unknown = sorted(set(d) - FIELDS)
        if unknown:
            raise PreprocessingError(f"{where}: unknown preprocessing key(s) {unknown}; known: {sorted(FIELDS)}")
        try:
            return cls(**d)
        except PreprocessingError as err:
            raise PreprocessingError(f"{where}: {err}") from None

    def describe(self) -> str:
        """One line: ``short side <= 512 and long side <= 2048 (keep ratio), multiple of 32,
        bilinear antialiased, ImageNet mean/std, whole image``."""
        if self.size is not None:
            resize = f"resize to {self.size[0]}x{self.size[1]}"
        elif self.scale is not None:
            resize = f"short side <= {min(self.scale)} and long side <= {max(self.scale)} (keep ratio)"
        else:
            resize = "own size"
        parts = [resize]
        if self.multiple_of:
            parts.append(f"sides rounded up to multiples of {self.multiple_of}")
        parts.append(f"{self.interpolation}{' antialiased' if self.antialias else ''}")
        named = {(IMAGENET_MEAN, IMAGENET_STD): "ImageNet"}.get((self.mean, self.std))
        parts.append(f"{named} mean/std" if named else f"mean {list(self.mean)} std {list(self.std)}")
        parts.append("whole image" if self.mode == "whole" else
                     f"sliding {self.crop[0]}x{self.crop[1]} windows, stride {self.stride[0]}x{self.stride[1]}")
        return ", ".join(parts)

    def to_image_processor(self) -> dict[str, Any]:
        """transformers' ``preprocessor_config.json`` (``SegformerImageProcessor``) for what
        it can express: the resize (fixed ``height``/``width``, or ``shortest_edge`` /
        ``longest_edge`` for a keep-ratio scale), PIL's antialiased bilinear or bicubic,
        mean/std, ``do_reduce_labels``. ``multiple_of`` and the sliding window it cannot:
        ``Preprocessing.to_dict`` is written beside it for those."""
        size: dict[str, int] = {}
        if self.size is not None:
            size = {"height": self.size[0], "width": self.size[1]}
        elif self.scale is not None:
            size = {"shortest_edge": min(self.scale), "longest_edge": max(self.scale)}
        return {
            "image_processor_type": "SegformerImageProcessor",
            "do_resize": bool(size), **({"size": size} if size else {}),
            "resample": PIL_RESAMPLE[self.interpolation],
            "do_rescale": True, "rescale_factor": 1 / 255,
            "do_normalize": True, "image_mean": list(self.mean), "image_std": list(self.std),
            "do_reduce_labels": self.reduce_zero_label,
        }  # fmt: skip

    @classmethod
    def from_image_processor(cls, d: Mapping[str, Any], where: str = "preprocessor_config.json") -> Preprocessing:
        """The preprocessing a transformers ``preprocessor_config.json`` describes (e.g.
        ``nvidia/segformer-b0-finetuned-ade-512-512``'s: 512x512, reduce labels)."""
        changes: dict[str, Any] = {}
        size = d.get("size") if d.get("do_resize", True) else None
        if isinstance(size, Mapping):
            if "height" in size and "width" in size:
                changes["size"] = (size["height"], size["width"])
            elif "shortest_edge" in size:
                changes["scale"] = (size.get("longest_edge", 10**6), size["shortest_edge"])
            else:
                raise PreprocessingError(f"{where}: size {dict(size)} is not height/width nor shortest_edge")
        elif isinstance(size, int):  # an old processor's square size
            changes["size"] = (size, size)
        if "resample" in d:  # PIL's other filters (nearest, lanczos...) run as the closest of ours, bilinear
            changes["interpolation"] = {v: k for k, v in PIL_RESAMPLE.items()}.get(d["resample"], "bilinear")
        if d.get("do_normalize", True):
            changes.update(mean=d.get("image_mean", IMAGENET_MEAN), std=d.get("image_std", IMAGENET_STD))
        else:
            changes.update(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        changes["reduce_zero_label"] = bool(d.get("do_reduce_labels", d.get("reduce_labels", False)))
        try:
            return cls(**changes)
        except PreprocessingError as err:
            raise PreprocessingError(f"{where}: {err}") from None


FIELDS = frozenset(f.name for f in dataclasses.fields(Preprocessing))
PIL_RESAMPLE = {"bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling, as transformers writes it
# What a model without stored preprocessing gets (checkpoints written before it travelled,
# registered names): today's defaults of each consumer. Scoring a dataset: mmseg's ADE20K
# protocol (the recipe defaults' validation); single images (predict, Segmenter): their own size.
DATASET_DEFAULT = Preprocessing(scale=(2048, 512))
IMAGE_DEFAULT = Preprocessing()


def align(side: int, multiple_of: int | None) -> int:
    """``side`` rounded UP to a multiple of ``multiple_of`` (the one alignment rule: mmseg's
    AlignedResize); unchanged without one."""
    return -(-side // multiple_of) * multiple_of if multiple_of else side


def fit_size(height: int, width: int, scale: Sequence[float], multiple_of: int | None = None) -> Size:
    """mmcv's keep-ratio rescale: the largest size with long edge <= max(scale) and short
    edge <= min(scale) (sides rounded to the nearest pixel), then ``align``-ed."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    new_h, new_w = max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)
    return align(new_h, multiple_of), align(new_w, multiple_of)


def resize_pixels(pixel_values: torch.Tensor, size: Sequence[int], interpolation: str = "bilinear",
                  antialias: bool = True) -> torch.Tensor:
    """The one resize of model inputs: ``[B, 3, H, W]`` float to ``size`` (``align_corners=False``),
    antialiased (with ``antialias``) when either side shrinks; unchanged at its own size."""
    size = (int(size[0]), int(size[1]))
    if tuple(pixel_values.shape[-2:]) == size:
        return pixel_values
    shrink = size[0] < pixel_values.shape[-2] or size[1] < pixel_values.shape[-1]
    return F.interpolate(pixel_values, size=size, mode=interpolation, align_corners=False,
                         antialias=antialias and shrink)


def choose_preprocessing(stored: Preprocessing | None, default: Preprocessing, source: str,
                         own_size: bool = False, **given: Any) -> tuple[Preprocessing, str]:
    """The preprocessing to use and one line saying which and where it came from:
    ``given`` values (None: not given; the command line's) over ``stored`` (the model's,
    from ``source``), else over ``default`` (a model that stores none); ``own_size``:
    no resize (images at their own size)."""
    base, origin = (stored, f"stored with {source}") if stored is not None else \
        (default, f"the defaults: {source} stores none")
    if own_size:
        base = base.replace(scale=None, size=None)
    chosen = base.override(**given)
    named = [key for key, value in given.items() if value is not None] + (["own size"] if own_size else [])
    if named:
        origin += "; " + ", ".join(named) + " from the options"
    return chosen, f"preprocessing: {chosen.describe()} ({origin})"
