"""``diagnose`` (what ``data check`` reports): one dataset per convention mistake."""

import numpy as np
import pytest
from datasets_on_disk import (
    H, W, encode, folder_mask, make_ade, make_cityscapes, make_folder, make_parquet, raw_ade_mask, rgb, save,
)
from PIL import Image

from segformer_lab.data import build_dataset, check_dataset
from segformer_lab.data.diagnose import diagnose
from segformer_lab.data.palettes import CITYSCAPES_PALETTE


def errors(result, level="error"):
    return [f for f in result.findings if f.level == level]


def only(result, text, level="error"):
    found = [f for f in errors(result, level) if text in f.message]
    assert found, f"no {level} with {text!r} in {[f.message for f in result.findings]}"
    return found[0]


def test_a_clean_folder_passes_with_its_config(tmp_path):
    result = diagnose("folder", make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()}))
    assert result.ok and not result.findings
    report = result.reports["train"]
    assert (report.total, report.ok, dict(report.modes), dict(report.formats)) == (2, 2, {"L": 2}, {"PNG": 2})
    assert report.labels[[0, 1, 2, 255]].sum() == 2 * H * W
    assert result.config == {"format": "folder", "root": str(tmp_path / "mine"),
                             "options": {"reduce_zero_label": "false"}, "num_classes": 3}
    text = "\n".join(result.lines())
    assert "config lines to use:\n  data:\n    format: folder" in text and "    num_classes: 3" in text
    assert result.to_dict()["splits"]["train"]["values"] == {"0": 1400, "1": 1400, "2": 1400, "255": 600}


def test_binary_masks_stored_0_255(tmp_path):
    mask = np.zeros((H, W), np.uint8)
    mask[:, 30:] = 255
    result = diagnose("folder", make_folder(tmp_path, {"a": mask, "b": mask}, classes=("bg", "fg")))
    finding = only(result, "binary masks stored as 0/255")
    assert len(finding.files) == 2 and finding.files[0].endswith("masks/train/a.png")
    assert not result.ok and result.config["num_classes"] == 2


def test_colour_masks_without_palette_advise_the_matching_palette(tmp_path):
    ids = np.arange(W, dtype=np.uint8)[None].repeat(H, 0) % 19
    colour = np.array(CITYSCAPES_PALETTE, np.uint8)[ids]
    root = make_folder(tmp_path, {"a": colour, "b": colour})
    result = diagnose("folder", root)
    finding = only(result, "RGB colour mask(s)")
    assert "match the known palette 'cityscapes' (100.0% of pixels): set options.palette: cityscapes" in finding.message
    assert result.config["options"]["palette"] == "cityscapes"
    assert len(errors(result)) == 1  # the dataset's own refusal of each file is this finding
    (root / "classes.txt").unlink()
    assert diagnose("folder", root, options={"palette": "cityscapes"}).ok  # with the palette: clean


def test_jpeg_masks_are_named(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    mask_png = root / "masks" / "train" / "b.png"
    Image.fromarray(folder_mask()).save(mask_png.with_suffix(".jpg"), quality=75)
    mask_png.unlink()
    Image.fromarray(folder_mask()).save(root / "masks" / "train" / "a.png", format="JPEG")  # JPEG named .png
    result = diagnose("folder", root)
    finding = only(result, "saved as JPEG")
    assert sorted(f.rsplit("/", 1)[1] for f in finding.files) == ["a.png", "b.jpg"]
    only(result, "images without a mask")


def test_16_bit_masks(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask().astype(np.uint16), "b": folder_mask()})
    result = diagnose("folder", root)
    assert result.ok and "16-bit mask(s)" in errors(result, "warning")[0].message
    big = folder_mask().astype(np.uint16)
    big[0, 0] = 1000
    save(big, root / "masks" / "train" / "a.png")
    only(diagnose("folder", root), "16-bit masks with values above 255")


def test_zero_used_as_a_class_with_reduce_zero_label(tmp_path):
    result = diagnose("folder", make_folder(tmp_path, {"a": folder_mask()}), options={"reduce_zero_label": True})
    only(result, "0 looks like a class")
    assert result.config["options"]["reduce_zero_label"] == "false"


def test_classes_numbered_from_one_without_reduce_zero_label(tmp_path):
    mask = folder_mask() + 1  # 1, 2, 3 (255 wraps to 0: none left)
    mask[mask == 0] = 255
    result = diagnose("folder", make_folder(tmp_path, {"a": mask}))
    only(result, "the classes are numbered from 1; set reduce_zero_label: true")
    only(result, "label values out of range: 1 file(s)")
    assert result.config["options"]["reduce_zero_label"] == "true"


def test_num_classes_inferred_without_classes_txt(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask()})
    (root / "classes.txt").unlink()
    result = diagnose("folder", root)
    assert result.ok and result.config["num_classes"] == 3
    only(result, "num_classes 3 is inferred from the largest value, 2", "warning")


def test_files_problems_are_named(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask(), "c": folder_mask(), "d": folder_mask()})
    (root / "images" / "train" / "a.png").write_bytes(b"not an image")
    save(np.zeros((H + 1, W), np.uint8), root / "masks" / "train" / "b.png")
    (root / "masks" / "train" / "c.png").unlink()
    save(folder_mask(), root / "masks" / "train" / "orphan.png")
    bad = folder_mask()
    bad[0, 0] = 7
    save(bad, root / "masks" / "train" / "d.png")
    result = diagnose("folder", root, num_classes=3)
    assert only(result, "unreadable files").files[0].startswith(str(root / "images" / "train" / "a.png"))
    assert "masks/train/b.png: mask size 60x41" in only(result, "sizes differ").files[0]
    assert "images/train/c.png: missing annotation" in only(result, "images without a mask").files[0]
    assert only(result, "mask(s) without an image", "warning").files[0].endswith("orphan.png")
    assert "label values 7 out of range" in only(result, "out of range").files[0]


def test_classes_never_present_and_ade20k(tmp_path):
    result = diagnose("ade20k", make_ade(tmp_path))
    assert list(result.reports) == ["training"] and result.ok
    assert "147 of 150 classes never present" in errors(result, "warning")[0].message
    assert result.config["num_classes"] == 150 and "reduce_zero_label" not in result.config["options"]


def test_cityscapes_raw_ids_are_not_misread_as_conventions(tmp_path):
    result = diagnose("cityscapes", make_cityscapes(tmp_path))
    assert list(result.reports) == ["train", "val"] and result.ok
    assert result.reports["val"].labels[[0, 10, 13]].all() and result.reports["val"].values[40] > 0
    labels = next(line for line in result.lines() if line.startswith("  training labels"))
    assert "road " in labels and "sky " in labels and "car " in labels and "0:" not in labels  # named, not numbered


def test_check_dataset_in_threads_matches_one_thread(tmp_path):
    root = make_folder(tmp_path, {f"s{i}": folder_mask() for i in range(6)})
    (root / "images" / "train" / "s3.png").write_bytes(b"broken")
    seen = []
    one = check_dataset(build_dataset("folder", root, "train"), raise_errors=False)
    many = check_dataset(build_dataset("folder", root, "train"), raise_errors=False, workers=4,
                         progress=lambda done, total: seen.append((done, total)))
    assert (one.ok, one.bad, one.values.tolist()) == (many.ok, many.bad, many.values.tolist()) and one.ok == 5
    assert seen[-1] == (6, 6) and len(seen) == 6


def test_unknown_format_and_no_splits(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'nope'"):
        diagnose("nope", tmp_path)
    with pytest.raises(ValueError, match="data check reads segmentation datasets"):
        diagnose("tiny_imagenet", tmp_path)
    with pytest.raises(ValueError, match="no splits found for format 'folder'"):
        diagnose("folder", tmp_path)


def test_stray_values_along_edges_of_a_once_lossy_mask(tmp_path):
    clean = folder_mask()
    clean[clean == 255] = 0
    names = [f"c{i}" for i in range(256 - 1)]
    result = diagnose("folder", make_folder(tmp_path / "clean", {"a": clean * 60}, classes=names))
    assert result.ok and not [f for f in result.findings if "along edges" in f.message]
    buffer = tmp_path / "lossy.jpg"
    Image.fromarray(clean * 60).save(buffer, quality=75)
    lossy = np.array(Image.open(buffer))  # decoded JPEG, then stored as PNG: the format looks fine
    result = diagnose("folder", make_folder(tmp_path / "lossy", {"a": lossy}, classes=names))
    only(result, "values appear only along edges", "warning")


def test_parquet_rows_are_checked_one_thread_at_a_time(tmp_path):
    rows = [(encode(rgb(), "JPEG"), encode(raw_ade_mask(), "PNG"))] * 3 + [(encode(rgb(), "JPEG"), None)]
    make_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", rows)
    result = diagnose("parquet", tmp_path / "data", splits=["train"], workers=4)
    report = result.reports["train"]
    assert (report.total, report.ok) == (4, 3) and report.values[150] == 3 * H * 10 and report.labels[149] == report.values[150]
    assert "missing annotation" in only(result, "images without a mask").files[0]
