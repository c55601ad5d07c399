"""Texture banks: the photographs that ship with scikit-image, ready to be sampled.

Each photograph becomes a ``Bank`` (a mip pyramid of mirror-tiled images) from which
``sample_patch`` cuts rotated, scaled patches; ``TINTS``, ``CONTRAST`` and ``SKIES`` are
the colour distributions the renderer draws from. ``load_textures`` builds every bank
once per process (the writer calls it before forking, so workers inherit them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class Bank:
    """One source photograph as a mip pyramid of mirror-tiled images (so that a rotated
    footprint always fits), with its grey-level mean and spread for normalising."""

    levels: list[Image.Image]  # level k: downsampled by 2**k, then tiled to >= _TILE pixels a side
    mean: float
    std: float
    base_scale: float  # output pixels per source pixel for a 128-pixel scene


@dataclass
class Textures:
    """Every bank by name (the classes' textures and the unlabelled clutter), and the
    animals' silhouette (bool, True on the animal, cropped to it)."""

    banks: dict[str, Bank]
    horse: np.ndarray


_TILE = (1024, 768)  # tiled side of level 0, of the coarser levels
_TEXTURES: Textures | None = None  # loaded once per process


def _tile(array: np.ndarray, side: int) -> np.ndarray:
    """Mirror-tile ``array`` until both sides are at least ``side``."""
    while array.shape[0] < side or array.shape[1] < side:
        if array.shape[0] < side:
            array = np.concatenate([array, array[::-1]], axis=0)
        if array.shape[1] < side:
            array = np.concatenate([array, array[:, ::-1]], axis=1)
    return np.ascontiguousarray(array)


def _make_bank(array: np.ndarray, base_scale: float, levels: int = 4) -> Bank:
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
    return Bank(pyramid, float(gray.mean()), float(gray.std()) + 1e-3, base_scale)


def load_textures() -> Textures:
    """The photographs, once per process. Only images that ship inside scikit-image
    (no download) are used."""
    global _TEXTURES
    if _TEXTURES is None:
        try:
            from skimage import data as sk
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ImportError("generating scenes needs scikit-image (pip install scikit-image)") from exc
        gray = lambda a: np.asarray(Image.fromarray(a).convert("L"))  # noqa: E731
        coffee, chelsea = sk.coffee(), sk.chelsea()
        banks = {
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
        _TEXTURES = Textures(banks, horse[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    return _TEXTURES


# the banks of unlabelled clutter: colour photographs unrelated to any class
CLUTTER = ("astronaut", "motorcycle", "retina", "hubble", "coffee", "rocket", "coins", "colorwheel")


def sample_patch(bank: Bank, h: int, w: int, zoom: float, angle: float, rng: np.random.Generator) -> np.ndarray:
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
TINTS = {
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
CONTRAST = {"brick": 0.30, "grass": 0.38, "gravel": 0.36, "moon": 0.45, "foliage": 0.32, "wood": 0.25,
            "fur": 0.30, "text": 0.40, "page": 0.40}
# sky moods: (top colour, horizon colour)
SKIES = (
    ((0.22, 0.42, 0.82), (0.64, 0.79, 0.95)),
    ((0.52, 0.56, 0.62), (0.78, 0.80, 0.82)),
    ((0.28, 0.28, 0.52), (0.95, 0.66, 0.42)),
    ((0.45, 0.62, 0.86), (0.86, 0.88, 0.90)),
)


def random_tint(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A colour drawn from ``TINTS[kind]``: RGB float32 in [0.02, 1]."""
    base = np.asarray(TINTS[kind][rng.integers(len(TINTS[kind]))], np.float32)
    return np.clip(base * rng.uniform(0.88, 1.12, 3) * rng.uniform(0.8, 1.15), 0.02, 1.0).astype(np.float32)
