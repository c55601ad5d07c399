"""Peak memory of sliding-window ``predict`` and ``eval`` on one large image.

    python benchmarks/slide_memory.py --size 4000 6000 [--task predict|eval] [--impl after|before]
        [--model segformer_b0] [--classes 150] [--crop 512] [--stride 341] [--threads 1]

writes one random image (and a random mask for ``eval``) of ``--size H W`` into a
temporary folder, then runs the real command in this process (``segformer-lab predict
MODEL IMAGE --mode slide``, or ``segformer-lab eval MODEL --data folder:ROOT
--own-size --mode slide --num-workers 0``: the image at full size) and prints
one JSON line with the process's peak RSS (``VmHWM``) and its RSS before the command,
in MiB. Run each measurement in a fresh process: the peak is the process's. (Not
``ru_maxrss``: a process started by another inherits its parent's high-water mark
through the fork, so under a test runner of 2 GB it would read 2 GB.)
``--impl before`` puts back the inference of before (``reference_logits``: full-size
float32 score canvases, one per sum and one per average) where ``predict`` and ``eval``
call it; ``--model conv`` is a stride-4 convolution instead of a network (what the tests
use: memory without the model's cost). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import segformer_lab as sl
from segformer_lab.cli import main as cli
from segformer_lab.engine import evaluation
from segformer_lab.inference import segmenter, upsample, window_starts


def reference_logits(model, pixel_values, out_size, mode="whole", crop=512, stride=341, scales=(1.0,),
                     flip=False):
    """``predict_logits`` as it was: each view's window average in a full-size canvas
    (sum, count, then their quotient), resized to ``out_size``, views' probabilities
    summed in another."""
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
    stride_h, stride_w = (stride, stride) if isinstance(stride, int) else stride

    def slide(x):
        height, width = x.shape[-2:]
        tops, lefts = window_starts(height, crop_h, stride_h), window_starts(width, crop_w, stride_w)
        if len(tops) == len(lefts) == 1:
            return model(x)
        total = count = None
        for top in tops:
            for left in lefts:
                window = x[..., top:top + crop_h, left:left + crop_w]
                logits = upsample(model(window), window.shape[-2:])
                if total is None:
                    total = logits.new_zeros(*logits.shape[:2], height, width)
                    count = logits.new_zeros(1, 1, height, width)
                total[..., top:top + crop_h, left:left + crop_w] += logits
                count[..., top:top + crop_h, left:left + crop_w] += 1
        return total / count

    views = [(scale, flipped) for scale in scales for flipped in ((False, True) if flip else (False,))]
    probabilities = None
    for scale, flipped in views:
        x = pixel_values
        if scale != 1.0:
            x = F.interpolate(x, size=[max(1, round(s * scale)) for s in x.shape[-2:]], mode="bilinear",
                              align_corners=False)
        if flipped:
            x = x.flip(-1)
        logits = upsample(model(x) if mode == "whole" else slide(x), out_size)
        if flipped:
            logits = logits.flip(-1)
        if len(views) == 1:
            return logits
        p = logits.float().softmax(1)
        probabilities = p if probabilities is None else probabilities + p
    return (probabilities / len(views)).log()


def reference_labels(*args, probabilities=False, confidence=False, **kwargs):
    """What ``predict`` and ``eval`` computed before: the argmax of ``reference_logits``
    (with the probabilities and the predicted class's probability, when asked)."""
    logits = reference_logits(*args, **kwargs)
    labels = logits.argmax(1)
    if not (probabilities or confidence):
        return labels
    p = logits.float().softmax(1)
    return (labels, *([p] if probabilities else []), *([p.amax(1)] if confidence else []))


class StrideFourConv(sl.SegmentationModel):
    """A segmentation model whose network is one 4x4 convolution with stride 4 (ceil)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(sl.get_config("segformer_b0", num_classes=num_classes).with_stages(depth=1))
        self.conv = nn.Conv2d(3, num_classes, 4, stride=4, padding=0)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pad = [0, -pixel_values.shape[-1] % 4, 0, -pixel_values.shape[-2] % 4]
        return self.conv(F.pad(pixel_values, pad))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """This process image's peak resident set (``VmHWM``), in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", nargs=2, type=int, required=True, metavar=("H", "W"))
    p.add_argument("--task", choices=("predict", "eval"), default="predict")
    p.add_argument("--impl", choices=("after", "before"), default="after")
    p.add_argument("--model", default="segformer_b0", help="a registered name, or conv")
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--stride", type=int, default=341)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = StrideFourConv(args.classes) if args.model == "conv" else sl.create_model(args.model,
                                                                                       num_classes=args.classes)
    if args.impl == "before":
        segmenter.predict_labels = evaluation.predict_labels = reference_labels
    height, width = args.size
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = root / "model"
        model.save_pretrained(checkpoint)
        image = root / "images" / "validation" / "photo.png"
        image.parent.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(image)
        if args.task == "eval":
            mask = root / "masks" / "validation" / "photo.png"
            mask.parent.mkdir(parents=True)
            Image.fromarray(rng.integers(0, min(args.classes, 256), (height, width), dtype=np.uint8)).save(mask)
        if args.model == "conv":  # open_model would build the registered network: give the model itself
            segmenter.open_model = evaluation.open_model = lambda *a, **k: model
        slide = ["--mode", "slide", "--crop", str(args.crop), "--stride", str(args.stride)]
        before = rss_mib()
        if args.task == "predict":
            argv = ["predict", str(checkpoint), str(image), "--out", str(root / "out"), *slide]
        else:
            argv = ["eval", str(checkpoint), "--data", f"folder:{root}", "--own-size", "--num-workers",
                    "0", "--device", "cpu", *slide]
        code = cli(argv)
    peak = peak_rss_mib()
    print(json.dumps({"task": args.task, "impl": args.impl, "model": args.model, "classes": args.classes,
                      "size": [height, width], "exit": code, "rss_before_mib": round(before),
                      "peak_rss_mib": round(peak)}))


if __name__ == "__main__":
    main()
