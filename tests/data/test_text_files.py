"""A user's text file in another encoding than UTF-8 (a ``classes.txt`` saved as Latin-1, a
palette file, ``predict --class-names``, Tiny-ImageNet's tables) is one error naming the
file and the first byte that is not UTF-8, not Python's bare ``'utf-8' codec can't decode``."""

from __future__ import annotations

import pytest
from datasets_on_disk import folder_mask, make_folder, make_tiny

import segformer_lab as sl
from segformer_lab import cli
from segformer_lab.data import DataError, build_dataset, read_palette

LATIN1 = "ciel\nroute\nvoiture\ncafé\n".encode("latin-1")  # é is byte 0xe9: not UTF-8 here
BYTE = len("ciel\nroute\nvoiture\ncaf")


def test_classes_txt(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask()})
    (root / "classes.txt").write_bytes(LATIN1)
    with pytest.raises(DataError, match=f"^{root / 'classes.txt'}: not a UTF-8 text file \\(byte {BYTE}: "):
        build_dataset("folder", root, "train")


def test_palette_file(tmp_path):
    path = tmp_path / "palette.txt"
    path.write_bytes("0 0 0 ciel\n255 0 0 café\n".encode("latin-1"))
    with pytest.raises(DataError, match=f"^{path}: not a UTF-8 text file \\(byte 22: invalid continuation byte\\)"):
        read_palette(path)


def test_tiny_imagenet_wnids(tmp_path):
    root = make_tiny(tmp_path)
    (root / "wnids.txt").write_bytes(b"n0144\xff\n")
    with pytest.raises(DataError, match=f"^{root / 'wnids.txt'}: not a UTF-8 text file"):
        build_dataset("tiny_imagenet", root, "train")


def test_predict_class_names(tmp_path, capsys):
    config = sl.get_config("segformer_b0", num_classes=4).with_stages(depth=1)
    model = sl.create_model(config=config).save_pretrained(tmp_path / "model")
    names = tmp_path / "names.txt"
    names.write_bytes(LATIN1)
    image = make_folder(tmp_path, {"a": folder_mask()}) / "images" / "train" / "a.png"
    assert cli.main(["predict", str(model), str(image), "--out", str(tmp_path / "out"),
                     "--class-names", str(names)]) == 2
    assert capsys.readouterr().err == (f"segformer-lab predict: error: {names}: not a UTF-8 text file (byte {BYTE}: "
                                       "invalid continuation byte); save it as UTF-8\n")
    assert not (tmp_path / "out").exists()
