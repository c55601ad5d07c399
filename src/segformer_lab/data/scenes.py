"""A scene-parsing dataset generated from the photographs that scikit-image ships.

``generate_scenes(out_dir)`` renders outdoor-like scenes (sky, a horizon, buildings and
mountains behind it, ground of several kinds, objects of several sizes that occlude
each other, thin poles and fences, overhead wires) by cutting texture patches out of
``skimage.data`` photographs (brick, grass, gravel, moon, immunohistochemistry, the
coffee table's wood, Chelsea's fur, a text page...) with colour, scale and rotation
jitter, and writes them in the ADE20K layout::

    out_dir/images/{training,validation}/scene_000000.jpg
    out_dir/annotations/{training,validation}/scene_000000.png   # 0 = unlabelled, class c -> c + 1
    out_dir/classes.txt                                           # one name per line
    out_dir/dataset.json                                          # generator, version, seed, counts, sizes

Load it with ``build_dataset("scenes", out_dir, "train"/"val")`` (ADE20K layout, class
names from ``classes.txt``, reduce-zero-label), or with the ADE20K loader itself.

What makes it a scene-parsing task rather than texture classification:

- three pairs of classes look the same and differ only by position or context: ``sky``
  and ``water`` (one generator: a gradient with clouds; water lies below the horizon),
  ``wall`` and ``pavement`` (brick; walls stand above the horizon, pavement is ground)
  and ``mountain`` and ``rock`` (the moon's surface; a mountain range rises above the
  horizon, rocks are small objects lying on the ground). ``SCENE_AMBIGUOUS_PAIRS``;
- objects are placed in perspective (farther is smaller and higher) and drawn far to
  near, so they occlude each other; poles, sign posts, fences are one to a few pixels
  wide;
- some pixels are unlabelled (0): overhead wires, "clutter" blobs cut from unrelated
  photographs, and in about half the images a one-pixel boundary around objects;
- validation images vary in size and aspect ratio (0.75x to 2x the training size plus
  32 pixels per side; every fourth is at least 2x on both sides; none has both sides
  divisible by 32). A scene's geometry and texture scale follow its shorter side, so a
  larger image shows the same kind of scene at a higher resolution.

Every image is drawn from its own random generator seeded by ``(seed, split, index)``:
the bytes written do not depend on the number of worker processes, and two runs with
the same parameters write identical files (with the same Pillow/libjpeg build).
A finished dataset is found by ``dataset.json`` and reused; anything else is generated
in a temporary directory next to ``out_dir`` and renamed into place.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image


log = logging.getLogger(__name__)

GENERATOR = "segformer_lab.scenes"
SCENES_VERSION = 1  # bump whenever the rendered bytes change: caches are then regenerated
JPEG_QUALITY = 92

SCENE_CLASSES: tuple[str, ...] = (
    "sky", "water", "wall", "pavement", "grass", "gravel", "mountain", "rock",
    "tree", "animal", "crate", "sign", "pole", "fence",
)
SCENE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (70, 130, 180), (0, 80, 200), (180, 60, 50), (230, 150, 140), (50, 170, 50), (150, 140, 120),
    (110, 80, 160), (220, 200, 60), (0, 100, 0), (255, 120, 0), (140, 80, 20), (255, 0, 200),
    (230, 230, 230), (0, 220, 220),
)
# pairs rendered by one appearance generator; only position and context tell them apart
SCENE_AMBIGUOUS_PAIRS: tuple[tuple[str, str], ...] = (("sky", "water"), ("wall", "pavement"), ("mountain", "rock"))

_C = {name: i for i, name in enumerate(SCENE_CLASSES)}
SPLITS = {"train": "training", "val": "validation"}
_SPLIT_CODE = {"train": 0, "val": 1}


# --------------------------------------------------------------------------- texture banks

@dataclass
class _Bank:
    """One source photograph as a mip pyramid of mirror-tiled images (so that a rotated
    footprint always fits), with its grey-level mean and spread for normalising."""

    levels: list[Image.Image]  # level k: downsampled by 2**k, then tiled to >= _TILE pixels a side
    mean: float
    std: float
    base_scale: float  # output pixels per source pixel for a 128-pixel scene


_TILE = (1024, 768)  # tiled side of level 0, of the coarser levels
_BANKS: dict[str, _Bank] | None = None
_HORSE: np.ndarray | None = None  # the animals' silhouette


def _tile(array: np.ndarray, side: int) -> np.ndarray:
    """Mirror-tile ``array`` until both sides are at least ``side``."""
    while array.shape[0] < side or array.shape[1] < side:
        if array.shape[0] < side:
            array = np.concatenate([array, array[::-1]], axis=0)
        if array.shape[1] < side:
            array = np.concatenate([array, array[:, ::-1]], axis=1)
    return np.ascontiguousarray(array)


def _make_bank(array: np.ndarray, base_scale: float, levels: int = 4) -> _Bank:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    image = Image.fromarray(array)
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    pyramid = []
    for k in range(levels):
        scaled = image if k == 0 else image.resize(
            (max(8, image.width >> k), max(8, image.height >> k)), Image.Resampling.BOX)
        pyramid.append(Image.fromarray(_tile(np.asarray(scaled), _TILE[min(k, 1)])))
    return _Bank(pyramid, float(gray.mean()), float(gray.std()) + 1e-3, base_scale)


def _load_banks() -> dict[str, _Bank]:
    """The photographs, once per process. Only images that ship inside scikit-image
    (no download) are used."""
    global _BANKS, _HORSE
    if _BANKS is None:
        try:
            from skimage import data as sk
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ImportError("generating scenes needs scikit-image (pip install scikit-image)") from exc
        gray = lambda a: np.asarray(Image.fromarray(a).convert("L"))  # noqa: E731
        coffee, chelsea = sk.coffee(), sk.chelsea()
        _BANKS = {
            "brick": _make_bank(sk.brick(), 0.15),
            "grass": _make_bank(sk.grass(), 0.30),
            "gravel": _make_bank(sk.gravel(), 0.30),
            "moon": _make_bank(sk.moon(), 0.45),
            "foliage": _make_bank(gray(sk.immunohistochemistry()), 0.30),
            "wood": _make_bank(gray(coffee[40:400, 0:75]), 0.35),
            "fur": _make_bank(gray(chelsea[0:60, 150:330]), 0.45),
            "text": _make_bank(sk.text(), 0.35),
            "page": _make_bank(sk.page()[0:130], 0.35),
            # unlabelled clutter: colour photographs unrelated to any class
            "astronaut": _make_bank(sk.astronaut(), 0.3),
            "motorcycle": _make_bank(sk.stereo_motorcycle()[0], 0.3),
            "retina": _make_bank(sk.retina(), 0.15),
            "hubble": _make_bank(sk.hubble_deep_field(), 0.3),
            "coffee": _make_bank(coffee, 0.3),
            "rocket": _make_bank(sk.rocket(), 0.3),
            "coins": _make_bank(sk.coins(), 0.3),
            "colorwheel": _make_bank(sk.colorwheel(), 0.3),
        }
        horse = ~np.asarray(sk.horse(), dtype=bool)  # True on the animal
        ys, xs = np.nonzero(horse)
        _HORSE = horse[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return _BANKS


_CLUTTER = ("astronaut", "motorcycle", "retina", "hubble", "coffee", "rocket", "coins", "colorwheel")


def _sample(bank: _Bank, h: int, w: int, zoom: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """An ``h x w`` patch of ``bank`` magnified ``zoom`` times (output pixels per source
    pixel) and rotated by ``angle`` degrees, from a random place: uint8 [h, w(, 3)]."""
    level = 0
    while level + 1 < len(bank.levels) and zoom * 2 ** (level + 1) <= 1.5:
        level += 1
    image = bank.levels[level]
    scale = zoom * 2 ** level
    radius = math.hypot(h, w) / 2 / scale + 2
    room = min(image.width, image.height) / 2 - 1
    if radius > room:  # footprint too large for the bank: magnify instead
        scale *= radius / room
        radius = room
    cx = rng.uniform(radius, image.width - radius)
    cy = rng.uniform(radius, image.height - radius)
    cos, sin = math.cos(math.radians(angle)) / scale, math.sin(math.radians(angle)) / scale
    a, b, d, e = cos, -sin, sin, cos
    data = (a, b, cx - a * w / 2 - b * h / 2, d, e, cy - d * w / 2 - e * h / 2)
    out = image.transform((w, h), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


# colour distributions: a base colour is picked, then jittered per channel and in brightness
_TINTS = {
    "brick": ((0.66, 0.36, 0.27), (0.78, 0.68, 0.52), (0.58, 0.57, 0.56), (0.46, 0.32, 0.25)),
    "grass": ((0.32, 0.52, 0.18), (0.52, 0.57, 0.26), (0.21, 0.40, 0.16), (0.62, 0.57, 0.32)),
    "gravel": ((0.58, 0.56, 0.52), (0.70, 0.62, 0.52), (0.40, 0.39, 0.38), (0.62, 0.47, 0.40)),
    "moon": ((0.52, 0.54, 0.60), (0.58, 0.47, 0.38), (0.44, 0.44, 0.47), (0.68, 0.55, 0.37)),
    "foliage": ((0.18, 0.36, 0.15), (0.35, 0.44, 0.18), (0.62, 0.42, 0.16), (0.12, 0.28, 0.14)),
    "trunk": ((0.40, 0.28, 0.18), (0.30, 0.24, 0.20), (0.48, 0.40, 0.32)),
    "wood": ((0.72, 0.52, 0.31), (0.56, 0.39, 0.23), (0.82, 0.70, 0.52)),
    "fur": ((0.52, 0.34, 0.21), (0.17, 0.15, 0.14), (0.86, 0.83, 0.78), (0.62, 0.31, 0.16)),
    "sign": ((0.95, 0.95, 0.92), (0.95, 0.84, 0.30), (0.30, 0.60, 0.36), (0.32, 0.46, 0.82)),
    "metal": ((0.62, 0.62, 0.64), (0.26, 0.26, 0.28), (0.26, 0.40, 0.30), (0.45, 0.33, 0.22)),
    "fence": ((0.90, 0.90, 0.88), (0.50, 0.36, 0.23), (0.40, 0.41, 0.43)),
}
_CONTRAST = {"brick": 0.30, "grass": 0.38, "gravel": 0.36, "moon": 0.45, "foliage": 0.32, "wood": 0.25,
             "fur": 0.30, "text": 0.40, "page": 0.40}
# sky moods: (top colour, horizon colour)
_SKIES = (
    ((0.22, 0.42, 0.82), (0.64, 0.79, 0.95)),
    ((0.52, 0.56, 0.62), (0.78, 0.80, 0.82)),
    ((0.28, 0.28, 0.52), (0.95, 0.66, 0.42)),
    ((0.45, 0.62, 0.86), (0.86, 0.88, 0.90)),
)


def _tint(rng: np.random.Generator, kind: str) -> np.ndarray:
    base = np.asarray(_TINTS[kind][rng.integers(len(_TINTS[kind]))], np.float32)
    return np.clip(base * rng.uniform(0.88, 1.12, 3) * rng.uniform(0.8, 1.15), 0.02, 1.0).astype(np.float32)


class _Scene:
    """One image being drawn: RGB in [0, 1], raw labels (0 = unlabelled, class c -> c + 1)
    and instance ids (for object boundaries)."""

    def __init__(self, h: int, w: int, rng: np.random.Generator, banks: dict[str, _Bank]):
        self.h, self.w, self.rng, self.banks = h, w, rng, banks
        self.unit = min(h, w)  # geometry and texture scale follow the shorter side
        self.image = np.zeros((h, w, 3), np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.int32)
        self.things = [False]

    # ---------------------------------------------------------------- appearance
    def texture(self, bank: str, h: int, w: int, tint: np.ndarray | str, angle: float | None = None) -> np.ndarray:
        """A grey photograph patch coloured by ``tint`` (a colour or a ``_TINTS`` kind)."""
        rng, b = self.rng, self.banks[bank]
        if isinstance(tint, str):
            tint = _tint(rng, tint)
        zoom = b.base_scale * self.unit / 128 * rng.uniform(0.65, 1.5)
        angle = rng.uniform(-180, 180) if angle is None else angle
        gray = _sample(b, h, w, zoom, angle, rng).astype(np.float32)
        if gray.ndim == 3:
            gray = gray.mean(axis=2)
        contrast = _CONTRAST[bank] * rng.uniform(0.75, 1.3)
        shade = 1.0 + contrast * (gray - b.mean) / b.std
        return np.clip(shade[:, :, None] * tint, 0.0, 1.0)

    def brick(self, h: int, w: int) -> np.ndarray:
        """Walls and pavement: one distribution (courses horizontal or vertical, +-15 degrees)."""
        angle = self.rng.uniform(-15, 15) + 90 * self.rng.integers(2)
        return self.texture("brick", h, w, "brick", angle)

    def sky(self, h: int, w: int) -> np.ndarray:
        """Sky and water: a vertical gradient over the region with clouds (one generator)."""
        rng = self.rng
        top, bottom = (np.asarray(c, np.float32) for c in _SKIES[rng.integers(len(_SKIES))])
        jitter = rng.uniform(0.9, 1.1, 3).astype(np.float32) * rng.uniform(0.85, 1.1)
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None] ** rng.uniform(0.6, 1.6)
        out = (top * (1 - t) + bottom * t) * jitter
        out = np.broadcast_to(out, (h, w, 3)).copy()
        if rng.random() < 0.7:  # clouds: low-frequency noise from a photograph, magnified
            cell = max(4.0, self.unit / 14)  # horizontally stretched cells: streaky clouds
            sh, sw = int(h / cell) + 3, int(w / cell / 2.5) + 3
            noise = _sample(self.banks["grass"], sh, sw, 0.04, rng.uniform(-180, 180), rng)
            noise = np.asarray(Image.fromarray(noise).resize((w, h), Image.Resampling.BICUBIC), np.float32)
            z = (noise - noise.mean()) / (noise.std() + 1e-3)
            alpha = np.clip((z - rng.uniform(0.0, 1.2)) * 0.6, 0.0, 0.85)[:, :, None]
            cloud = np.float32(rng.uniform(0.85, 1.0)) * (0.7 + 0.3 * bottom)
            out = out * (1 - alpha) + cloud * alpha
        return np.clip(out, 0.0, 1.0)

    def metal(self, h: int, w: int, tint: np.ndarray | None = None) -> np.ndarray:
        """Poles: cylindrical shading across the width."""
        tint = _tint(self.rng, "metal") if tint is None else tint
        x = (np.arange(w, dtype=np.float32) + 0.5) / w
        shade = 0.55 + 0.6 * np.sin(np.pi * x)
        return np.clip(np.broadcast_to(shade[None, :, None] * tint, (h, w, 3)), 0.0, 1.0)

    # ---------------------------------------------------------------- drawing
    def instance(self, thing: bool) -> int:
        self.things.append(thing)
        return len(self.things) - 1

    def paint(self, y0: int, x0: int, mask: np.ndarray, fill: Callable[[int, int], np.ndarray] | None,
              cls: int | None, inst: int = 0) -> None:
        """Draw ``mask`` (bool [mh, mw], placed at y0, x0; may stick out of the image) with
        ``fill(h, w)`` (RGB of the visible window) as class ``cls`` (None: unlabelled)."""
        mh, mw = mask.shape
        ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + mh, self.h), min(x0 + mw, self.w)
        if ya >= yb or xa >= xb:
            return
        m = mask[ya - y0:yb - y0, xa - x0:xb - x0]
        if not m.any():
            return
        if fill is not None:
            np.copyto(self.image[ya:yb, xa:xb], fill(yb - ya, xb - xa), where=m[:, :, None])
        np.copyto(self.label[ya:yb, xa:xb], 0 if cls is None else cls + 1, where=m, casting="unsafe")
        np.copyto(self.inst[ya:yb, xa:xb], inst, where=m, casting="unsafe")

    def blob(self, h: int, w: int) -> np.ndarray:
        """A random star-convex shape filling an ``h x w`` box."""
        rng = self.rng
        y, x = np.ogrid[0:h, 0:w]
        dy, dx = (y + 0.5) / h * 2 - 1, (x + 0.5) / w * 2 - 1
        theta = np.arctan2(dy, dx)
        radius = np.ones_like(theta) * 0.85
        for k in range(2, 6):
            radius = radius + rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        return np.hypot(dy, dx) <= radius

    # ---------------------------------------------------------------- the scene
    def render(self) -> None:
        rng, h, w = self.rng, self.h, self.w
        horizon = int(round(h * rng.uniform(0.3, 0.62)))
        sky = np.zeros((horizon + 1, w), bool)
        sky[:] = True
        self.paint(0, 0, sky, self.sky, _C["sky"], self.instance(False))
        if rng.random() < 0.5:
            self.mountains(horizon)
        if rng.random() < 0.55:
            self.buildings(horizon)
        self.ground(horizon)
        poles = self.objects(horizon)
        self.wires(poles)
        if rng.random() < 0.4:
            self.clutter(horizon)
        if rng.random() < 0.5:
            self.boundaries()
        noise = rng.standard_normal(self.image.shape, dtype=np.float32) * np.float32(rng.uniform(0.0, 0.02))
        self.image = np.clip(self.image * np.float32(rng.uniform(0.85, 1.12)) + noise, 0.0, 1.0)

    def ridge(self, w: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
        x = np.arange(w, dtype=np.float32) / self.unit
        profile = np.zeros(w, np.float32)
        for octave in range(4):
            freq = rng.uniform(0.5, 1.5) * 2.0 ** octave
            profile += np.sin(2 * np.pi * freq * x + rng.uniform(0, 2 * np.pi)) / 2.0 ** octave
        profile = (profile - profile.min()) / (np.ptp(profile) + 1e-6)
        return amplitude * (0.25 + 0.75 * profile)

    def mountains(self, horizon: int) -> None:
        rng = self.rng
        for _ in range(1 + int(rng.random() < 0.4)):  # one or two ranges, far one first
            height = self.ridge(self.w, horizon * rng.uniform(0.2, 0.7), rng)
            rows = np.arange(horizon + 1)[:, None]
            mask = rows >= (horizon - height)[None, :]
            self.paint(0, 0, mask, lambda hh, ww: self.texture("moon", hh, ww, "moon"), _C["mountain"],
                       self.instance(False))

    def buildings(self, horizon: int) -> None:
        rng, w = self.rng, self.w
        for _ in range(rng.integers(1, 5)):
            bw = int(w * rng.uniform(0.12, 0.45))
            bh = int(min(horizon, self.unit) * rng.uniform(0.2, 0.85))
            if bw < 2 or bh < 2:
                continue
            x0 = int(rng.integers(-bw // 3, w - bw // 2))
            mask = np.ones((bh + 1, bw), bool)
            if rng.random() < 0.3:  # gable roof
                peak = int(bh * rng.uniform(0.1, 0.3))
                y = np.arange(bh + 1)[:, None]
                x = np.abs(np.arange(bw) - bw / 2)[None, :] / (bw / 2)
                mask = y >= peak * x
            self.paint(horizon - bh, x0, mask, self.brick, _C["wall"], self.instance(False))

    def ground(self, horizon: int) -> None:
        rng, h, w = self.rng, self.h, self.w
        depth = h - horizon
        kinds = ("grass", "gravel", "pavement")
        fills = {"grass": lambda hh, ww: self.texture("grass", hh, ww, "grass"),
                 "gravel": lambda hh, ww: self.texture("gravel", hh, ww, "gravel"),
                 "pavement": self.brick}
        base = kinds[rng.choice(3, p=(0.45, 0.3, 0.25))]
        self.paint(horizon, 0, np.ones((depth, w), bool), fills[base], _C[base], self.instance(False))
        rows = np.arange(depth, dtype=np.float32)[:, None]
        cols = np.arange(w, dtype=np.float32)[None, :]
        if rng.random() < 0.45:  # a road or path from the horizon towards the viewer
            kind = rng.choice([k for k in kinds if k != base])
            apex = rng.uniform(0.15, 0.85) * w
            foot = apex + rng.uniform(-0.5, 0.5) * w
            top, bottom = rng.uniform(0.01, 0.08) * w, rng.uniform(0.35, 1.0) * w
            t = rows / max(depth - 1, 1)
            centre, half = apex + (foot - apex) * t, (top + (bottom - top) * t) / 2
            self.paint(horizon, 0, np.abs(cols - centre) <= half, fills[kind], _C[kind], self.instance(False))
        for _ in range(rng.integers(0, 3)):  # patches of another ground
            kind = rng.choice([k for k in kinds if k != base])
            pw = int(w * rng.uniform(0.15, 0.5))
            ph = max(2, int(pw * rng.uniform(0.2, 0.5)))
            y0 = horizon + int(rng.uniform(0.05, 0.9) * depth)
            x0 = int(rng.uniform(-0.1, 0.9) * w)
            self.paint(y0, x0, self.blob(ph, pw), fills[kind], _C[kind], self.instance(False))
        if rng.random() < 0.35:  # a lake along the horizon, with a wavy shore
            extent = depth * rng.uniform(0.12, 0.45)
            x = cols / self.unit
            shore = extent * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * x + rng.uniform(0, 6.3)))
            mask = rows < shore
            if rng.random() < 0.4:  # only part of the width
                a, b = sorted(rng.uniform(-0.2, 1.2, 2) * w)
                mask &= (cols >= a) & (cols <= b + 0.3 * w)
            mask = mask[: int(np.ceil(shore.max()))]  # the gradient spans the water, not the ground
            self.paint(horizon, 0, mask, self.sky, _C["water"], self.instance(False))

    def objects(self, horizon: int) -> list[tuple[int, int]]:
        """Things standing on the ground, drawn far to near; returns the pole tops."""
        rng, h, w = self.rng, self.h, self.w
        depth = h - horizon
        count = int(rng.integers(4, 11) * max(1.0, w / h) ** 0.5)
        kinds = ("tree", "rock", "crate", "animal", "sign", "pole", "fence")
        chosen = rng.choice(len(kinds), size=count, p=(0.2, 0.2, 0.14, 0.12, 0.1, 0.13, 0.11))
        bases = horizon + depth * rng.uniform(0.04, 1.12, count) ** 1.3
        poles: list[tuple[int, int]] = []
        for index in np.argsort(bases, kind="stable"):
            kind, y = kinds[chosen[index]], int(bases[index])
            near = 0.2 + 0.8 * (y - horizon) / depth  # perspective: size at this depth
            size = self.unit * near
            x = int(rng.uniform(-0.05, 1.05) * w)
            top = getattr(self, kind)(x, y, size)
            if kind == "pole" and top is not None:
                poles.append(top)
        return poles

    def tree(self, x: int, y: int, size: float) -> None:
        rng = self.rng
        inst = self.instance(True)
        cw = max(3, int(size * rng.uniform(0.22, 0.5)))
        ch = max(3, int(cw * rng.uniform(0.8, 1.4)))
        trunk_h = max(2, int(size * rng.uniform(0.1, 0.3)))
        trunk_w = max(1, int(cw * rng.uniform(0.08, 0.16)))
        trunk = np.ones((trunk_h + ch // 2, trunk_w), bool)
        self.paint(y - trunk.shape[0], x - trunk_w // 2, trunk,
                   lambda hh, ww: self.texture("wood", hh, ww, "trunk", 90 + rng.uniform(-10, 10)), _C["tree"], inst)
        self.paint(y - trunk_h - ch, x - cw // 2, self.blob(ch, cw),
                   lambda hh, ww: self.texture("foliage", hh, ww, "foliage"), _C["tree"], inst)

    def rock(self, x: int, y: int, size: float) -> None:
        rw = max(3, int(size * self.rng.uniform(0.07, 0.28)))
        rh = max(2, int(rw * self.rng.uniform(0.5, 0.9)))
        mask = self.blob(rh + rh // 4, rw)[: rh]  # flat where it sits on the ground
        self.paint(y - rh, x - rw // 2, mask, lambda hh, ww: self.texture("moon", hh, ww, "moon"),
                   _C["rock"], self.instance(True))

    def crate(self, x: int, y: int, size: float) -> None:
        rng = self.rng
        for level in range(1 + int(rng.random() < 0.3)):  # sometimes two stacked (one instance each)
            cw = max(3, int(size * rng.uniform(0.08, 0.22)))
            ch = max(3, int(cw * rng.uniform(0.7, 1.1)))
            frame = max(1, int(round(cw * 0.09)))
            tint = _tint(rng, "wood")

            def fill(hh: int, ww: int, tint=tint) -> np.ndarray:
                return self.texture("wood", hh, ww, tint, rng.uniform(-5, 5) + 90 * rng.integers(2))

            self.paint(y - ch, x - cw // 2, np.ones((ch, cw), bool), fill, _C["crate"], inst := self.instance(True))
            border = np.zeros((ch, cw), bool)
            border[:frame], border[-frame:], border[:, :frame], border[:, -frame:] = True, True, True, True
            self.paint(y - ch, x - cw // 2, border, lambda hh, ww, tint=tint: tint * 0.55, _C["crate"], inst)
            y, x = y - ch, x + int(rng.uniform(-0.2, 0.2) * cw)

    def animal(self, x: int, y: int, size: float) -> None:
        rng = self.rng
        horse = _HORSE
        assert horse is not None, "_load_banks() first"
        aw = max(4, int(size * rng.uniform(0.18, 0.4)))
        ah = max(3, int(aw * horse.shape[0] / horse.shape[1] * rng.uniform(0.85, 1.15)))
        shape = Image.fromarray(horse.astype(np.uint8) * 255).resize((aw, ah), Image.Resampling.BILINEAR)
        mask = np.asarray(shape) >= 128
        if rng.random() < 0.5:
            mask = mask[:, ::-1]
        self.paint(y - ah, x - aw // 2, mask, lambda hh, ww: self.texture("fur", hh, ww, "fur"),
                   _C["animal"], self.instance(True))

    def sign(self, x: int, y: int, size: float) -> None:
        rng = self.rng
        post_h = max(3, int(size * rng.uniform(0.2, 0.45)))
        post_w = max(1, int(round(size * rng.uniform(0.012, 0.025))))
        self.paint(y - post_h, x - post_w // 2, np.ones((post_h, post_w), bool), lambda hh, ww: self.metal(hh, ww),
                   _C["pole"], self.instance(True))
        bw = max(3, int(size * rng.uniform(0.12, 0.28)))
        bh = max(2, int(bw * rng.uniform(0.4, 0.8)))
        bank = "text" if rng.random() < 0.5 else "page"
        self.paint(y - post_h - bh // 2, x - bw // 2, np.ones((bh, bw), bool),
                   lambda hh, ww: self.texture(bank, hh, ww, "sign", rng.uniform(-8, 8)), _C["sign"],
                   self.instance(True))

    def pole(self, x: int, y: int, size: float) -> tuple[int, int]:
        rng = self.rng
        ph = max(4, int(size * rng.uniform(0.5, 1.3)))
        pw = max(1, int(round(size * rng.uniform(0.01, 0.028))))
        inst, tint = self.instance(True), _tint(rng, "metal")
        self.paint(y - ph, x - pw // 2, np.ones((ph, pw), bool), lambda hh, ww: self.metal(hh, ww, tint),
                   _C["pole"], inst)
        if rng.random() < 0.4:  # a cross-arm
            arm = max(2, int(min(ph, self.unit) * rng.uniform(0.06, 0.15)))
            self.paint(y - ph + int(ph * 0.05), x - arm, np.ones((pw, 2 * arm), bool),
                       lambda hh, ww: np.broadcast_to(tint, (hh, ww, 3)), _C["pole"], inst)
        return x, y - ph + int(ph * 0.05)

    def fence(self, x: int, y: int, size: float) -> None:
        rng = self.rng
        fw = max(6, int(size * rng.uniform(0.3, 0.9)))
        fh = max(4, int(size * rng.uniform(0.07, 0.16)))
        spacing = max(3, int(round(size * rng.uniform(0.03, 0.06))))
        picket = max(1, int(round(spacing * rng.uniform(0.25, 0.45))))
        rail = max(1, int(round(fh * 0.08)))
        cols = np.arange(fw)[None, :]
        rows = np.arange(fh)[:, None]
        mask = (cols % spacing) < picket
        for level in (0.3, 0.75):
            r = int(fh * level)
            mask = mask | ((rows >= r) & (rows < r + rail))
        tint = _tint(rng, "fence")
        bank = rng.random() < 0.5
        fill = (lambda hh, ww: self.texture("wood", hh, ww, tint, 90)) if bank else (lambda hh, ww: tint)
        self.paint(y - fh, x - fw // 2, mask, fill, _C["fence"], self.instance(True))

    def wires(self, poles: list[tuple[int, int]]) -> None:
        """Overhead wires between neighbouring pole tops (and out of the picture):
        one pixel thick, dark, unlabelled."""
        if not poles:
            return
        rng = self.rng
        poles = sorted(poles)
        ends = [(-int(self.w * 0.2), poles[0][1] + int(rng.uniform(-0.1, 0.1) * self.h))] + poles
        ends.append((int(self.w * 1.2), poles[-1][1] + int(rng.uniform(-0.1, 0.1) * self.h)))
        colour = np.float32(rng.uniform(0.05, 0.25))
        thick = max(1, int(round(self.unit / 200)))
        for (x1, y1), (x2, y2) in zip(ends[:-1], ends[1:]):
            if x2 - x1 < 4 or rng.random() < 0.25:
                continue
            sag = (x2 - x1) * rng.uniform(0.03, 0.12)
            steps = 2 * (x2 - x1 + abs(y2 - y1)) + 2  # dense enough for an unbroken line
            t = np.linspace(0.0, 1.0, steps)
            xs = np.rint(x1 + (x2 - x1) * t).astype(np.int64)
            ys = np.rint(y1 + (y2 - y1) * t + sag * 4 * t * (1 - t)).astype(np.int64)
            for k in range(thick):
                keep = (xs >= 0) & (xs < self.w) & (ys + k >= 0) & (ys + k < self.h)
                yy, xx = ys[keep] + k, xs[keep]
                self.image[yy, xx] = colour
                self.label[yy, xx] = 0
                self.inst[yy, xx] = 0

    def clutter(self, horizon: int) -> None:
        """Blobs cut from unrelated colour photographs, unlabelled."""
        rng = self.rng
        for _ in range(rng.integers(1, 3)):
            cw = max(3, int(self.unit * rng.uniform(0.08, 0.25)))
            ch = max(3, int(cw * rng.uniform(0.6, 1.4)))
            y0 = int(rng.uniform(0.25, 1.0) * self.h) - ch
            x0 = int(rng.uniform(-0.05, 1.0) * self.w) - cw // 2
            bank = self.banks[_CLUTTER[rng.integers(len(_CLUTTER))]]

            def fill(hh: int, ww: int, bank=bank) -> np.ndarray:
                patch = _sample(bank, hh, ww, bank.base_scale * self.unit / 128 * rng.uniform(0.7, 1.5),
                                rng.uniform(-180, 180), rng).astype(np.float32) / 255
                return np.broadcast_to(patch[..., None], (hh, ww, 3)) if patch.ndim == 2 else patch[..., :3]

            self.paint(y0, x0, self.blob(ch, cw), fill, None, 0)

    def boundaries(self) -> None:
        """Unlabel a one-pixel line where an object meets anything else."""
        inst, thing = self.inst, np.asarray(self.things)[self.inst]
        edge = np.zeros(inst.shape, bool)
        right = (inst[:, :-1] != inst[:, 1:]) & (thing[:, :-1] | thing[:, 1:])
        down = (inst[:-1] != inst[1:]) & (thing[:-1] | thing[1:])
        edge[:, :-1] |= right
        edge[:-1] |= down
        self.label[edge] = 0


def render_scene(seed: int | Sequence[int], size: tuple[int, int] = (128, 128)) -> tuple[np.ndarray, np.ndarray]:
    """One scene, in memory: ``(image uint8 [H, W, 3], annotation uint8 [H, W])`` with the
    annotation in the files' convention (0 = unlabelled, class c stored as c + 1).
    ``seed`` is any ``numpy.random.default_rng`` seed; the dataset's image ``i`` of split
    ``s`` uses ``(seed, {"train": 0, "val": 1}[s], i)`` and its own size."""
    h, w = (int(v) for v in size)
    scene = _Scene(h, w, np.random.default_rng(seed), _load_banks())
    scene.render()
    image = (scene.image * 255 + 0.5).astype(np.uint8)
    return image, scene.label


# --------------------------------------------------------------------------- the dataset on disk

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


def _params(train: int, val: int, seed: int, size: tuple[int, int]) -> dict[str, Any]:
    return {"generator": GENERATOR, "version": SCENES_VERSION, "seed": int(seed), "train": int(train),
            "val": int(val), "size": [int(size[0]), int(size[1])], "image_format": f"jpeg q{JPEG_QUALITY} 4:4:4"}


def _file_names(count: int) -> list[str]:
    return [f"scene_{i:06d}" for i in range(count)]


def _check_args(train: int, val: int, size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or min(int(v) for v in size) < 32:
        raise ValueError(f"size must be two sides (H, W) of at least 32 pixels, got {tuple(size)}")
    if int(train) < 1 or int(val) < 0:
        raise ValueError(f"need train >= 1 and val >= 0 images, got train={train}, val={val}")
    return int(size[0]), int(size[1])


def scenes_ready(out_dir: str | Path, train: int = 2000, val: int = 200, seed: int = 0,
                 size: tuple[int, int] = (128, 128)) -> bool:
    """True if ``out_dir`` holds the complete dataset these parameters generate:
    ``dataset.json`` records them and exactly the expected files are there."""
    root = Path(out_dir)
    try:
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("params") != _params(train, val, seed, _check_args(train, val, size)):
        return False
    if not (root / "classes.txt").is_file():
        return False
    for split, count in (("train", train), ("val", val)):
        names = _file_names(count)
        for folder, ext in (("images", ".jpg"), ("annotations", ".png")):
            directory = root / folder / SPLITS[split]
            try:
                present = {p.name for p in directory.iterdir()}
            except OSError:
                return False
            if present != {name + ext for name in names}:
                return False
    return True


def _write_range(root: str, split: str, start: int, stop: int, seed: int, size: tuple[int, int]) -> np.ndarray:
    """Render and write images ``start..stop-1`` of ``split``; returns raw label pixel counts."""
    counts = np.zeros(len(SCENE_CLASSES) + 1, np.int64)
    images, annotations = Path(root) / "images" / SPLITS[split], Path(root) / "annotations" / SPLITS[split]
    palette = [0, 0, 0] + [v for colour in SCENE_PALETTE for v in colour]
    for index in range(start, stop):
        key = (int(seed), _SPLIT_CODE[split], index)
        shape = size if split == "train" else _val_size(np.random.default_rng(key + (1,)), index, size)
        image, label = render_scene(key, shape)
        name = f"scene_{index:06d}"
        Image.fromarray(image).save(images / f"{name}.jpg", quality=JPEG_QUALITY, subsampling=0)
        mask = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
        mask.putpalette(palette)
        mask.save(annotations / f"{name}.png", optimize=False)
        counts += np.bincount(label.ravel(), minlength=len(counts))[: len(counts)]
    return counts


def _write(root: Path, train: int, val: int, seed: int, size: tuple[int, int], workers: int) -> dict[str, list[int]]:
    for folder in ("images", "annotations"):
        for split in SPLITS.values():
            (root / folder / split).mkdir(parents=True, exist_ok=True)
    _load_banks()  # before forking: the workers inherit them
    chunk = 50
    tasks = [(str(root), split, start, min(start + chunk, count), seed, size)
             for split, count in (("train", train), ("val", val)) for start in range(0, count, chunk)]
    context = None
    if workers > 1 and len(tasks) > 1 and "fork" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("fork")
    if context is None:
        results = [_write_range(*task) for task in tasks]
    else:
        with context.Pool(min(workers, len(tasks))) as pool:
            results = pool.starmap(_write_range, tasks, chunksize=1)
    pixels: dict[str, np.ndarray] = {s: np.zeros(len(SCENE_CLASSES) + 1, np.int64) for s in SPLITS}
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
    try:
        return json.loads((path / "dataset.json").read_text(encoding="utf-8"))["params"]["generator"] == GENERATOR
    except (OSError, ValueError, KeyError, TypeError):
        return False


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def generate_scenes(out_dir: str | Path, train: int = 2000, val: int = 200, seed: int = 0,
                    size: tuple[int, int] = (128, 128), *, workers: int | None = None, force: bool = False) -> Path:
    """Generate the scenes dataset into ``out_dir`` (the dataset root) and return its path.

    ``train`` images of ``size`` (H, W) and ``val`` images of varied sizes, all from
    ``seed``. A complete dataset of the same parameters already there is reused as is
    (``force=True`` regenerates). Otherwise the dataset is written into a temporary
    directory beside ``out_dir`` and renamed into place, replacing an outdated or
    incomplete one; a directory holding anything else is refused (``FileExistsError``).
    ``workers``: processes (default: the usable cores, at most 8; 1 for small jobs).
    """
    size = _check_args(train, val, size)
    root = Path(out_dir).expanduser().absolute()
    if not force and scenes_ready(root, train, val, seed, size):
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
        pixels = _write(tmp, train, val, seed, size, workers)
        (tmp / "classes.txt").write_text("".join(f"{name}\n" for name in SCENE_CLASSES), encoding="utf-8")
        meta = {
            "name": "segformer-lab scenes",
            "params": _params(train, val, seed, size),
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


def _swap(new: Path, root: Path) -> None:
    """Put ``new`` at ``root``: the old directory is moved aside first, then removed."""
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
        os.rename(root, old / "dataset")
    os.rename(new, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
