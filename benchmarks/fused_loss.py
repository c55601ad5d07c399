"""The fused upsampled cross-entropy against interpolate + cross_entropy.

    python benchmarks/fused_loss.py [--batch 2] [--classes 150] [--size 512 512] [--repeats 10] [--threads N]

times, in turns in one loop, the loss and its gradient with respect to stride-4 logits
``[B, K, H/4, W/4]`` for labels ``[B, H, W]`` (10% ignored) computed the usual way
(``F.interpolate`` to the label size, then ``F.cross_entropy``) and by
``engine.losses.upsampled_cross_entropy``, with an integer factor (H, W multiples of 4)
and without (labels one pixel smaller). Prints medians relative to the usual way and
the largest differences of value and gradient (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from segformer_lab.engine.losses import upsampled_cross_entropy
from segformer_lab.analysis.benchmark import random_batch
from segformer_lab.analysis.timing import print_comparison, relative_rows, time_in_turns


def reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, labels, ignore_index=255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = args.size
    logits = torch.randn(args.batch, args.classes, h // 4, w // 4, generator=torch.Generator().manual_seed(1))
    logits.requires_grad_()
    _, labels = random_batch((args.batch, 3, h, w), args.classes)
    odd = labels[:, :-1, :-1].contiguous()  # not a multiple of the logits' size: the gathering path

    def runner(loss_fn, target):
        return lambda _: torch.autograd.grad(loss_fn(logits, target), logits)[0]

    runners = {
        "interpolate + cross_entropy": runner(reference, labels),
        "fused, integer factor": runner(upsampled_cross_entropy, labels),
        "interpolate + cross_entropy, odd size": runner(reference, odd),
        "fused, odd size": runner(upsampled_cross_entropy, odd),
    }
    times, grads = time_in_turns(runners, logits, args.warmup, args.repeats, train=True)
    print_comparison({"input": list(logits.shape), "threads": torch.get_num_threads(), "repeats": args.repeats,
                      "warmup": args.warmup, "torch": torch.__version__, "models": relative_rows(times, args.batch)},
                     as_json=False)  # fmt: skip
    for target, ours, theirs in ((labels, "fused, integer factor", "interpolate + cross_entropy"),
                                 (odd, "fused, odd size", "interpolate + cross_entropy, odd size")):
        with torch.no_grad():
            value = (upsampled_cross_entropy(logits, target) - reference(logits, target)).abs().item()
        print(f"  {ours}: |loss difference| {value:.1e}, max |gradient difference| "
              f"{(grads[ours] - grads[theirs]).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
