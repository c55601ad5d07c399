"""Sliding-window inference in bounded memory (issue 15, item 3): scores computed a band
of rows at a time equal the full-size computation of before, and the memory of
``predict`` does not grow with the image like a full-size score map."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO

import segformer_lab as sl
from segformer_lab.inference import logits as logits_module
from segformer_lab.inference import predict_labels, predict_logits, slide_logits
from segformer_lab.inference.bands import SlideSource

pytestmark = pytest.mark.usefixtures("one_thread")

BENCHMARK = REPO / "benchmarks" / "slide_memory.py"
K = 5
CLASSES = 250  # of the memory test: score maps dwarf the image


def load_benchmark():
    spec = importlib.util.spec_from_file_location("slide_memory", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return sl.create_model(config=sl.get_config("segformer_b0", num_classes=K).with_stages(depth=1)).eval()


CASES = {  # input (H, W), out_size, inference options
    "slide": ((70, 90), (70, 90), dict(mode="slide", crop=(40, 48), stride=(24, 30))),
    "slide, resized, tta": ((70, 90), (83, 101), dict(mode="slide", crop=40, stride=26, scales=(0.75, 1.25),
                                                      flip=True)),
    "slide, one window tall": ((64, 100), (50, 120), dict(mode="slide", crop=(96, 40), stride=32, flip=True)),
    "slide, downscaled": ((96, 80), (37, 29), dict(mode="slide", crop=36, stride=20)),
    "whole, tta": ((70, 90), (83, 101), dict(mode="whole", scales=(0.5, 1.0), flip=True)),
}


@pytest.mark.parametrize("band_bytes", [1, 30_000, 2**30], ids=["one row", "a few rows", "one band"])
@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_bands_equal_the_full_size_computation(model, case, band_bytes, monkeypatch):
    reference = load_benchmark().reference_logits
    (height, width), out_size, options = CASES[case]
    x = torch.randn(2, 3, height, width)
    monkeypatch.setattr(logits_module, "BAND_BYTES", band_bytes)
    expected = reference(model, x, out_size, **options)
    torch.testing.assert_close(predict_logits(model, x, out_size, **options), expected, atol=1e-5, rtol=1e-5)
    labels, probabilities = predict_labels(model, x, out_size, probabilities=True, **options)
    top2 = expected.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 1e-4  # argmax may differ only at ties within float error
    assert decided.float().mean() > 0.99
    assert torch.equal(labels[decided], expected.argmax(1)[decided])
    torch.testing.assert_close(probabilities, expected.float().softmax(1), atol=1e-5, rtol=1e-5)
    assert torch.equal(predict_labels(model, x, out_size, **options), labels)


@torch.no_grad()
def test_slide_logits_and_rows_read_top_to_bottom(model):
    reference = load_benchmark().reference_logits
    x = torch.randn(1, 3, 70, 90)
    torch.testing.assert_close(slide_logits(model, x, 40, 24),
                               reference(model, x, (70, 90), mode="slide", crop=40, stride=24), atol=1e-5, rtol=1e-5)
    source = SlideSource(model, x, (40, 40), (24, 24))
    source.rows(30, 50)
    with pytest.raises(ValueError, match="top to bottom"):
        source.rows(0, 10)


def peak_mib(impl: str, height: int, width: int) -> int:
    """Peak RSS of ``predict --mode slide`` on one image, in a fresh process."""
    argv = [sys.executable, str(BENCHMARK), "--size", str(height), str(width), "--impl", impl, "--model", "conv",
            "--classes", str(CLASSES), "--crop", "128", "--stride", "96", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["exit"] == 0
    return result["peak_rss_mib"]


def test_predict_memory_does_not_grow_with_a_full_size_score_map():
    """250 classes, 512 px wide: a full-size float32 score map grows by 750 MiB from 512
    to 2048 rows. Band by band, the peak grows by the image and its label map only
    (about 30 MiB: a band and the stride-4 logits of a row of windows do not depend on
    the height). The computation of before is measured too, to show that the
    measurement sees a score map (the old one holds at least one: its peak is higher by
    about a map, less what the new path allocates besides)."""
    canvas = CLASSES * 2048 * 512 * 4 / 2**20
    # 2 GiB resident in this process: a peak that a child inherits at the fork (ru_maxrss does)
    # would read above it, as it did under a test worker that had grown that large
    ballast = torch.ones(2**29)
    small, large = peak_mib("after", 512, 512), peak_mib("after", 2048, 512)
    assert small < ballast.numel() * 4 / 2**20, small
    assert large - small < 0.1 * canvas * (2048 - 512) / 2048, (small, large)
    before = peak_mib("before", 2048, 512)
    del ballast
    assert before - large > canvas / 2, (before, large)  # it does see the old full-size map
