"""Class names and colours of the known datasets (ADE20K, Cityscapes, Pascal VOC, the
generated scenes) in one table, palette files, and colour-coded masks -> class ids.

A ``Palette`` lists the class names, the colour of each class and the colours that mean
"ignore" (Cityscapes' void classes, VOC's object borders). A colour mask is decoded by
looking every pixel's colour up in it; a colour that is neither a class nor an ignore
colour is an error naming the file, the colour and how many pixels have it, because
guessing (nearest colour, or ignore) would hide a wrong palette or a lossy (JPEG) mask.

A palette file is text, one class per line in class order, ``R G B name`` (the name is
the rest of the line and may hold spaces; ``#`` starts a comment); a line whose name is
``ignore`` is an ignore colour and takes no class index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .ade20k import ADE20K_CLASSES, ADE20K_PALETTE
from .io import IGNORE_INDEX, DataError, read_text
from .scenes.classes import SCENE_CLASSES, SCENE_PALETTE

Colour = tuple[int, int, int]

# Cityscapes' 19 training classes (train ids 0..18), colours of cityscapesScripts' labels.py
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE: tuple[Colour, ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# label id (the values of *_gtFine_labelIds.png) -> train id; every other id is ignored
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# colours of the ignored ids in *_gtFine_color.png (unlabeled ... static are black)
CITYSCAPES_VOID: tuple[Colour, ...] = (
    (0, 0, 0), (111, 74, 0), (81, 0, 81), (250, 170, 160), (230, 150, 140), (180, 165, 180),
    (150, 100, 100), (150, 120, 90), (0, 0, 90), (0, 0, 110),
)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def _voc_colours(count: int) -> tuple[Colour, ...]:
    """Pascal VOC's bit-interleaved colour map (class k's bits spread over R, G, B)."""
    colours = []
    for k in range(count):
        r = g = b = 0
        for shift in range(8):
            r |= ((k >> (3 * shift)) & 1) << (7 - shift)
            g |= ((k >> (3 * shift + 1)) & 1) << (7 - shift)
            b |= ((k >> (3 * shift + 2)) & 1) << (7 - shift)
        colours.append((r, g, b))
    return tuple(colours)


VOC_PALETTE: tuple[Colour, ...] = _voc_colours(len(VOC_CLASSES))
VOC_BORDER: Colour = (224, 224, 192)  # the object outlines, label 255 in the index masks


@dataclass(frozen=True)
class Palette:
    """Class names, one colour per class, and the colours that decode to ignore (255)."""

    name: str
    classes: tuple[str, ...]
    colours: tuple[Colour, ...]
    ignore: tuple[Colour, ...] = ()

    def __post_init__(self):
        if len(self.classes) != len(self.colours):
            raise ValueError(f"palette {self.name}: {len(self.classes)} classes, {len(self.colours)} colours")

    def lookup(self) -> dict[int, int]:
        """``0xRRGGBB -> class id`` (ignore colours -> 255). A colour listed twice keeps
        its first class (ADE20K gives road and skyscraper the same grey)."""
        table = {_key(c): IGNORE_INDEX for c in self.ignore}
        for index, colour in reversed(list(enumerate(self.colours))):
            table[_key(colour)] = index
        return table

    def array(self) -> np.ndarray:
        """``uint8 [K, 3]``, the colours of the classes."""
        return np.array(self.colours, dtype=np.uint8).reshape(len(self.colours), 3)


KNOWN_PALETTES: dict[str, Palette] = {
    "ade20k": Palette("ade20k", ADE20K_CLASSES, ADE20K_PALETTE, ignore=((0, 0, 0),)),
    "cityscapes": Palette("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, ignore=CITYSCAPES_VOID),
    "voc": Palette("voc", VOC_CLASSES, VOC_PALETTE, ignore=(VOC_BORDER,)),
    "scenes": Palette("scenes", SCENE_CLASSES, SCENE_PALETTE, ignore=((0, 0, 0),)),
}


def _key(colour: Sequence[int]) -> int:
    return (int(colour[0]) << 16) | (int(colour[1]) << 8) | int(colour[2])


def colour_name(key: int) -> str:
    return f"({key >> 16}, {(key >> 8) & 255}, {key & 255})"


def palette_of_classes(classes: Sequence[str]) -> tuple[Colour, ...] | None:
    """The colours of a known dataset whose class names are exactly ``classes``, else None."""
    for palette in KNOWN_PALETTES.values():
        if tuple(classes) == palette.classes:
            return palette.colours
    return None


def read_palette(spec: str | Path) -> Palette:
    """A known palette by name (``KNOWN_PALETTES``) or a palette file (see the module notes)."""
    if str(spec).lower() in KNOWN_PALETTES:
        return KNOWN_PALETTES[str(spec).lower()]
    path = Path(spec)
    if not path.is_file():
        raise DataError(str(path), f"palette not found: give a palette file or one of {sorted(KNOWN_PALETTES)}")
    classes, colours, ignore = [], [], []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").split(None, 3)
        try:
            colour = tuple(int(v) for v in fields[:3])
            if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
                raise ValueError
        except ValueError:
            raise DataError(f"{path}:{lineno}", f"expected 'R G B name' with R, G, B in 0..255, got {line!r}") from None
        name = fields[3].strip() if len(fields) > 3 else f"class_{len(classes)}"
        if name.lower() == "ignore":
            ignore.append(colour)
            continue
        if colour in colours or colour in ignore:
            raise DataError(f"{path}:{lineno}", f"colour {colour} is listed twice")
        classes.append(name)
        colours.append(colour)
    if not classes:
        raise DataError(str(path), "no classes (lines 'R G B name')")
    return Palette(path.name, tuple(classes), tuple(colours), tuple(ignore))


def colour_keys(rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` -> ``int32 [H, W]`` colour keys ``0xRRGGBB``."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def decode_colour_mask(rgb: np.ndarray, palette: Palette, name: str) -> np.ndarray:
    """An RGB(A) colour mask -> ``uint8 [H, W]`` class ids; a colour not in ``palette``
    raises ``DataError`` naming the file, the colour, its pixel count and first position."""
    keys = colour_keys(np.asarray(rgb)[..., :3])
    found, inverse = np.unique(keys, return_inverse=True)
    table = palette.lookup()
    unknown = [int(k) for k in found if int(k) not in table]
    if unknown:
        first = unknown[0]
        y, x = (int(v[0]) for v in np.nonzero(keys == first))
        count = int((keys == first).sum())
        more = f" (and {len(unknown) - 1} more unknown colours)" if len(unknown) > 1 else ""
        raise DataError(name, f"colour {colour_name(first)} ({count} pixels, first at x={x}, y={y}) is not in "
                              f"palette {palette.name!r}{more}; add it to the palette file (name 'ignore' "
                              f"to ignore it) or re-save the mask losslessly (PNG)")
    ids = np.array([table[int(k)] for k in found], dtype=np.uint8)
    return ids[inverse.reshape(keys.shape)]


def match_palettes(colour_counts: dict[int, int]) -> list[tuple[str, float]]:
    """Known palettes by the share of pixels whose colour they know (class or ignore),
    best first: ``[(name, share), ...]``."""
    total = sum(colour_counts.values()) or 1
    shares = []
    for name, palette in KNOWN_PALETTES.items():
        table = palette.lookup()
        shares.append((name, sum(n for k, n in colour_counts.items() if k in table) / total))
    return sorted(shares, key=lambda item: -item[1])
