"""The canvas a scene is drawn on: image, labels and instance ids, the appearances
(textured photographs, sky gradients, metal) and the drawing primitives (paint a mask,
a random blob, object boundaries). What to draw where is ``render``'s job.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from .textures import CONTRAST, SKIES, Textures, random_tint, sample_patch


class Canvas:
    """One image being drawn: RGB in [0, 1], raw labels (0 = unlabelled, class c -> c + 1)
    and instance ids (for object boundaries)."""

    def __init__(self, h: int, w: int, rng: np.random.Generator, textures: Textures):
        self.h, self.w, self.rng = h, w, rng
        self.textures, self.banks = textures, textures.banks
        self.unit = min(h, w)  # geometry and texture scale follow the shorter side
        self.image = np.zeros((h, w, 3), np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.int32)
        self.things = [False]

    # ---------------------------------------------------------------- appearance
    def texture(self, bank: str, h: int, w: int, tint: np.ndarray | str, angle: float | None = None) -> np.ndarray:
        """A grey photograph patch coloured by ``tint`` (a colour or a ``TINTS`` kind)."""
        rng, b = self.rng, self.banks[bank]
        if isinstance(tint, str):
            tint = random_tint(rng, tint)
        zoom = b.base_scale * self.unit / 128 * rng.uniform(0.65, 1.5)
        angle = rng.uniform(-180, 180) if angle is None else angle
        gray = sample_patch(b, h, w, zoom, angle, rng).astype(np.float32)
        if gray.ndim == 3:
            gray = gray.mean(axis=2)
        contrast = CONTRAST[bank] * rng.uniform(0.75, 1.3)
        shade = 1.0 + contrast * (gray - b.mean) / b.std
        return np.clip(shade[:, :, None] * tint, 0.0, 1.0)

    def brick(self, h: int, w: int) -> np.ndarray:
        """Walls and pavement: one distribution (courses horizontal or vertical, +-15 degrees)."""
        angle = self.rng.uniform(-15, 15) + 90 * self.rng.integers(2)
        return self.texture("brick", h, w, "brick", angle)

    def sky(self, h: int, w: int) -> np.ndarray:
        """Sky and water: a vertical gradient over the region with clouds (one generator)."""
        rng = self.rng
        top, bottom = (np.asarray(c, np.float32) for c in SKIES[rng.integers(len(SKIES))])
        jitter = rng.uniform(0.9, 1.1, 3).astype(np.float32) * rng.uniform(0.85, 1.1)
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None] ** rng.uniform(0.6, 1.6)
        out = (top * (1 - t) + bottom * t) * jitter
        out = np.broadcast_to(out, (h, w, 3)).copy()
        if rng.random() < 0.7:  # clouds: low-frequency noise from a photograph, magnified
            cell = max(4.0, self.unit / 14)  # horizontally stretched cells: streaky clouds
            sh, sw = int(h / cell) + 3, int(w / cell / 2.5) + 3
            noise = sample_patch(self.banks["grass"], sh, sw, 0.04, rng.uniform(-180, 180), rng)
            noise = np.asarray(Image.fromarray(noise).resize((w, h), Image.Resampling.BICUBIC), np.float32)
            z = (noise - noise.mean()) / (noise.std() + 1e-3)
            alpha = np.clip((z - rng.uniform(0.0, 1.2)) * 0.6, 0.0, 0.85)[:, :, None]
            cloud = np.float32(rng.uniform(0.85, 1.0)) * (0.7 + 0.3 * bottom)
            out = out * (1 - alpha) + cloud * alpha
        return np.clip(out, 0.0, 1.0)

    def metal(self, h: int, w: int, tint: np.ndarray | None = None) -> np.ndarray:
        """Poles: cylindrical shading across the width."""
        tint = random_tint(self.rng, "metal") if tint is None else tint
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

    def boundaries(self) -> None:
        """Unlabel a one-pixel line where an object meets anything else."""
        inst, thing = self.inst, np.asarray(self.things)[self.inst]
        edge = np.zeros(inst.shape, bool)
        right = (inst[:, :-1] != inst[:, 1:]) & (thing[:, :-1] | thing[:, 1:])
        down = (inst[:-1] != inst[1:]) & (thing[:-1] | thing[1:])
        edge[:, :-1] |= right
        edge[:-1] |= down
        self.label[edge] = 0
