"""``data show``: a grid of samples with their masks overlaid, captioned, and one legend of
the classes shown, optionally after a training pipeline (to see the augmentation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._io import atomic_write
from ..data import IGNORE_INDEX, DataError, IMAGENET_MEAN, IMAGENET_STD, build_dataset, build_transforms
from ..inference import overlay_image, palette_for

IGNORE_COLOUR = (0, 0, 0)
PAD, CAPTION = 6, 16


def _as_uint8(pixel_values: Any) -> np.ndarray:
    """Normalised ``[3, H, W]`` pixel values back to ``uint8 [H, W, 3]`` (ImageNet mean/std)."""
    array = pixel_values.numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _tile(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, side: int) -> Image.Image:
    if labels.shape != image.shape[:2]:  # pipelines that resize the image only (val): labels follow
        labels = np.array(Image.fromarray(labels).resize(image.shape[1::-1], Image.NEAREST))
    picture = overlay_image(image, labels, palette, alpha=0.5, legend=False)
    picture.thumbnail((side, side), Image.BILINEAR)
    return picture


def _legend(names: list[str], palette: np.ndarray, present: np.ndarray, height: int) -> Image.Image:
    font = ImageFont.load_default()
    rows = [(k, names[k] if k < len(names) else f"ignore ({IGNORE_INDEX})") for k in np.flatnonzero(present)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = 3 * PAD + 12 + max([int(measure.textlength(name, font=font)) for _, name in rows] + [40])
    panel = Image.new("RGB", (width, max(height, PAD + 18 * len(rows))), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for i, (k, name) in enumerate(rows):
        top = PAD + 18 * i
        draw.rectangle([PAD, top, PAD + 12, top + 12], fill=tuple(int(c) for c in palette[k]), outline=(0, 0, 0))
        draw.text((2 * PAD + 12, top), name, fill=(0, 0, 0), font=font)
    return panel


def show_dataset(format: str, root: str | Path, out: str | Path, *, split: str = "train", n: int = 16,
                 transforms: str | None = None, num_classes: int | None = None,
                 options: dict[str, Any] | None = None, seed: int = 0, tile: int = 256,
                 columns: int = 4) -> Path:
    """Draw the first ``n`` samples of ``split`` (after ``transforms``, a pipeline name,
    reseeded with ``seed + index``) into ``out/<split>.png``; returns that path."""
    pipeline = build_transforms(transforms) if transforms else None
    dataset = build_dataset(format, root, split, transforms=pipeline, num_classes=num_classes, skip_bad=True,
                            **(options or {}))
    colours = np.array(dataset.palette, np.uint8) if dataset.palette else palette_for(dataset.num_classes)
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(colours)], palette[IGNORE_INDEX] = colours, IGNORE_COLOUR
    tiles, present = [], np.zeros(256, bool)
    for index in range(len(dataset)):
        if len(tiles) == n:
            break
        sample = dataset[(index, seed + index)]
        if sample is None:  # a bad file, left out (and warned about)
            continue
        labels = sample["labels"].numpy().astype(np.uint8)
        present[np.unique(labels)] = True
        tiles.append((_tile(_as_uint8(sample["pixel_values"]), labels, palette, tile), Path(sample["path"]).name))
    if not tiles:
        raise DataError(str(root), f"no readable sample in split {split!r} (run segformer-lab data check)")
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    cell_w, cell_h = tile + PAD, tile + PAD + CAPTION
    legend = _legend(dataset.class_names, palette, present, rows * cell_h)
    grid = Image.new("RGB", (columns * cell_w + PAD + legend.width, max(rows * cell_h, legend.height) + PAD),
                     (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (picture, name) in enumerate(tiles):
        left, top = PAD + (i % columns) * cell_w, PAD + (i // columns) * cell_h
        grid.paste(picture, (left, top))
        draw.text((left, top + picture.height + 2), name[:40], fill=(0, 0, 0), font=ImageFont.load_default())
    grid.paste(legend, (columns * cell_w + PAD, 0))
    path = Path(out) / f"{dataset.split}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
    return path
