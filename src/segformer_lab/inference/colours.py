"""Colours for label maps: a palette per class count, the palette PNG of a label map, and
the colour overlay with its legend."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data import ADE20K_PALETTE

MAX_PALETTE_CLASSES = 256  # a "P" PNG holds indices 0..255


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
    if num_classes == len(ADE20K_PALETTE):
        return np.array(ADE20K_PALETTE, dtype=np.uint8)
    return distinct_palette(num_classes)


def label_image(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """A palette ("P") PIL image whose pixel values are the class indices."""
    if palette.shape[0] > MAX_PALETTE_CLASSES:
        raise ValueError(f"{palette.shape[0]} classes do not fit a palette PNG (at most {MAX_PALETTE_CLASSES})")
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    flat = np.zeros((MAX_PALETTE_CLASSES, 3), dtype=np.uint8)
    flat[: palette.shape[0]] = palette
    image.putpalette(flat.reshape(-1).tolist())
    return image


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def overlay_image(
    image: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.5,
    legend: bool = True,
) -> Image.Image:
    """``(1 - alpha) * image + alpha * colours`` as an RGB PIL image, with a legend of the
    classes present (colour, name, share of pixels; largest first) in a panel to the right."""
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
