"""The scenes dataset on disk: ``generate_scenes`` writes it, ``scenes_ready`` recognises it.

Images are rendered in chunks (in worker processes when there are many) and written in
the ADE20K layout with ``classes.txt`` and ``dataset.json``; the dataset is built in a
temporary directory beside its destination and renamed into place.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..._io import read_json
from ..ade20k import ADE20K_SPLITS
from .classes import SCENE_AMBIGUOUS_PAIRS, SCENE_CLASSES, SCENE_PALETTE
from .render import render_scene
from .textures import load_textures

log = logging.getLogger(__name__)

GENERATOR = "segformer_lab.scenes"
SCENES_VERSION = 1  # bump whenever the rendered bytes change: caches are then regenerated
JPEG_QUALITY = 92
SPLIT_CODE = {"train": 0, "val": 1}  # the second number of an image's seed (render_scene)


def _val_size(rng: np.random.Generator, index: int, size: tuple[int, int]) -> tuple[int, int]:
    """Validation sizes: 0.75x to 2x (+32) the training size per side, every fourth at
    least 2x on both sides; never both sides divisible by 32."""
    sides = []
    for side in size:
        low, high = (2 * side, 2 * side + 32) if index % 4 == 0 else (max(32, int(0.75 * side)), 2 * side + 32)
        sides.append(int(rng.integers(low, high + 1)))
    if sides[0] % 32 == 0 and sides[1] % 32 == 0:
        sides[1] += 1
    return sides[0], sides[1]


def _params(train: int, val: int, seed: int, size: tuple[int, int], position_free: bool = False) -> dict[str, Any]:
    params = {"generator": GENERATOR, "version": SCENES_VERSION, "seed": int(seed), "train": int(train),
              "val": int(val), "size": [int(size[0]), int(size[1])], "image_format": f"jpeg q{JPEG_QUALITY} 4:4:4"}
    return {**params, "position_free": True} if position_free else params  # earlier caches stay valid


def _file_names(count: int) -> list[str]:
    return [f"scene_{i:06d}" for i in range(count)]


def _check_args(train: int, val: int, size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or min(int(v) for v in size) < 32:
        raise ValueError(f"size must be two sides (H, W) of at least 32 pixels, got {tuple(size)}")
    if int(train) < 1 or int(val) < 0:
        raise ValueError(f"need train >= 1 and val >= 0 images, got train={train}, val={val}")
    return int(size[0]), int(size[1])


def scenes_ready(out_dir: str | Path, train: int = 2000, val: int = 200, seed: int = 0,
                 size: tuple[int, int] = (128, 128), position_free: bool = False) -> bool:
    """True if ``out_dir`` holds the complete dataset these parameters generate:
    ``dataset.json`` records them and exactly the expected files are there."""
    root = Path(out_dir)
    meta = read_json(root / "dataset.json")
    if not isinstance(meta, dict) or meta.get("params") != _params(train, val, seed, _check_args(train, val, size),
                                                                 position_free):
        return False
    if not (root / "classes.txt").is_file():
        return False
    for split, count in (("train", train), ("val", val)):
        names = _file_names(count)
        for folder, ext in (("images", ".jpg"), ("annotations", ".png")):
            directory = root / folder / ADE20K_SPLITS[split]
            try:
                present = {p.name for p in directory.iterdir()}
            except OSError:
                return False
            if present != {name + ext for name in names}:
                return False
    return True


def _write_range(root: str, split: str, start: int, stop: int, seed: int, size: tuple[int, int],
                 position_free: bool) -> np.ndarray:
    """Render and write images ``start..stop-1`` of ``split``; returns raw label pixel counts.
    ``position_free``: each scene (image and mask) upside down with probability 1/2."""
    counts = np.zeros(len(SCENE_CLASSES) + 1, np.int64)
    images = Path(root) / "images" / ADE20K_SPLITS[split]
    annotations = Path(root) / "annotations" / ADE20K_SPLITS[split]
    palette = [0, 0, 0] + [v for colour in SCENE_PALETTE for v in colour]
    for index in range(start, stop):
        key = (int(seed), SPLIT_CODE[split], index)
        shape = size if split == "train" else _val_size(np.random.default_rng(key + (1,)), index, size)
        image, label = render_scene(key, shape)
        if position_free and np.random.default_rng(key + (2,)).random() < 0.5:
            image, label = image[::-1], label[::-1]
        name = f"scene_{index:06d}"
        Image.fromarray(image).save(images / f"{name}.jpg", quality=JPEG_QUALITY, subsampling=0)
        mask = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
        mask.putpalette(palette)
        mask.save(annotations / f"{name}.png", optimize=False)
        counts += np.bincount(label.ravel(), minlength=len(counts))[: len(counts)]
    return counts


def _write(root: Path, train: int, val: int, seed: int, size: tuple[int, int], position_free: bool,
           workers: int) -> dict[str, list[int]]:
    for folder in ("images", "annotations"):
        for split in ADE20K_SPLITS.values():
            (root / folder / split).mkdir(parents=True, exist_ok=True)
    load_textures()  # before forking: the workers inherit them
    chunk = 50
    tasks = [(str(root), split, start, min(start + chunk, count), seed, size, position_free)
             for split, count in (("train", train), ("val", val)) for start in range(0, count, chunk)]
    context = None
    if workers > 1 and len(tasks) > 1 and "fork" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("fork")
    if context is None:
        results = [_write_range(*task) for task in tasks]
    else:
        with context.Pool(min(workers, len(tasks))) as pool:
            results = pool.starmap(_write_range, tasks, chunksize=1)
    pixels: dict[str, np.ndarray] = {s: np.zeros(len(SCENE_CLASSES) + 1, np.int64) for s in ADE20K_SPLITS}
    for task, counts in zip(tasks, results):
        pixels[task[1]] += counts
    return {split: counts.tolist() for split, counts in pixels.items()}


def _ours(path: Path) -> bool:
    """May ``path`` be replaced: missing, an empty directory, or a scenes dataset (even
    an incomplete or outdated one)."""
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    meta = read_json(path / "dataset.json")
    params = meta.get("params") if isinstance(meta, dict) else None
    return isinstance(params, dict) and params.get("generator") == GENERATOR


def default_workers() -> int:
    """The usable cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _swap(new: Path, root: Path) -> None:
    """Put ``new`` at ``root``: the old directory is moved aside first, then removed."""
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
        os.rename(root, old / "dataset")
    os.rename(new, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_scenes(out_dir: str | Path, train: int = 2000, val: int = 200, seed: int = 0,
                    size: tuple[int, int] = (128, 128), position_free: bool = False, *, workers: int | None = None,
                    force: bool = False) -> Path:
    """Generate the scenes dataset into ``out_dir`` (the dataset root) and return its path.

    ``train`` images of ``size`` (H, W) and ``val`` images of varied sizes, all from
    ``seed``. ``position_free``: every scene is turned upside down with probability 1/2
    (decided by its own seed), so that where a class is in the image says nothing about
    it (sky as likely below as above): the control of ``study rope``. A complete dataset of the same parameters already there is reused as is
    (``force=True`` regenerates). Otherwise the dataset is written into a temporary
    directory beside ``out_dir`` and renamed into place, replacing an outdated or
    incomplete one; a directory holding anything else is refused (``FileExistsError``).
    ``workers``: processes (default: the usable cores, at most 8; 1 for small jobs).
    """
    size = _check_args(train, val, size)
    root = Path(out_dir).expanduser().absolute()
    if not force and scenes_ready(root, train, val, seed, size, position_free):
        log.debug("scenes: reusing %s", root)
        return root
    if not _ours(root):
        raise FileExistsError(f"{root} exists and is not a scenes dataset; refusing to replace it "
                              "(choose another --out or remove it)")
    if workers is None:
        workers = default_workers() if train + val >= 200 else 1
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        pixels = _write(tmp, train, val, seed, size, position_free, workers)
        (tmp / "classes.txt").write_text("".join(f"{name}\n" for name in SCENE_CLASSES), encoding="utf-8")
        meta = {
            "name": "segformer-lab scenes",
            "params": _params(train, val, seed, size, position_free),
            "layout": "ade20k",
            "reduce_zero_label": True,
            "classes": list(SCENE_CLASSES),
            "palette": [list(c) for c in SCENE_PALETTE],
            "ambiguous_pairs": [list(p) for p in SCENE_AMBIGUOUS_PAIRS],
            "counts": {"train": int(train), "val": int(val)},
            "val_sizes": "per side 0.75x..2x+32 of size; every 4th >= 2x",
            "pixels": {"note": "per raw value: 0 = unlabelled, c + 1 = class c", **pixels},
        }
        lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in meta.items())
        (tmp / "dataset.json").write_text("{\n" + lines + "\n}\n", encoding="utf-8")
        _swap(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.debug("scenes: wrote %s in %.1f s", root, time.perf_counter() - started)
    return root
