"""Decoding and validating images and masks; the error type every data problem raises.

Conventions, decided once here:

- images come out as ``uint8 [H, W, 3]`` RGB, whatever form they come in (a file, a PIL
  image of any mode, an array: ``image_rgb``, ``array_rgb``). Grayscale, palette, CMYK and
  RGBA images are converted to RGB (alpha is dropped, not composited); 16-bit grayscale
  (PIL modes ``I;16``, ``I``; ``uint16`` arrays) is scaled to 8 bits over its full range
  (value / 257, rounded); float data (mode ``F``, float arrays) must lie in 0..1 and is
  scaled by 255, rounded. Anything else is a ``DataError`` naming the image.
- the pixels are the file's as stored; ``decode_image(..., upright=True)`` (what inference
  uses) first turns the photo as its EXIF orientation says, as every viewer shows it.
- masks come out as ``uint8 [H, W]`` class indices. Palette ("P") PNGs give their indices;
  RGB(A) masks are accepted only when R == G == B (a gray mask saved as colour), since a
  colour-coded mask needs a palette to decode; 16-bit masks are accepted when every value
  fits in 0..255, else refused.
- 255 is the ignore index everywhere; a label >= ``num_classes`` other than 255 is an error.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IGNORE_INDEX = 255
# the image files the project reads (folder datasets, ``predict``): every one decodes with PIL
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Source = str | Path | bytes


class DataError(ValueError):
    """A data file or layout that cannot give correct samples; ``path`` names the culprit.

    ``DataError(text)`` with one argument is how torch re-raises an error of a DataLoader
    worker in the main process (``ExceptionWrapper.reraise``: the type, called with the
    worker's formatted traceback); that text's last line is the worker's error, which
    becomes this one, and the traceback is kept as a note (shown with ``-v``)."""

    def __init__(self, path: str, message: str | None = None):
        if message is None:
            text = str(path)
            path, message = _worker_error(text)
            if path != text:
                self.add_note(text)
        super().__init__(f"{path}: {message}" if message else str(path))
        self.path = str(path)
        self.reason = message


def _worker_error(text: str) -> tuple[str, str]:
    """``(path, reason)`` from a worker's traceback, whose last line reads
    ``segformer_lab.data.io.DataError: PATH: REASON`` (REASON to the end); else ``(text, "")``."""
    prefix = f"\n{DataError.__module__}.{DataError.__qualname__}: "
    start = text.rfind(prefix)
    if start < 0:
        return text, ""
    path, _, reason = text[start + len(prefix):].strip().partition(": ")
    return path, reason


class DataWarning(UserWarning):
    """A bad file left out because the dataset was built with ``skip_bad=True``."""


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def _open(source: Source, name: str) -> Image.Image:
    """Open and fully decode (``load``) so that truncated files fail here, not later."""
    image = None
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except FileNotFoundError as exc:
        raise DataError(name, "file not found") from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib errors...
        if image is not None:
            image.close()
        raise DataError(name, f"cannot decode ({type(exc).__name__}: {exc})") from exc
    return image


def _sixteen_bit(image: Image.Image, name: str, what: str) -> np.ndarray:
    array = np.array(image)
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise DataError(name, f"{what} of mode {image.mode} has values outside 0..65535")
    return array


def read_text(path: str | Path) -> str:
    """The text of a user's file (class names, a palette, a recipe) as UTF-8; a file in
    another encoding is a ``DataError`` naming it and the first byte that is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(str(path), f"not a UTF-8 text file (byte {e.start}: {e.reason}); save it as UTF-8") from None


def decode_image(source: Source, name: str, upright: bool = False) -> np.ndarray:
    """Read an image file (path or encoded bytes) as ``uint8 [H, W, 3]`` RGB; with
    ``upright``, turned as its EXIF orientation says (``upright``)."""
    image = _open(source, name)
    return image_rgb(upright_image(image) if upright else image, name)


# EXIF tag 0x0112: how the stored pixels must be turned to be seen upright (1 = as stored)
ORIENTATION = 0x0112


def upright_image(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (a phone's photo stored sideways), as
    viewers and transformers' ``load_image`` show it; ``image`` itself when it needs no turn."""
    if image.getexif().get(ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def image_rgb(image: Image.Image, name: str) -> np.ndarray:
    """A PIL image of any mode as ``uint8 [H, W, 3]`` RGB (the module's conventions)."""
    if image.mode in ("RGB", "L", "F") or image.mode.startswith("I;16"):
        return array_rgb(np.array(image), name)
    if image.mode == "I":  # 32-bit integers, as PIL opens most 16-bit PNGs
        return array_rgb(_sixteen_bit(image, name, "image").astype(np.uint16), name)
    if image.mode.startswith("I;") or image.mode.startswith("F;"):
        raise DataError(name, f"unsupported image mode {image.mode!r} (32-bit data)")
    return np.asarray(image.convert("RGB"))


def array_rgb(array: np.ndarray, name: str = "image") -> np.ndarray:
    """An image array ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` (alpha dropped)
    of ``uint8``, ``uint16`` (scaled by 1/257) or float in 0..1 (scaled by 255) as
    ``uint8 [H, W, 3]`` RGB; any other shape, dtype or range is a ``DataError``."""
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[:, :, :3]
    elif array.ndim != 2:
        raise DataError(name, f"expected an image array [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    if array.size == 0:
        raise DataError(name, f"empty image (shape {array.shape})")
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:  # either byte order
        array = np.rint(array.astype(np.float32) / 257.0).astype(np.uint8)
    elif array.dtype.kind == "f":
        low, high = float(np.min(array)), float(np.max(array))
        if not (0.0 <= low and high <= 1.0):  # also false for nan
            raise DataError(name, f"a float image must hold values in 0..1, got {low:g}..{high:g} (pass uint8 "
                                  "for 0..255)")
        array = np.rint(array.astype(np.float32) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DataError(name, f"expected a uint8, uint16 or float image, got dtype {array.dtype}")
    if array.ndim == 2 or array.shape[2] == 1:
        return np.repeat(array.reshape(*array.shape[:2], 1), 3, axis=2)
    return np.ascontiguousarray(array)


def decode_mask(source: Source, name: str) -> np.ndarray:
    """Read a mask file as ``uint8 [H, W]`` class indices (see the module notes)."""
    image = _open(source, name)
    mode = image.mode
    if mode in ("L", "P"):
        return np.array(image)
    if mode == "1":
        return np.array(image).astype(np.uint8)
    if mode.startswith("I;16") or mode == "I":
        array = _sixteen_bit(image, name, "mask")
        if array.size and array.max() > 255:
            raise DataError(name, f"16-bit mask has value {int(array.max())}, beyond 0..255")
        return array.astype(np.uint8)
    if mode in ("LA", "PA"):
        return np.array(image)[:, :, 0]
    if mode in ("RGB", "RGBA"):
        array = np.array(image)
        if not ((array[:, :, 0] == array[:, :, 1]).all() and (array[:, :, 0] == array[:, :, 2]).all()):
            raise DataError(name, f"colour-coded {mode} mask; masks must hold class indices "
                                  "(single channel, or R == G == B)")
        return np.ascontiguousarray(array[:, :, 0])
    raise DataError(name, f"unsupported mask mode {mode!r}")


def reduce_zero_label(mask: np.ndarray) -> np.ndarray:
    """ADE20K convention: 0 ("other") -> 255, v -> v - 1; 255 stays ignored."""
    out = mask - np.uint8(1)  # uint8 wraps 0 -> 255
    out[mask == IGNORE_INDEX] = IGNORE_INDEX
    return out


def check_labels(mask: np.ndarray, num_classes: int, name: str, reduce_zero: bool = False) -> None:
    """Raise if any label is neither a class index below ``num_classes`` nor 255. With
    ``reduce_zero``, ``mask`` is the file's, before ``reduce_zero_label`` (0 is ignored,
    1..num_classes are the classes), so that the message shows the values the file holds."""
    first = 1 if reduce_zero else 0
    counts = np.bincount(mask.ravel(), minlength=256)
    counts[IGNORE_INDEX] = 0
    bad = np.flatnonzero(counts[num_classes + first:]) + num_classes + first
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        rule = (f"with reduce-zero-label, valid values are 0 = ignore, 1..{num_classes} = classes "
                f"0..{num_classes - 1}, {IGNORE_INDEX} = ignore" if reduce_zero
                else f"valid: 0..{num_classes - 1} and {IGNORE_INDEX} = ignore")
        raise DataError(name, f"label values {shown} out of range for {num_classes} classes ({rule})")


def check_same_size(image: np.ndarray, mask: np.ndarray, name: str) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise DataError(name, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
                              f"{image.shape[1]}x{image.shape[0]} (W x H)")
