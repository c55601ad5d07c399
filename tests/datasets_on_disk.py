"""Tiny datasets written in each format's real on-disk layout (ADE20K, folder, parquet,
Tiny-ImageNet), for the data, engine and classification tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

H, W = 40, 60
RNG = np.random.default_rng(0)


def rgb(h: int = H, w: int = W) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(array: np.ndarray, path: Path) -> Path:
    """uint8 [H, W] -> L, [H, W, 3] -> RGB, [H, W, 4] -> RGBA, uint16 [H, W] -> I;16."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def raw_ade_mask(h: int = H, w: int = W) -> np.ndarray:
    """Raw ADE20K values: 0 ("other") and 1..150 in stripes."""
    mask = np.zeros((h, w), np.uint8)
    mask[:, 10:20], mask[:, 20:30], mask[:, 30:] = 1, 150, 7
    return mask


def reduced(mask: np.ndarray) -> np.ndarray:
    out = mask.astype(np.int64) - 1
    out[(mask == 0) | (mask == 255)] = 255
    return out


def make_ade(tmp_path: Path, stems=("a", "b"), split="training") -> Path:
    root = tmp_path / "ADEChallengeData2016"
    for stem in stems:
        save(rgb(), root / "images" / split / f"{stem}.jpg")
        save(raw_ade_mask(), root / "annotations" / split / f"{stem}.png")
    return root


def make_folder(tmp_path: Path, masks: dict[str, np.ndarray], classes=("sky", "road", "car")) -> Path:
    root = tmp_path / "mine"
    for stem, mask in masks.items():
        save(rgb(*mask.shape[:2]), root / "images" / "train" / f"{stem}.png")
        save(mask, root / "masks" / "train" / f"{stem}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def folder_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[:, 20:40], mask[:, 40:], mask[:5] = 1, 2, 255
    return mask


def make_parquet(path: Path, rows: list[tuple[bytes | None, bytes | None]], row_group_size=2) -> Path:
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = [None if i is None else {"bytes": i, "path": f"img_{n}.jpg"} for n, (i, _) in enumerate(rows)]
    annos = [None if a is None else {"bytes": a, "path": f"img_{n}.png"} for n, (_, a) in enumerate(rows)]
    table = pa.table({"image": pa.array(images, struct), "annotation": pa.array(annos, struct),
                      "scene_category": pa.array(list(range(len(rows))), pa.int64())})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def make_tiny(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # deliberately not sorted: labels follow this order
    (root).mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for k in range(2):
            save(rgb(64, 64), root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG")
    lines = []
    for k, wnid in enumerate(["n03", "n02", "n01", "n03"]):
        save(rgb(64, 64), root / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t10\t10")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


# Cityscapes label ids: 7 road -> 0, 26 car -> 13, 23 sky -> 10; 0 unlabeled, 9 parking,
# 34+ (out of the table) -> ignore
CITYSCAPES_IDS = (7, 26, 23, 0, 9, 40)


def cityscapes_ids(h: int = H, w: int = W) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    for i, label_id in enumerate(CITYSCAPES_IDS):
        mask[:, i * w // len(CITYSCAPES_IDS):] = label_id
    return mask


def make_cityscapes(tmp_path: Path, frames=(("aachen", "000000_000019"), ("bonn", "000001_000019")),
                    splits=("train", "val")) -> Path:
    """The official layout, with the gtFine files that are not read (colour, instance ids, polygons)."""
    root = tmp_path / "cityscapes"
    for split in splits:
        for city, frame in frames:
            stem = f"{city}_{frame}"
            save(rgb(), root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            gt = root / "gtFine" / split / city
            save(cityscapes_ids(), gt / f"{stem}_gtFine_labelIds.png")
            save(rgb(), gt / f"{stem}_gtFine_color.png")
            save(np.full((H, W), 26000, np.uint16), gt / f"{stem}_gtFine_instanceIds.png")
            (gt / f"{stem}_gtFine_polygons.json").write_text("{}")
    return root


def make_blocky_ade(root: Path) -> Path:
    """An ADE20K directory (``ADEChallengeData2016`` layout, raw labels 0 = other, 1..150):
    8 training and 3 validation JPEGs of blocky maps of classes 1-4, brightness following
    the class, and an "other" band on top."""
    rng = np.random.default_rng(0)
    root = root / "ADEChallengeData2016"
    for split, count, size in (("training", 8, (64, 80)), ("validation", 3, (48, 64))):
        for sub in ("images", "annotations"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mask = rng.integers(1, 5, size=(size[0] // 16, size[1] // 16)).repeat(16, 0).repeat(16, 1)
            image = (mask[..., None] * 50 + rng.integers(0, 40, size=(*size, 3))).astype(np.uint8)
            mask[:3] = 0
            name = f"ADE_{split[:5]}_{i:08d}"
            Image.fromarray(image).save(root / "images" / split / f"{name}.jpg", quality=95)
            Image.fromarray(mask.astype(np.uint8)).save(root / "annotations" / split / f"{name}.png")
    return root
