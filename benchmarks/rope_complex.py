"""RoPE overhead: this project's rotation against a seed-style complex one.

The SegFormer-with-RoPE seed rotates queries and keys with complex tensors
(``view_as_complex`` times ``polar`` factors) and gives each key of a reduced map the
average of its window's complex factors. ``ComplexRoPE`` below does the same with the
same angles (so the logits are those of ``key_positions="pooled"``) and, to compare the
rotation itself rather than table building, caches its factors per shape too.

    python benchmarks/rope_complex.py [--size 512 512] [--repeats 10] [--threads N]

times segformer_b0, its axial and mixed RoPE variants (this library: one complex product per
rotation in eager mode, on cos/sin tables cached per shape) and the same
two with the complex rotation, in turns in one loop, and prints latencies relative to
plain segformer_b0 (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import torch

import segformer_lab as sl
from segformer_lab.layers import RotaryEmbedding2d
from segformer_lab.analysis.timing import print_comparison, relative_rows, time_in_turns


class ComplexRoPE(torch.nn.Module):
    """Seed-style rotation by ``q * e^{i angle}`` in complex arithmetic, wrapping one of
    this library's rotary modules for its angles (axial or mixed)."""

    def __init__(self, rope: RotaryEmbedding2d) -> None:
        super().__init__()
        self.rope = rope
        self._cache: dict = {}

    def factors(self, height, width, reduce, device):
        key = (height, width, device)
        if key not in self._cache:
            angles = self.rope.angles(self.rope.points(height, width, None, device))  # [heads|1, N, d/2]
            cis_q = torch.polar(torch.ones_like(angles), angles)
            cis_k = cis_q
            if reduce is not None:  # mean of the window's complex factors, as the seed does
                heads, n, half = angles.shape
                grid = cis_q.transpose(1, 2).reshape(heads, half, height, width)
                pooled = torch.complex(reduce(grid.real), reduce(grid.imag))
                cis_k = pooled.flatten(2).transpose(1, 2)
            self._cache[key] = (cis_q, cis_k)
        return self._cache[key]

    @staticmethod
    def rotate(x, cis):
        xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
        return torch.view_as_real(xc * cis).flatten(-2).to(x.dtype)

    def forward(self, q, k, grid, reduce=None):
        cis_q, cis_k = self.factors(grid[0], grid[1], reduce, q.device)
        return self.rotate(q, cis_q), self.rotate(k, cis_k)


def with_complex_rope(model: sl.SegmentationModel) -> sl.SegmentationModel:
    """``model`` with every rotary module wrapped in ``ComplexRoPE`` (in place)."""
    owners = [m for m in model.modules() if isinstance(getattr(m, "rope", None), RotaryEmbedding2d)]
    for module in owners:
        module.rope = ComplexRoPE(module.rope)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"segformer_b0": sl.create_model("segformer_b0").eval()}
    for kind in ("axial", "mixed"):
        name = f"segformer_b0_rope_{kind}"
        ours = sl.create_model(name, rope={"key_positions": "pooled"}).eval()
        complex_ = sl.create_model(name, rope={"key_positions": "pooled"}).eval()
        complex_.load_state_dict(ours.state_dict())
        with_complex_rope(complex_)
        models[f"{name} (ours, pooled keys)"] = ours
        models[f"{name} (complex, seed-style)"] = complex_
        models[f"{name} (ours, centre keys)"] = sl.create_model(name).eval()
    pixel_values = torch.randn(1, 3, *args.size)
    times, outputs = time_in_turns(models, pixel_values, args.warmup, args.repeats)
    print_comparison({"input": [1, 3, *args.size], "threads": torch.get_num_threads(), "repeats": args.repeats,
                      "warmup": args.warmup, "torch": torch.__version__, "models": relative_rows(times, 1)},
                     as_json=False)  # fmt: skip
    for kind in ("axial", "mixed"):
        name = f"segformer_b0_rope_{kind}"
        diff = (outputs[f"{name} (ours, pooled keys)"] - outputs[f"{name} (complex, seed-style)"]).abs().max()
        print(f"  {name}: max abs logit difference ours vs complex (pooled keys): {diff:.1e}")


if __name__ == "__main__":
    main()
