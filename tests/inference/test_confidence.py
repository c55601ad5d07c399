"""Confidence (issue 13, item 3): the probability of the predicted class per pixel, band by
band (no ``[K, H, W]`` map), from ``Segmenter.predict(confidence=True)`` and ``predict
--confidence`` (a 16-bit PNG and a heat-map overlay); transformers' pipeline result shape
(``Segmenter.segments``); the model's class names and palette in ``Segmenter``."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO
from PIL import Image

import segformer_lab as sl
from segformer_lab.cli import main
from segformer_lab.inference import confidence_image, predict_labels, predict_logits
from segformer_lab.inference import logits as logits_module

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("sky", "road", "car", "tree")
PALETTE = ((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("named")
    config = sl.get_config("segformer_b0", num_classes=4, class_names=NAMES, palette=PALETTE).with_stages(depth=1)
    sl.create_model(config=config).save_pretrained(directory)
    return directory


def image(height=48, width=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_segmenter_uses_the_models_names_and_palette(checkpoint):
    segmenter = sl.Segmenter(checkpoint)
    assert segmenter.class_names == list(NAMES)
    assert segmenter.palette.tolist() == [list(c) for c in PALETTE]
    assert sl.Segmenter(checkpoint, class_names=["a", "b", "c", "d"]).class_names == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="class_names: 2 class names for 4 classes"):
        sl.Segmenter(checkpoint, class_names=["a", "b"])


@pytest.mark.parametrize("options", [{}, {"mode": "slide", "crop": 40, "stride": 24, "flip": True}],
                         ids=["whole", "slide+flip"])
def test_confidence_is_the_probability_of_the_predicted_class(checkpoint, options):
    segmenter = sl.Segmenter(checkpoint, **options)
    labels, probabilities = segmenter.predict(image(), probabilities=True)
    labels_c, confidence = segmenter.predict(image(), confidence=True)
    assert confidence.dtype == np.float32 and confidence.shape == labels.shape == (48, 64)
    assert np.array_equal(labels_c, labels)
    np.testing.assert_allclose(confidence, probabilities.max(0), atol=1e-6)
    np.testing.assert_allclose(confidence, np.take_along_axis(probabilities, labels[None], 0)[0], atol=1e-6)
    both = segmenter.predict(image(), probabilities=True, confidence=True)
    assert len(both) == 3 and np.array_equal(both[2], confidence)


def test_confidence_band_by_band_equals_the_full_map(checkpoint, monkeypatch):
    model = sl.load_model(checkpoint)
    x = torch.randn(2, 3, 70, 90)
    options = {"mode": "slide", "crop": 40, "stride": 26, "scales": (0.75, 1.0)}
    expected = predict_logits(model, x, (83, 101), **options).softmax(1).amax(1)
    monkeypatch.setattr(logits_module, "BAND_BYTES", 30_000)  # several bands
    labels, confidence = predict_labels(model, x, (83, 101), confidence=True, **options)
    torch.testing.assert_close(confidence, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(labels, predict_labels(model, x, (83, 101), **options))


CONFIDENCE_PEAK = """
import json, sys, torch
from segformer_lab.inference import logits, predict_labels
logits.BAND_BYTES = 8 * 2**20  # several bands at either height
torch.set_num_threads(1)
model = torch.nn.Conv2d(3, 250, 4, stride=4).eval()  # stride-4 logits of 250 classes
height = int(sys.argv[1])
with torch.no_grad():
    predict_labels(model, torch.randn(1, 3, height, 256), (height, 256), confidence=True)
with open("/proc/self/status") as f:  # VmHWM: ru_maxrss would include the test runner's peak, inherited at the fork
    print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024)
"""


def confidence_peak_mib(height: int) -> int:
    """Peak RSS of ``predict_labels(confidence=True)`` on one image, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CONFIDENCE_PEAK, str(height)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_confidence_holds_no_full_size_score_map():
    """250 classes, 256 wide: a float32 [K, H, W] map grows by 188 MiB from 256 to 1024
    rows. The confidence path grows by the image, the labels, the confidence and the
    model's stride-4 logits (1/16 of such a map): about 18 MiB."""
    small, large = confidence_peak_mib(256), confidence_peak_mib(1024)
    canvas = 250 * (1024 - 256) * 256 * 4 / 2**20
    assert large - small < canvas / 4, (small, large)


def test_segments_have_the_pipeline_result_shape(checkpoint):
    segmenter = sl.Segmenter(checkpoint)
    labels, confidence = segmenter.predict(image(), confidence=True)
    segments = segmenter.segments(image())
    present = np.unique(labels)
    assert [s["label"] for s in segments] == [NAMES[k] for k in present]
    covered = np.zeros(labels.shape, dtype=int)
    for k, segment in zip(present, segments):
        assert set(segment) == {"score", "label", "mask"}
        mask = segment["mask"]
        assert isinstance(mask, Image.Image) and mask.mode == "L" and mask.size == (64, 48)
        array = np.array(mask)
        assert set(np.unique(array)) <= {0, 255}
        assert np.array_equal(array == 255, labels == k)
        assert isinstance(segment["score"], float)
        assert segment["score"] == pytest.approx(float(confidence[labels == k].mean()), abs=1e-6)
        covered += array == 255
    assert (covered == 1).all()  # the masks partition the image


def test_predict_confidence_writes_a_16_bit_png_equal_to_the_array(checkpoint, tmp_path, capsys):
    Image.fromarray(image()).save(tmp_path / "street.png")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(tmp_path / "street.png"), "--out", str(out), "--confidence",
                 "--overlay"]) == 0
    assert "street_confidence.png" in capsys.readouterr().out
    written = Image.open(out / "street_confidence.png")
    assert written.mode in ("I;16", "I") and written.size == (64, 48)
    values = np.array(written).astype(np.float64) / 65535
    _, confidence = sl.Segmenter(checkpoint).predict(image(), confidence=True)
    np.testing.assert_allclose(values, confidence, atol=0.5 / 65535 + 1e-7)
    heat = Image.open(out / "street_confidence_overlay.png")
    assert heat.mode == "RGB" and heat.size == (64, 48)
    assert (out / "street_overlay.png").is_file() and (out / "street.png").is_file()
    assert np.array(confidence_image(np.array([[0.0, 1.0]]))).tolist() == [[0, 65535]]


def test_predict_class_names_file_of_the_wrong_length_names_it(checkpoint, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    Image.fromarray(image()).save(tmp_path / "x.png")
    assert main(["predict", str(checkpoint), str(tmp_path / "x.png"), "--out", str(tmp_path / "o"),
                 "--class-names", str(names)]) == 2
    assert f"--class-names {names}: class_names: 2 class names for 4 classes" in capsys.readouterr().err


def test_two_inputs_whose_outputs_share_a_name_are_refused_before_writing(checkpoint, tmp_path, capsys):
    for name in ("a.png", "a_confidence.png"):
        Image.fromarray(image()).save(tmp_path / name)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(tmp_path / "a.png"), str(tmp_path / "a_confidence.png"),
                 "--out", str(out), "--confidence"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'a_confidence.png'} would be written for both {tmp_path / 'a.png'} and" in err
    assert not out.exists()
