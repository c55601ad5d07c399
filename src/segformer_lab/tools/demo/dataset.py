"""The demo's data: the embedded scenes dataset, generated or reused, what it holds,
and the majority-class baseline the models are compared with."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._io import read_json
from ...data import IGNORE_INDEX, build_dataset, decode_mask, reduce_zero_label
from ...data.scenes import SCENE_PALETTE, generate_scenes, scenes_ready
from ...engine import SegmentationMetrics

DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES = 2000, 200
IMAGE_SIZE = 128  # the training images' side, and the short side the models are scored at
DATA_SEED = 0


def spread_indices(count: int, length: int) -> list[int]:
    """Up to ``count`` distinct indices of ``range(length)`` spread evenly, the first and the
    last included (images of varied sizes for a sample that represents the split)."""
    count = min(count, length)
    return sorted({round(i * (length - 1) / max(1, count - 1)) for i in range(count)})


def prepare_dataset(root: Path, train: int, val: int, position_free: bool = False) -> tuple[Path, bool, float]:
    """The scenes dataset in ``root`` (generated unless already there; ``position_free``:
    half of the scenes upside down): its root, whether it was reused, and the seconds it took."""
    size = (IMAGE_SIZE, IMAGE_SIZE)
    start = time.perf_counter()
    reused = scenes_ready(root, train, val, DATA_SEED, size, position_free)
    root = generate_scenes(root, train, val, DATA_SEED, size, position_free)
    return root, reused, time.perf_counter() - start


def dataset_meta(root: Path) -> dict[str, Any]:
    """Class names, palette and the generator's metadata of the dataset in ``root``."""
    meta = read_json(root / "dataset.json") or {}
    classes = [line.strip() for line in (root / "classes.txt").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    palette = meta.get("palette") or [list(c) for c in SCENE_PALETTE]
    return {"classes": classes, "palette": [tuple(int(v) for v in c) for c in palette], "meta": meta}


def train_pixel_counts(root: Path, num_classes: int) -> list[int]:
    """Labelled training pixels per class: from ``dataset.json`` when it has them (the
    generator counts while it writes), else by reading the training annotations."""
    meta = read_json(root / "dataset.json") or {}
    raw = (meta.get("pixels") or {}).get("train")
    if isinstance(raw, list) and len(raw) >= num_classes + 1:
        return [int(v) for v in raw[1:num_classes + 1]]  # raw value c + 1 is class c
    dataset = build_dataset("ade20k", root, "train", transforms="none", num_classes=num_classes)
    counts = np.zeros(num_classes, np.int64)
    for ref in dataset.samples:
        mask = dataset.load(ref)["mask"]
        counts += np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
    return counts.tolist()


def majority_baseline(root: Path, val_set, num_classes: int) -> dict[str, Any]:
    """Predict the most frequent training class everywhere, scored on ``val_set`` with the
    engine's metrics (the same confusion matrix as the models)."""
    counts = train_pixel_counts(root, num_classes)
    majority = max(range(num_classes), key=lambda c: counts[c])
    metric = SegmentationMetrics(num_classes)
    for _, mask_path in val_set.samples:  # (image, annotation) paths: only the masks are read
        labels = torch.from_numpy(reduce_zero_label(decode_mask(mask_path, str(mask_path))).astype("int64"))
        metric.update(torch.full_like(labels, majority), labels)
    scores = metric.compute()
    return {"class": majority, **{k: 100 * float(scores[k]) for k in ("mIoU", "mAcc", "aAcc")},
            "train_fraction": counts[majority] / max(1, sum(counts))}
