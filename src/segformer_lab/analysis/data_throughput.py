"""``segformer-lab bench --data``: how many training samples one data-loading process
makes per second (decode + validate, then augment + normalise), i.e. per DataLoader worker.

It times the dataset's own ``load`` and transform on ADE20K as distributed
(``ade20k:PATH``), any format the data layer reads (``FORMAT:PATH``), or, by default,
a synthetic ADE20K tree written to a temporary directory: JPEG photographs-like images
at ADE20K's typical sizes and PNG annotations with 150 classes, so that the whole real
loading path runs without the dataset on disk.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data import build_dataset, build_transforms
from .timing import torch_threads

# ADE20K training images: short side mostly 512, long side up to ~2000; these are common sizes.
SYNTHETIC_SIZES = ((512, 683), (683, 512), (512, 512), (384, 512), (512, 768), (600, 800))


def write_synthetic_ade20k(root: str | Path, count: int = 24, seed: int = 0) -> Path:
    """``count`` image/annotation pairs in ADE20K's layout under ``root/ADEChallengeData2016``:
    smooth coloured images with noise (JPEG quality 90, like the distribution) and
    annotations of blobs of labels 0..150 (PNG)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        (base / kind / "training").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)]
        coarse = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.int16)
        image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
        labels = rng.integers(0, 151, (h // 64 + 1, w // 64 + 1), dtype=np.uint8)
        mask = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
        name = f"ADE_train_{i:08d}"
        Image.fromarray(image).save(base / "images" / "training" / f"{name}.jpg", quality=90)
        Image.fromarray(mask).save(base / "annotations" / "training" / f"{name}.png")
    return base


def data_throughput(dataset: Any, samples: int = 48, warmup: int = 4) -> dict[str, Any]:
    """Per-sample milliseconds of ``dataset.load`` (decode, checks) and of its transform,
    over ``samples`` samples (cycling through the dataset) after ``warmup`` untimed ones,
    in this process with one torch thread (as a DataLoader worker runs)."""
    if samples < 1 or warmup < 0:
        raise ValueError(f"need samples >= 1 and warmup >= 0; got {samples}, {warmup}")
    load_ms, transform_ms = [], []
    with torch_threads(1):  # DataLoader workers run with one thread each
        for i in range(warmup + samples):
            start = time.perf_counter()
            sample = dataset.load(dataset.samples[i % len(dataset)])
            loaded = time.perf_counter()
            dataset.transform_sample(sample)
            done = time.perf_counter()
            if i >= warmup:
                load_ms.append((loaded - start) * 1e3)
                transform_ms.append((done - loaded) * 1e3)
    total = [a + b for a, b in zip(load_ms, transform_ms)]
    return {
        "dataset": repr(dataset), "samples": samples, "warmup": warmup,
        "load_ms": statistics.median(load_ms), "transform_ms": statistics.median(transform_ms),
        "median_ms": statistics.median(total), "mean_ms": statistics.fmean(total),
        "images_per_s": 1e3 / statistics.fmean(total),
    }  # fmt: skip


def run_data_bench(source: str, pipeline: str, samples: int, warmup: int) -> dict[str, Any]:
    """``source``: ``synthetic`` or ``FORMAT:PATH`` (training split); ``pipeline``: a
    transform pipeline name with its default parameters."""
    transforms = build_transforms(pipeline)
    if source == "synthetic":
        with tempfile.TemporaryDirectory() as directory:
            root = write_synthetic_ade20k(directory, count=min(samples, 24))
            result = data_throughput(build_dataset("ade20k", root, "training", transforms=transforms), samples,
                                     warmup)  # fmt: skip
        result["dataset"] = "synthetic ADE20K (JPEG q90, sizes 384x512 to 600x800)"
    else:
        format, sep, path = source.partition(":")
        if not sep or not path:
            raise ValueError(f"--data takes 'synthetic' or FORMAT:PATH (e.g. ade20k:/data/ADEChallengeData2016), "
                             f"got {source!r}")
        split = {"ade20k": "training"}.get(format, "train")
        result = data_throughput(build_dataset(format, path, split, transforms=transforms), samples, warmup)
    result["pipeline"] = pipeline
    return result


def print_data_result(result: dict[str, Any]) -> None:
    print(f"{result['dataset']}, pipeline {result['pipeline']}: {result['samples']} samples after "
          f"{result['warmup']} warm-up, one process, one torch thread")  # fmt: skip
    print(f"  decode + checks   {result['load_ms']:7.1f} ms / sample (median)")
    print(f"  transforms        {result['transform_ms']:7.1f} ms / sample (median)")
    print(f"  per worker        {result['images_per_s']:7.1f} img/s")
