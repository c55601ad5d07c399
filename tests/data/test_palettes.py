"""Known palettes, palette files and colour masks in the folder format."""

import numpy as np
import pytest
from datasets_on_disk import H, W, make_ade, make_folder, save

from segformer_lab.data import DataError, build_dataset
from segformer_lab.data.palettes import (
    CITYSCAPES_PALETTE, KNOWN_PALETTES, VOC_PALETTE, decode_colour_mask, match_palettes, read_palette,
)


def colour_mask(palette, ids: np.ndarray) -> np.ndarray:
    return np.array(palette, np.uint8)[ids]


def stripes(k: int = 3) -> np.ndarray:
    return np.repeat(np.arange(k, dtype=np.uint8), -(-W // k))[:W][None].repeat(H, 0)


def test_known_palettes_have_their_published_colours():
    assert VOC_PALETTE[:3] == ((0, 0, 0), (128, 0, 0), (0, 128, 0)) and VOC_PALETTE[15] == (192, 128, 128)
    assert CITYSCAPES_PALETTE[0] == (128, 64, 128) and CITYSCAPES_PALETTE[18] == (119, 11, 32)
    assert {len(p.classes) for p in KNOWN_PALETTES.values()} == {150, 19, 21, 14}


def test_folder_colour_masks_map_to_ids_with_a_known_palette(tmp_path):
    ids = stripes(3)
    root = make_folder(tmp_path, {"a": colour_mask(CITYSCAPES_PALETTE, ids)}, classes=())
    (root / "classes.txt").unlink()  # names come from the palette
    dataset = build_dataset("folder", root, "train", palette="cityscapes")
    assert dataset.class_names[:2] == ["road", "sidewalk"] and dataset.palette == CITYSCAPES_PALETTE
    np.testing.assert_array_equal(dataset.load(dataset.samples[0])["mask"], ids)
    # void colours (e.g. Cityscapes' "dynamic") are ignored
    mask = colour_mask(CITYSCAPES_PALETTE, ids)
    mask[:3] = (111, 74, 0)
    save(mask, root / "masks" / "train" / "a.png")
    assert (dataset.load(dataset.samples[0])["mask"][:3] == 255).all()


def test_unknown_colour_names_file_colour_and_place(tmp_path):
    mask = colour_mask(VOC_PALETTE, stripes(3))
    mask[5, 7] = (1, 2, 3)
    root = make_folder(tmp_path, {"a": mask})
    dataset = build_dataset("folder", root, "train", palette="voc", num_classes=21,
                            classes=KNOWN_PALETTES["voc"].classes)
    with pytest.raises(DataError, match=r"masks/train/a\.png: colour \(1, 2, 3\) \(1 pixels, first at x=7, y=5\) "
                                        r"is not in palette 'voc'"):
        dataset.load(dataset.samples[0])


def test_palette_file_with_names_and_ignore(tmp_path):
    path = tmp_path / "palette.txt"
    path.write_text("# colours\n0 0 0 background\n255,0,0 red car\n255 255 255 ignore\n")
    palette = read_palette(path)
    assert palette.classes == ("background", "red car") and palette.ignore == ((255, 255, 255),)
    rgb_mask = np.array([[[0, 0, 0], [255, 0, 0], [255, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(decode_colour_mask(rgb_mask, palette, "m.png"), [[0, 1, 255]])
    root = make_folder(tmp_path, {"a": colour_mask(((0, 0, 0), (255, 0, 0)), stripes(2))},
                       classes=("background", "red car", "truck"))
    with pytest.raises(DataError, match="palette has 2 classes, the dataset 3"):
        build_dataset("folder", root, "train", palette=path)


@pytest.mark.parametrize("text, culprit", [("1 2 banana\n", "palette.txt:1: expected 'R G B name'"),
                                           ("1 2 300 x\n", "palette.txt:1: expected"),
                                           ("1 2 3 a\n1 2 3 b\n", "palette.txt:2: colour (1, 2, 3) is listed twice"),
                                           ("# nothing\n", "palette.txt: no classes")])
def test_bad_palette_file_is_named(tmp_path, text, culprit):
    (tmp_path / "palette.txt").write_text(text)
    with pytest.raises(DataError) as info:
        read_palette(tmp_path / "palette.txt")
    assert culprit in str(info.value)
    with pytest.raises(DataError, match="palette not found: give a palette file or one of"):
        read_palette(tmp_path / "nope")


def test_palettes_matched_by_share_of_pixels():
    counts = {(c[0] << 16) | (c[1] << 8) | c[2]: 10 for c in CITYSCAPES_PALETTE[:5]}
    assert match_palettes(counts)[0] == ("cityscapes", 1.0)


def test_datasets_expose_names_and_palettes(tmp_path):
    ade = build_dataset("ade20k", make_ade(tmp_path), "train")
    assert ade.class_names[0] == "wall" and ade.palette[0] == (120, 120, 120)
    folder = build_dataset("folder", make_folder(tmp_path, {"a": np.zeros((H, W), np.uint8)}), "train")
    assert folder.class_names == ["sky", "road", "car"] and folder.palette is None
