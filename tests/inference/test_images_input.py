"""One image loader (``load_rgb``) for every input form: a photo's EXIF orientation applied
as every viewer applies it, the same pixels whatever form an image comes in (path, PIL
image of any mode, numpy array, torch tensor), and one clear error for what it cannot be."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import segformer_lab as sl
from segformer_lab.cli import main
from segformer_lab.data import DataError
from segformer_lab.inference import load_rgb


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = sl.get_config("segformer_b0", num_classes=3).with_stages(depth=1)
    return sl.create_model(config=config).save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def segmenter(checkpoint):
    return sl.Segmenter(checkpoint)


@pytest.fixture
def sideways_photo(tmp_path):
    """A JPEG stored 64 wide x 96 high whose EXIF orientation (6: turn 90 degrees clockwise)
    makes every viewer show it 96 wide x 64 high."""
    stored = np.zeros((96, 64, 3), np.uint8)
    stored[:10] = (255, 0, 0)  # a red band along the stored top: the right edge once upright
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    image.save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied_as_viewers_apply_it(sideways_photo):
    expected = np.asarray(ImageOps.exif_transpose(Image.open(sideways_photo)).convert("RGB"))
    assert expected.shape == (64, 96, 3)
    for form in (sideways_photo, str(sideways_photo), Image.open(sideways_photo)):
        rgb = load_rgb(form)
        assert rgb.shape == (64, 96, 3)
        np.testing.assert_array_equal(rgb, expected)
    assert load_rgb(sideways_photo)[:, -10:, 0].mean() > 200  # the red band is on the right


def test_segmenter_and_predict_follow_the_orientation(sideways_photo, checkpoint, segmenter, tmp_path):
    assert segmenter.predict(sideways_photo).shape == (64, 96)
    assert segmenter.predict(Image.open(sideways_photo)).shape == (64, 96)
    assert segmenter.overlay(sideways_photo, legend=False).size == (96, 64)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(sideways_photo), "--out", str(out)]) == 0
    assert Image.open(out / "photo.png").size == (96, 64)


# ------------------------------------------------------------------ every form, the same pixels


def gray16() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 65536, (40, 36), dtype=np.uint16)


def gray_float() -> np.ndarray:
    return np.random.default_rng(1).random((40, 36), dtype=np.float32)


def colour() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (40, 36, 3), dtype=np.uint8)


def _png16(tmp_path):
    path = tmp_path / "gray16.png"
    Image.fromarray(gray16()).save(path)
    return path


def _tiff_float(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(gray_float()).save(path)
    return path


# (name, the pixels as uint8 RGB, one form of them made in tmp_path)
FORMS = [
    ("uint16-path", lambda: gray16(), _png16),
    ("uint16-pil-file", lambda: gray16(), lambda tmp: Image.open(_png16(tmp))),
    ("uint16-pil-I;16", lambda: gray16(), lambda tmp: Image.fromarray(gray16())),
    ("uint16-pil-I", lambda: gray16(), lambda tmp: Image.fromarray(gray16().astype(np.int32))),
    ("uint16-array", lambda: gray16(), lambda tmp: gray16()),
    ("uint16-array-hw1", lambda: gray16(), lambda tmp: gray16()[:, :, None]),
    ("uint16-big-endian", lambda: gray16(), lambda tmp: gray16().astype(">u2")),
    ("uint16-tensor", lambda: gray16(), lambda tmp: torch.from_numpy(gray16().astype(np.int32)).to(torch.uint16)),
    ("float-path", lambda: gray_float(), _tiff_float),
    ("float-pil-F", lambda: gray_float(), lambda tmp: Image.fromarray(gray_float())),
    ("float-array", lambda: gray_float(), lambda tmp: gray_float()),
    ("float64-array", lambda: gray_float(), lambda tmp: gray_float().astype(np.float64)),
    ("float-tensor-chw", lambda: gray_float(), lambda tmp: torch.from_numpy(gray_float())[None].expand(3, -1, -1)),
    ("rgb-tensor-uint8-chw", lambda: colour(), lambda tmp: torch.from_numpy(colour()).permute(2, 0, 1)),
    ("rgb-tensor-float-chw", lambda: colour(), lambda tmp: torch.from_numpy(colour()).permute(2, 0, 1) / 255.0),
    ("rgba-array", lambda: colour(), lambda tmp: np.dstack([colour(), np.full((40, 36), 7, np.uint8)])),
    ("rgba-pil", lambda: colour(), lambda tmp: Image.fromarray(np.dstack([colour(), np.zeros((40, 36), np.uint8)]))),
]


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """The expected ``uint8 [H, W, 3]``: 16-bit scaled by 1/257, floats by 255, both rounded."""
    if pixels.dtype == np.uint16:
        pixels = np.rint(pixels / 257.0).astype(np.uint8)
    elif pixels.dtype.kind == "f":
        pixels = np.rint(pixels.astype(np.float32) * 255.0).astype(np.uint8)
    return pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)


@pytest.mark.parametrize("pixels, make", [case[1:] for case in FORMS], ids=[case[0] for case in FORMS])
def test_every_form_gives_the_same_pixels(pixels, make, tmp_path):
    rgb = load_rgb(make(tmp_path))
    assert rgb.dtype == np.uint8 and rgb.shape == (40, 36, 3)
    np.testing.assert_array_equal(rgb, as_rgb(pixels()))


def test_a_16_bit_pil_image_predicts_as_its_file(segmenter, tmp_path):
    """The issue's case: ``I;16`` (and ``F``) PIL images were clipped by ``convert("RGB")``."""
    path = _png16(tmp_path)
    by_path = segmenter.predict(path)
    np.testing.assert_array_equal(segmenter.predict(Image.open(path)), by_path)
    np.testing.assert_array_equal(segmenter.predict(Image.fromarray(gray16())), by_path)


# (name, input, what the one-line error says)
REFUSED = [
    ("empty-array", np.zeros((0, 0, 3), np.uint8), "image: empty image (shape (0, 0, 3))"),
    ("empty-gray", np.zeros((5, 0), np.uint8), "image: empty image"),
    ("empty-tensor", torch.zeros(3, 0, 4), "image: empty image"),
    ("int64", np.zeros((4, 4), np.int64), "expected a uint8, uint16 or float image, got dtype int64"),
    ("bool", np.zeros((4, 4), bool), "got dtype bool"),
    ("float-255", np.full((4, 4, 3), 200.0), "a float image must hold values in 0..1, got 200..200"),
    ("float-negative", np.full((4, 4), -0.5, np.float32), "got -0.5..-0.5"),
    ("float-nan", np.full((4, 4), np.nan, np.float32), "a float image must hold values in 0..1, got nan..nan"),
    ("two-channels", np.zeros((4, 4, 2), np.uint8), "expected an image array [H, W], [H, W, 3] or [H, W, 4], "
                                                      "got shape (4, 4, 2)"),
    ("batch-array", np.zeros((1, 4, 4, 3), np.uint8), "got shape (1, 4, 4, 3)"),
    ("batch-tensor", torch.zeros(1, 3, 4, 4), "expected an image tensor [C, H, W] (C = 1, 3 or 4) or [H, W], "
                                              "got shape [1, 3, 4, 4]"),
    ("pil-float-range", Image.fromarray(np.full((4, 4), 3.0, np.float32)), "got 3..3"),
    ("pil-negative-I", Image.fromarray(np.full((4, 4), -1, np.int32)), "values outside 0..65535"),
]


@pytest.mark.parametrize("image, message", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_what_cannot_be_an_image_is_one_clear_error(image, message):
    with pytest.raises(DataError) as info:
        load_rgb(image)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_float_file_out_of_range_names_the_file(tmp_path):
    path = tmp_path / "depth.tif"
    Image.fromarray(np.full((4, 4), 12.5, np.float32)).save(path)
    with pytest.raises(DataError, match=f"^{path}: a float image must hold values in 0..1, got 12.5..12.5"):
        load_rgb(path)


def test_another_type_is_refused():
    with pytest.raises(TypeError, match="expected a path, a PIL image, a numpy array or a torch tensor, got list"):
        load_rgb([[0, 1], [2, 3]])
