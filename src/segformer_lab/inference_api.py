"""``Segmenter``: a model as a function from an image to a label map.

::

    import segformer_lab as sl

    seg = sl.Segmenter("runs/b0")                       # any checkpoint load_model reads
    labels = seg.predict("street.jpg")                  # int64 [H, W] at the image's size
    labels, probs = seg.predict(image, probabilities=True)   # probs: float32 [K, H, W]
    seg.overlay(image, labels).save("overlay.jpg")      # colours + legend
    seg.label_image(labels).save("labels.png")          # palette PNG, pixel = class index

Images are PIL images, ``uint8 [H, W, 3]`` arrays or paths. They are normalised with
ImageNet's mean and standard deviation, resized to ``size`` if given (else kept, with
sides below 32 scaled up to the model's minimum), and the logits are upsampled once, to
the image's own size. ``mode="slide"`` runs overlapping ``crop`` windows (large images).
Inference itself is ``segformer_lab.engine.inference.predict_logits``.

This module sits above ``models`` and ``data``; ``data`` and ``engine`` are imported when
first needed, so ``import segformer_lab`` stays light.
"""

from __future__ import annotations

import colorsys
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .models import SegmentationModel, create_model, get_config, load_model

log = logging.getLogger("segformer_lab")

MODES = ("whole", "slide")
ADE20K_NUM_CLASSES = 150
MAX_PALETTE_CLASSES = 256  # a "P" PNG holds indices 0..255


# --- models ---------------------------------------------------------------------------
def resolve_model(
    source: str | os.PathLike | SegmentationModel, num_classes: int | None = None
) -> SegmentationModel:
    """A model from a checkpoint path (anything ``load_model`` reads), a registered model
    name (random weights, with a warning) or a model (returned as it is); in eval mode.

    ``num_classes`` sets the class count of a registered model; for a checkpoint it
    must agree with the checkpoint's.
    """
    if isinstance(source, SegmentationModel):
        model = source
    elif Path(source).exists():
        model = load_model(source)
    else:
        looks_like_a_path = any(sep in str(source) for sep in ("/", os.sep)) or Path(source).suffix != ""
        try:
            get_config(str(source))
        except KeyError as err:
            detail = "" if looks_like_a_path else f" ({err.args[0]})"
            raise FileNotFoundError(f"{source}: no such checkpoint, and not a registered model name{detail}") from None
        model = create_model(str(source), num_classes=num_classes)
        log.warning("%s: a registered model with random weights (no checkpoint): its output is noise", source)
    if num_classes is not None and model.config.num_classes != num_classes:
        raise ValueError(f"{source}: the model has {model.config.num_classes} classes, not {num_classes}")
    return model.eval()


def checkpoint_class_names(source: Any, num_classes: int) -> list[str] | None:
    """Class names stored with a checkpoint: the ``id2label`` (Hugging Face) or
    ``class_names`` entry of the ``config.json`` of a checkpoint directory, if complete."""
    if isinstance(source, SegmentationModel):
        return None
    config_file = Path(source) / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    names = config.get("class_names")
    if isinstance(names, list) and len(names) == num_classes:
        return [str(n) for n in names]
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and len(id2label) == num_classes:
        try:
            return [str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in range(num_classes)]
        except KeyError:
            return None
    return None


def default_class_names(num_classes: int) -> list[str]:
    """ADE20K's names for 150 classes, else ``class 0``, ``class 1``, ..."""
    if num_classes == ADE20K_NUM_CLASSES:
        from .data.ade20k import ADE20K_CLASSES

        return list(ADE20K_CLASSES)
    return [f"class {k}" for k in range(num_classes)]


# --- colours --------------------------------------------------------------------------
def distinct_palette(num_classes: int) -> np.ndarray:
    """``uint8 [K, 3]`` colours far apart in hue: hues step by the golden angle, and
    saturation and brightness cycle through three levels so neighbours in index differ
    in more than hue. Deterministic; class 0 is never black."""
    colours = []
    for k in range(num_classes):
        hue = (k * 0.6180339887498949) % 1.0
        saturation = (0.85, 0.55, 1.0)[k % 3]
        value = (0.95, 0.75, 0.55)[(k // 3) % 3]
        colours.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value)])
    return np.array(colours, dtype=np.uint8).reshape(num_classes, 3)


def palette_for(num_classes: int) -> np.ndarray:
    """The dataset's palette for ADE20K's 150 classes, else ``distinct_palette``."""
    if num_classes == ADE20K_NUM_CLASSES:
        from .data.ade20k import ADE20K_PALETTE

        return np.array(ADE20K_PALETTE, dtype=np.uint8)
    return distinct_palette(num_classes)


def label_image(labels: np.ndarray, palette: np.ndarray):
    """A palette ("P") PIL image whose pixel values are the class indices."""
    from PIL import Image

    if palette.shape[0] > MAX_PALETTE_CLASSES:
        raise ValueError(f"{palette.shape[0]} classes do not fit a palette PNG (at most {MAX_PALETTE_CLASSES})")
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    flat = np.zeros((MAX_PALETTE_CLASSES, 3), dtype=np.uint8)
    flat[: palette.shape[0]] = palette
    image.putpalette(flat.reshape(-1).tolist())
    return image


def overlay_image(
    image: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.5,
    legend: bool = True,
):
    """``(1 - alpha) * image + alpha * colours`` as an RGB PIL image, with a legend of the
    classes present (colour, name, share of pixels; largest first) in a panel to the right."""
    from PIL import Image, ImageDraw

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    labels = np.asarray(labels)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * palette[labels].astype(np.float32)
    picture = Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    if not legend:
        return picture
    names = list(class_names) if class_names is not None else [f"class {k}" for k in range(palette.shape[0])]
    counts = np.bincount(labels.reshape(-1), minlength=palette.shape[0])
    present = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    height, width = labels.shape
    font_size = int(min(24, max(10, height / 40)))
    font = _font(font_size)
    row = font_size + 8
    swatch, pad = font_size, 8
    measure = ImageDraw.Draw(picture)
    rows = [f"{names[k]}  {100.0 * counts[k] / labels.size:.1f}%" for k in present]
    text_width = max(int(measure.textlength(r, font=font)) for r in rows)
    panel_width = pad + swatch + pad + text_width + pad
    canvas = Image.new("RGB", (width + panel_width, max(height, 2 * pad + row * len(rows))), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (k, text) in enumerate(zip(present, rows)):
        top = pad + i * row
        colour = tuple(int(c) for c in palette[k])
        draw.rectangle([width + pad, top, width + pad + swatch, top + swatch], fill=colour, outline=(0, 0, 0))
        draw.text((width + 2 * pad + swatch, top), text, fill=(0, 0, 0), font=font)
    return canvas


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


# --- images ---------------------------------------------------------------------------
def load_rgb(image: Any, name: str | None = None) -> np.ndarray:
    """A PIL image, ``uint8`` array (``[H, W, 3]``, ``[H, W, 4]`` or ``[H, W]``) or image
    path as ``uint8 [H, W, 3]`` RGB. A file that cannot be decoded raises ``DataError``."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        from .data.io import decode_image

        return decode_image(str(image), name or str(image))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image array, got dtype {image.dtype}")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] in (3, 4):
            return np.ascontiguousarray(image[:, :, :3])
        raise ValueError(f"expected an image array [H, W, 3], got shape {image.shape}")
    raise TypeError(f"expected a PIL image, a uint8 array or a path, got {type(image).__name__}")


def input_size(
    height: int, width: int, size: Sequence[int] | None = None, multiple_of: int | None = None, min_side: int = 32
) -> tuple[int, int]:
    """The size an image of ``height`` x ``width`` is given to the model at: ``size`` if
    set, else its own; sides below ``min_side`` scaled up (aspect kept); with
    ``multiple_of``, sides rounded to the nearest multiple (at least one multiple)."""
    if size is not None:
        h, w = int(size[0]), int(size[1])
    else:
        h, w = height, width
        if min(h, w) < min_side:
            factor = min_side / min(h, w)
            h, w = max(min_side, math.ceil(h * factor)), max(min_side, math.ceil(w * factor))
    if multiple_of:
        h = max(multiple_of, round(h / multiple_of) * multiple_of)
        w = max(multiple_of, round(w / multiple_of) * multiple_of)
    if min(h, w) < min_side:
        raise ValueError(f"input size {h}x{w} is too small: the model needs sides >= {min_side}")
    return h, w


def to_pixel_values(rgb: np.ndarray, size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> normalised ``float32 [1, 3, *size]`` (bilinear resize,
    antialiased when shrinking)."""
    from .data.io import IMAGENET_MEAN, IMAGENET_STD

    x = torch.tensor(rgb, device=device).permute(2, 0, 1)[None].float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if tuple(x.shape[-2:]) != tuple(size):
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x


# --- the API --------------------------------------------------------------------------
class Segmenter:
    """Semantic segmentation of single images with a trained model.

    ``checkpoint_or_model``: a checkpoint path (anything ``load_model`` reads), a
    registered model name (random weights; ``num_classes`` sets its classes) or a
    ``SegmentationModel``. ``size``: ``(H, W)`` the images are resized to (default: kept;
    ``multiple_of`` rounds the sides, as mmseg's AlignedResize with 32). ``mode``:
    ``"whole"`` or ``"slide"`` (``crop`` windows every ``stride`` pixels, averaged).
    ``scales`` and ``flip``: test-time augmentation (probabilities averaged).
    ``class_names``: default from the checkpoint (``id2label``), ADE20K's for 150
    classes, else ``class k``.
    """

    def __init__(
        self,
        checkpoint_or_model: str | os.PathLike | SegmentationModel,
        device: str | torch.device = "cpu",
        size: Sequence[int] | None = None,
        mode: str = "whole",
        crop: int | Sequence[int] = 512,
        stride: int | Sequence[int] = 341,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        multiple_of: int | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        if size is not None and (len(size) != 2 or min(size) < SegmentationModel.min_size):
            raise ValueError(f"size must be (H, W) with sides >= {SegmentationModel.min_size}, got {size}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available in this torch build or machine")
        self.model = resolve_model(checkpoint_or_model, num_classes=num_classes).to(self.device).eval()
        self.num_classes = self.model.config.num_classes
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.mode, self.crop, self.stride = mode, crop, stride
        self.scales, self.flip = tuple(scales), flip
        self.multiple_of = multiple_of
        if class_names is not None:
            class_names = [str(n) for n in class_names]
            if len(class_names) != self.num_classes:
                raise ValueError(f"{len(class_names)} class names for a model with {self.num_classes} classes")
        self.class_names = (
            class_names
            or checkpoint_class_names(checkpoint_or_model, self.num_classes)
            or default_class_names(self.num_classes)
        )
        self.palette = palette_for(self.num_classes)

    def __repr__(self) -> str:
        return (
            f"Segmenter({self.model.config.name}, classes={self.num_classes}, device={self.device}, "
            f"size={self.size}, mode={self.mode!r})"
        )

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return input_size(height, width, self.size, self.multiple_of, SegmentationModel.min_size)

    def predict(self, image: Any, probabilities: bool = False):
        """The label map ``int64 [H, W]`` at the image's size; with ``probabilities``,
        ``(labels, probabilities float32 [K, H, W])``."""
        return self.predict_batch([image], probabilities=probabilities, batch_size=1)[0]

    @torch.inference_mode()
    def predict_batch(self, images: Iterable[Any], probabilities: bool = False, batch_size: int = 8) -> list:
        """``predict`` for several images; consecutive images of the same size run as one
        batch of up to ``batch_size``."""
        from .engine.inference import predict_logits

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rgbs = [load_rgb(image) for image in images]
        results: list = []
        for group in _groups(rgbs, batch_size, self.input_size):
            out_size = group[0].shape[:2]
            x = torch.cat([to_pixel_values(rgb, self.input_size(*out_size), self.device) for rgb in group])
            logits = predict_logits(
                self.model, x, out_size, mode=self.mode, crop=self.crop, stride=self.stride,
                scales=self.scales, flip=self.flip,
            )  # fmt: skip
            labels = logits.argmax(1).to("cpu", torch.int64).numpy()
            if probabilities:
                probs = logits.float().softmax(1).cpu().numpy()
                results.extend((labels[i], probs[i]) for i in range(len(group)))
            else:
                results.extend(labels[i] for i in range(len(group)))
        return results

    def label_image(self, labels: np.ndarray):
        """The label map as a palette PNG image (pixel = class index)."""
        return label_image(labels, self.palette)

    def overlay(self, image: Any, labels: np.ndarray | None = None, alpha: float = 0.5, legend: bool = True):
        """The image blended with the colours of its labels (predicted if not given),
        with a legend of the classes present."""
        rgb = load_rgb(image)
        if labels is None:
            labels = self.predict(rgb)
        return overlay_image(rgb, labels, self.palette, self.class_names, alpha=alpha, legend=legend)


def _groups(rgbs: list[np.ndarray], batch_size: int, size_of) -> list[list[np.ndarray]]:
    """Consecutive images of equal size (original and model input), at most ``batch_size``."""
    groups: list[list[np.ndarray]] = []
    for rgb in rgbs:
        last = groups[-1] if groups else None
        if (
            last is not None
            and len(last) < batch_size
            and last[0].shape == rgb.shape
            and size_of(*last[0].shape[:2]) == size_of(*rgb.shape[:2])
        ):
            last.append(rgb)
        else:
            groups.append([rgb])
    return groups
