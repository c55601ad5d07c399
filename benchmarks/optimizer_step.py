"""One AdamW step over a model's parameters: PyTorch's default against the fused kernel.

    python benchmarks/optimizer_step.py [MODEL ...] [--repeats 20] [--threads N]

times, in turns in one loop, ``optimizer.step()`` of ``torch.optim.AdamW`` as PyTorch
builds it by default on the CPU (a loop of per-tensor operations), with ``foreach=True``
(one list operation per step of the update) and as ``engine.optim.adamw`` builds it
(``fused=True``: one kernel over all parameters), on random gradients for each model
(default segformer_b0 and boostformer_b0). Prints medians relative to the default and
the largest difference of the fused update from the default's (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import copy

import torch

import segformer_lab as sl
from segformer_lab.analysis.timing import relative_rows, time_in_turns
from segformer_lab.engine.optim import adamw

SETTINGS = {"default (for-loop)": {"fused": False}, "foreach": {"fused": False, "foreach": True}, "fused": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["segformer_b0", "boostformer_b0"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.models:
        model = sl.create_model(name)
        copies = {label: copy.deepcopy(model) for label in SETTINGS}
        for params in zip(*(m.parameters() for m in copies.values())):
            grad = torch.randn(params[0].shape)
            for param in params:
                param.grad = grad.clone()
        optimizers = {label: adamw(copies[label].parameters(), lr=6e-5, **settings)
                      for label, settings in SETTINGS.items()}  # fmt: skip
        runners = {label: (lambda _, o=o: o.step()) for label, o in optimizers.items()}
        times, _ = time_in_turns(runners, None, args.warmup, args.repeats, train=True)
        print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters in "
              f"{len(list(model.parameters()))} tensors, {torch.get_num_threads()} threads, torch {torch.__version__}: "
              f"median of {args.repeats} steps after {args.warmup}, in turns")  # fmt: skip
        for row in relative_rows(times, 1):
            print(f"  {row['model']:<20} {row['median_ms']:8.2f} ms  {row['relative']:.3f}x  "
                  f"quartiles {row['relative_q1']:.3f}-{row['relative_q3']:.3f}")
        fused, default = (dict(copies[label].named_parameters()) for label in ("fused", "default (for-loop)"))
        difference = max((fused[k] - default[k]).abs().max().item() for k in fused)
        print(f"  max |parameter difference| fused vs default after {args.warmup + args.repeats} steps: "
              f"{difference:.1e}")


if __name__ == "__main__":
    main()
