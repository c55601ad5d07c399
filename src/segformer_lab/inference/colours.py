"""Colours for label maps: a palette per class count, the palette PNG of a label map, the
colour overlay with its legend, and confidence maps (a 16-bit PNG and a heat-map overlay)."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data import ADE20K_PALETTE

MAX_PALETTE_CLASSES = 256  # a "P" PNG holds indices 0..255
CONFIDENCE_SCALE = 65535  # a 16-bit confidence PNG: 0..65535 is probability 0..1
# the heat map of confidence, low to high: dark purple, red, orange, yellow, white (as "inferno")
HEAT_STOPS = np.array([[0, 0, 4], [120, 28, 109], [237, 105, 37], [252, 255, 164], [255, 255, 255]], np.float32)


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


def palette_for(num_classes: int, known: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``known`` colours (a model's own palette, one per class) if given, else ADE20K's
    palette for 150 classes, else ``distinct_palette``."""
    if known is not None:
        if len(known) != num_classes:
            raise ValueError(f"palette: {len(known)} colours for {num_classes} classes")
        return np.array(known, dtype=np.uint8).reshape(num_classes, 3)
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


def confidence_image(confidence: np.ndarray) -> Image.Image:
    """Probabilities ``[H, W]`` in [0, 1] as a 16-bit greyscale PIL image (``I;16``): pixel
    ``round(p * 65535)``, so ``value / 65535`` reads them back within 1/131070."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.ndim != 2:
        raise ValueError(f"confidence must be [H, W], got shape {confidence.shape}")
    scaled = np.rint(np.clip(confidence, 0.0, 1.0) * CONFIDENCE_SCALE).astype(np.uint16)
    return Image.fromarray(scaled)


def heat_colours(confidence: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]``: confidence in [0, 1] through ``HEAT_STOPS`` (linear between stops)."""
    position = np.clip(np.asarray(confidence, dtype=np.float32), 0.0, 1.0) * (len(HEAT_STOPS) - 1)
    low = np.minimum(position.astype(np.int64), len(HEAT_STOPS) - 2)
    weight = (position - low)[..., None]
    colours = HEAT_STOPS[low] * (1.0 - weight) + HEAT_STOPS[low + 1] * weight
    return np.clip(colours + 0.5, 0, 255).astype(np.uint8)


def confidence_overlay(image: np.ndarray, confidence: np.ndarray, alpha: float = 0.6) -> Image.Image:
    """The image blended with the heat map of its confidence (dark: unsure, bright: sure)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat_colours(confidence).astype(np.float32)
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")
