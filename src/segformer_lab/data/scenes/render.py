"""The renderer: what goes where in a scene, and ``render_scene``.

A ``Scene`` is a ``Canvas`` that lays out one outdoor picture: sky, a horizon with
mountains and buildings behind it, ground of several kinds (a road, patches, a lake),
then objects in perspective, far to near (trees, rocks, crates, animals, signs, poles,
fences), overhead wires, unlabelled clutter and, in half the images, object
boundaries. Every random choice comes from the scene's own generator, in a fixed order:
changing that order changes the rendered bytes (bump ``writer.SCENES_VERSION``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from .canvas import Canvas
from .classes import SCENE_CLASSES
from .textures import CLUTTER, load_textures, random_tint, sample_patch

_C = {name: i for i, name in enumerate(SCENE_CLASSES)}  # class name -> index (raw label index + 1)


class Scene(Canvas):
    """One scene being laid out on its canvas; ``render`` draws all of it."""

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
            tint = random_tint(rng, "wood")

            def fill(hh: int, ww: int, tint=tint) -> np.ndarray:
                return self.texture("wood", hh, ww, tint, rng.uniform(-5, 5) + 90 * rng.integers(2))

            self.paint(y - ch, x - cw // 2, np.ones((ch, cw), bool), fill, _C["crate"], inst := self.instance(True))
            border = np.zeros((ch, cw), bool)
            border[:frame], border[-frame:], border[:, :frame], border[:, -frame:] = True, True, True, True
            self.paint(y - ch, x - cw // 2, border, lambda hh, ww, tint=tint: tint * 0.55, _C["crate"], inst)
            y, x = y - ch, x + int(rng.uniform(-0.2, 0.2) * cw)

    def animal(self, x: int, y: int, size: float) -> None:
        rng = self.rng
        horse = self.textures.horse
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
        inst, tint = self.instance(True), random_tint(rng, "metal")
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
        tint = random_tint(rng, "fence")
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
            bank = self.banks[CLUTTER[rng.integers(len(CLUTTER))]]

            def fill(hh: int, ww: int, bank=bank) -> np.ndarray:
                patch = sample_patch(bank, hh, ww, bank.base_scale * self.unit / 128 * rng.uniform(0.7, 1.5),
                                rng.uniform(-180, 180), rng).astype(np.float32) / 255
                return np.broadcast_to(patch[..., None], (hh, ww, 3)) if patch.ndim == 2 else patch[..., :3]

            self.paint(y0, x0, self.blob(ch, cw), fill, None, 0)


def render_scene(seed: int | Sequence[int], size: tuple[int, int] = (128, 128)) -> tuple[np.ndarray, np.ndarray]:
    """One scene, in memory: ``(image uint8 [H, W, 3], annotation uint8 [H, W])`` with the
    annotation in the files' convention (0 = unlabelled, class c stored as c + 1).
    ``seed`` is any ``numpy.random.default_rng`` seed; the dataset's image ``i`` of split
    ``s`` uses ``(seed, {"train": 0, "val": 1}[s], i)`` and its own size."""
    h, w = (int(v) for v in size)
    scene = Scene(h, w, np.random.default_rng(seed), load_textures())
    scene.render()
    image = (scene.image * 255 + 0.5).astype(np.uint8)
    return image, scene.label

