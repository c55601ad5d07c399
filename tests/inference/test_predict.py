"""Prediction: the ``predict`` command, the ``Segmenter`` API, palettes and overlays, and
the refusal of checkpoints that would run code when unpickled."""

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

import segformer_lab as sl
from segformer_lab.cli import main
from segformer_lab.data import Preprocessing
from segformer_lab.inference import distinct_palette

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    config = sl.get_config("segformer_b0", num_classes=NUM_CLASSES).with_stages(depth=1)
    sl.create_model(config=config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def segmenter(checkpoint):
    return sl.Segmenter(checkpoint)


def random_image(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def images(tmp_path):
    """Three readable images (one grayscale and smaller than the model's minimum), one
    corrupt PNG and a text file, which a directory listing skips."""
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(random_image(70, 90, 1)).save(folder / "street.jpg")
    Image.fromarray(random_image(40, 33, 2)).save(folder / "room.png")
    Image.fromarray(random_image(20, 50, 3, channels=1)).save(folder / "tiny.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_cli_on_a_directory_with_a_corrupt_file(checkpoint, images, segmenter, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(images), "--out", str(out), "--overlay"]) == 1
    captured = capsys.readouterr()
    assert "3 of 4 inputs written" in captured.out and "1 failed" in captured.out
    assert "broken.png" in captured.err and "cannot decode" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "room.png", "room_overlay.png", "street.png", "street_overlay.jpg", "tiny.png", "tiny_overlay.png",
    ]  # fmt: skip
    for stem in ("street", "room", "tiny"):
        source = Image.open(next(images.glob(f"{stem}.*")))
        labels = Image.open(out / f"{stem}.png")
        assert labels.mode == "P" and labels.size == source.size
        assert np.asarray(labels).max() < NUM_CLASSES
        overlay = Image.open(next(out.glob(f"{stem}_overlay.*")))
        assert overlay.width > source.width and overlay.height >= source.height  # legend panel on the right
    rgb = np.asarray(Image.open(images / "street.jpg").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "street.png")), segmenter.predict(rgb))


def test_cli_slide_mode_with_a_glob(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(images / "s*.jpg"), "--out", str(out), "--mode", "slide",
            "--crop", "48", "--stride", "32", "--alpha", "0.3"]  # fmt: skip
    assert main(argv) == 0
    assert "1 of 1 inputs written" in capsys.readouterr().out
    expected = sl.Segmenter(checkpoint, mode="slide", crop=48, stride=32).predict(images / "street.jpg")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "street.png")), expected)
    whole = sl.Segmenter(checkpoint).predict(images / "street.jpg")
    assert not np.array_equal(expected, whole)  # the windows did change something


def test_cli_reports_missing_inputs_and_refuses_to_overwrite_inputs(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(images / "room.png"), str(tmp_path / "nope.png"),
                 str(tmp_path / "none*.png"), "--out", str(out)]) == 1  # fmt: skip
    captured = capsys.readouterr()
    assert "nope.png: no such file" in captured.err and "none*.png: no file matches" in captured.err
    assert "1 of 3 inputs written" in captured.out
    assert main(["predict", str(checkpoint), str(images / "room.png"), "--out", str(images)]) == 2
    assert "overwrite an input" in capsys.readouterr().err


def test_segmenter_takes_pil_numpy_and_paths(segmenter, images):
    path = images / "room.png"
    pil = Image.open(path)
    array = np.asarray(pil.convert("RGB"))
    from_path, from_pil, from_array = (segmenter.predict(x) for x in (path, pil, array))
    assert from_path.shape == (40, 33) and from_path.dtype == np.int64
    np.testing.assert_array_equal(from_path, from_pil)
    np.testing.assert_array_equal(from_path, from_array)
    labels, probabilities = segmenter.predict(array, probabilities=True)
    assert probabilities.shape == (NUM_CLASSES, 40, 33) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(0), labels)


def test_segmenter_resize_batches_and_errors(checkpoint, segmenter):
    image = random_image(50, 70)
    resized = sl.Segmenter(checkpoint, size=(64, 64)).predict(image)
    assert resized.shape == (50, 70)  # back at the image's size
    batch = segmenter.predict_batch([image, random_image(50, 70, 5), random_image(36, 40)], batch_size=2)
    for one, image_ in zip(batch, [image, random_image(50, 70, 5), random_image(36, 40)]):
        np.testing.assert_array_equal(one, segmenter.predict(image_))
    with pytest.raises(ValueError, match="uint8"):
        segmenter.predict(image.astype(np.float32))
    with pytest.raises(ValueError, match="mode"):
        sl.Segmenter(checkpoint, mode="tiles")
    # sides below the model's 32 scaled up; multiple_of rounds UP (mmseg's AlignedResize), as training's validation
    assert Preprocessing().input_size(20, 50) == (32, 80)
    assert Preprocessing(multiple_of=32).input_size(100, 150) == (128, 160)


def test_registered_name_warns_about_random_weights():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("segformer_lab")
    logger.addHandler(handler)
    try:
        model = sl.open_model("segformer_b0", num_classes=3)
    finally:
        logger.removeHandler(handler)
    assert model.config.num_classes == 3 and not model.training
    assert any("random weights" in r.getMessage() for r in records)


def test_palettes_and_class_names(checkpoint, tmp_path):
    config = sl.get_config("segformer_b0").with_stages(depth=1)  # 150 classes: ADE20K's palette and names
    ade = sl.Segmenter(sl.create_model(config=config))
    from segformer_lab.data import ADE20K_CLASSES, ADE20K_PALETTE

    assert ade.class_names == list(ADE20K_CLASSES)
    picture = ade.label_image(np.array([[0, 1], [149, 2]]))
    assert picture.mode == "P" and picture.getpalette()[: 3 * 150] == [c for rgb in ADE20K_PALETTE for c in rgb]
    palette = distinct_palette(40)
    assert len({tuple(c) for c in palette}) == 40 and (palette.max(1) > 0).all()  # distinct, never black
    assert sl.Segmenter(checkpoint).class_names == [f"class {k}" for k in range(NUM_CLASSES)]


def test_overlay_legend_lists_the_classes_present(segmenter):
    image = random_image(64, 64)
    labels = np.zeros((64, 64), dtype=np.int64)
    labels[:, 40:] = 2
    picture = segmenter.overlay(image, labels, alpha=1.0)
    assert picture.mode == "RGB" and picture.height == 64 and picture.width > 64
    region = np.asarray(picture)[:, :64]
    np.testing.assert_array_equal(region[0, 0], segmenter.palette[0])  # alpha 1: pure class colour
    np.testing.assert_array_equal(region[0, 63], segmenter.palette[2])
    plain = segmenter.overlay(image, labels, alpha=0.0, legend=False)
    np.testing.assert_array_equal(np.asarray(plain), image)


class Payload:
    """Unpickling this object runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_a_malicious_pth_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"encoder.layer_norm.0.weight": torch.ones(16), "payload": Payload(marker)}, path)
    image = tmp_path / "image.png"
    Image.fromarray(random_image(40, 40)).save(image)
    with pytest.raises(sl.CheckpointError, match="refusing to load"):
        sl.Segmenter(path)
    assert main(["predict", str(path), str(image), "--out", str(tmp_path / "out")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert main(["export", str(path), "--onnx", str(tmp_path / "evil.onnx")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.onnx").exists()


def test_cli_replaces_only_its_own_outputs_unless_told(checkpoint, tmp_path, capsys):
    """Predicting photos/*.jpg into photos/ would write photos/a.png over a different photo:
    refused, naming it, before anything is written; --overwrite replaces it; a rerun then
    replaces its own outputs (label maps, overlays, confidence maps) without being told."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(random_image(40, 48, 1)).save(photos / "a.jpg")
    Image.fromarray(random_image(40, 48, 2)).save(photos / "b.jpg")
    Image.fromarray(random_image(30, 30, 3)).save(photos / "a.png")  # another photo, not an input
    photo = (photos / "a.png").read_bytes()
    argv = ["predict", str(checkpoint), str(photos / "*.jpg"), "--out", str(photos)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{photos / 'a.png'} exists and segformer-lab predict did not write it" in err
    assert (photos / "a.png").read_bytes() == photo and sorted(p.name for p in photos.iterdir()) == [
        "a.jpg", "a.png", "b.jpg"]  # fmt: skip
    assert main([*argv, "--overwrite"]) == 0
    assert Image.open(photos / "a.png").mode == "P"  # a label map now
    assert main(argv) == 0  # its own outputs: replaced again
    out = tmp_path / "out"
    for _ in range(2):
        assert main(["predict", str(checkpoint), str(photos / "a.jpg"), "--out", str(out), "--overlay",
                     "--confidence"]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png", "a_confidence.png", "a_confidence_overlay.jpg", "a_overlay.jpg"]  # fmt: skip
