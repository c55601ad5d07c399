"""``data check`` on a split whose masks were all saved as JPEG (``masks/train/x.jpg``): the
split has no samples (a folder pairs PNG masks), and the report names the JPEG masks as the
cause instead of only "empty split"; the command's errors say ``data check``."""

from __future__ import annotations

from datasets_on_disk import folder_mask, make_folder
from PIL import Image

from segformer_lab import cli
from segformer_lab.data.diagnose import diagnose


def all_jpeg(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    for mask in sorted((root / "masks" / "train").glob("*.png")):
        Image.open(mask).save(mask.with_suffix(".jpg"), quality=90)
        mask.unlink()
    return root


def test_a_split_of_jpeg_masks_is_named_as_such(tmp_path):
    root = all_jpeg(tmp_path)
    result = diagnose("folder", root)
    messages = [f.message for f in result.findings if f.level == "error"]
    assert any("empty split" in m or "no usable samples" in m for m in messages), messages
    jpeg = next(f for f in result.findings if "saved as JPEG" in f.message)
    assert jpeg.level == "error" and jpeg.message.startswith("2 mask(s) saved as JPEG: lossy compression")
    assert [f.rsplit("/", 1)[1] for f in jpeg.files] == ["a.jpg", "b.jpg"]
    assert not result.ok


def test_the_ade20k_layout_too(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    (root / "images" / "training").mkdir(parents=True)
    (root / "annotations" / "training").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "images" / "training" / "x.jpg")
    Image.new("L", (40, 30)).save(root / "annotations" / "training" / "x.jpg")
    result = diagnose("ade20k", tmp_path, splits=["training"])  # the parent of ADEChallengeData2016
    assert any("1 mask(s) saved as JPEG" in f.message for f in result.findings), result.findings


def test_data_check_errors_name_the_action(tmp_path, capsys):
    assert cli.main(["data", "check", f"folder:{tmp_path}"]) == 2
    assert capsys.readouterr().err == f"segformer-lab data check: error: {tmp_path}: no splits found for format " \
                                      "'folder' (see its layout in docs/training.md)\n"
