"""The scenes' classes: names, colours, and the pairs that only position and context tell apart."""

from __future__ import annotations

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
