"""Eager PyTorch against onnxruntime on the CPU: the table of docs/benchmarks.md (issue 22).

    PYTHONPATH=src python benchmarks/eager_vs_onnx.py [--threads 1 2] [--repeats 10] [--write docs/benchmarks.md]

Each model (random weights, random BatchNorm statistics, as ``bench --onnx``) is exported
once to ONNX (float32, opset 18, static 1x3x512x512); then, at each thread count, the
optimised eager model (``optimize_for_inference``, what ``bench`` times), onnxruntime on the
export (``OnnxRunner``: worker threads do not spin) and a 1024x1024 float32 matrix product
(the machine's sgemm rate) run in turns. ``eager / ORT`` is the median over rounds of the
ratio within a round. A last table times segformer_b0 and boostformer_b0 eager in turns.

The Markdown goes to stdout; with ``--write FILE`` it also replaces the block between
``<!-- eager-vs-onnx:start -->`` and ``<!-- eager-vs-onnx:end -->`` in FILE.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from segformer_lab._io import atomic_write
from segformer_lab.analysis.device import environment
from segformer_lab.analysis.hf_twin import randomise_batch_norms
from segformer_lab.analysis.profiling import count_macs, machine_fraction, sgemm_runner
from segformer_lab.analysis.timing import time_in_turns, torch_threads
from segformer_lab.export import OnnxRunner, export_onnx
from segformer_lab.inference import optimize_for_inference
from segformer_lab.models import create_model

MODELS = ("segformer_b0", "segformer_b2", "boostformer_b0", "boostformer_b2", "segformer_b0_rope_axial")
START, END = "<!-- eager-vs-onnx:start -->", "<!-- eager-vs-onnx:end -->"


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of ``a``'s time over ``b``'s in the same round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def measure(names, size, thread_counts, warmup, repeats) -> tuple[list[dict], list[dict]]:
    rows, pairs = [], []
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    eager = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            model = create_model(name).eval()
            randomise_batch_norms(model)
            path = Path(directory) / f"{name}.onnx"
            export_onnx(model, path, static_size=size, check=False)
            eager[name] = optimize_for_inference(model)
            macs = count_macs(model.config, size).total
            for threads in thread_counts:
                with torch_threads(threads):
                    runners = {"eager": eager[name], "onnxruntime": OnnxRunner(path, threads), "sgemm": sgemm_runner()}
                    times, _ = time_in_turns(runners, x, warmup, repeats)
                medians = {k: statistics.median(v) for k, v in times.items()}
                rows.append({"model": name, "threads": threads, "eager_ms": medians["eager"],
                             "onnxruntime_ms": medians["onnxruntime"], "eager_over_ort": ratio(times, "eager", "onnxruntime"),
                             **machine_fraction(macs, medians["eager"], medians["sgemm"])})  # fmt: skip
                print(f"measured {name} at {threads} thread(s)", flush=True)
    if {"segformer_b0", "boostformer_b0"} <= set(eager):
        for threads in thread_counts:
            with torch_threads(threads):
                runners = {n: eager[n] for n in ("segformer_b0", "boostformer_b0")}
                times, _ = time_in_turns(runners, x, warmup, repeats)
            pairs.append({"threads": threads, "segformer_b0_ms": statistics.median(times["segformer_b0"]),
                          "boostformer_b0_ms": statistics.median(times["boostformer_b0"]),
                          "speedup": ratio(times, "segformer_b0", "boostformer_b0")})  # fmt: skip
    return rows, pairs


def markdown(rows: list[dict], pairs: list[dict], size, warmup: int, repeats: int) -> str:
    env = environment(torch.device("cpu"), "fp32", None)
    import onnxruntime

    lines = [
        f"{env['device_name'].split(',')[0]}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; batch 1, "
        f"{size[0]}x{size[1]}, float32; median of {repeats} rounds after {warmup} warm-up, eager, onnxruntime and "
        "sgemm timed in turns (`python benchmarks/eager_vs_onnx.py --write docs/benchmarks.md`).",
        "",
        "| model | threads | eager ms | onnxruntime ms | eager / ORT | executed GMACs | eager GMAC/s | sgemm GMAC/s "
        "| of sgemm |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['threads']} | {r['eager_ms']:.1f} | {r['onnxruntime_ms']:.1f} | "
                     f"{r['eager_over_ort']:.2f}x | {r['executed_gmacs']:.2f} | {r['gmac_per_s']:.1f} | "
                     f"{r['sgemm_gmac_per_s']:.1f} | {100 * r['sgemm_fraction']:.0f}% |")  # fmt: skip
    if pairs:
        lines += ["", "| threads | segformer_b0 eager ms | boostformer_b0 eager ms | speed-up |", "| --- | --- | --- | --- |"]
        lines += [f"| {p['threads']} | {p['segformer_b0_ms']:.1f} | {p['boostformer_b0_ms']:.1f} | {p['speedup']:.2f}x |"
                  for p in pairs]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_block(path: Path, table: str) -> None:
    """Replace the marked block of ``path`` with ``table``."""
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path}: no {START} ... {END} block to replace")
    head, rest = text.split(START, 1)
    new = head + START + "\n" + table + END + rest.split(END, 1)[1]
    atomic_write(path, lambda tmp: tmp.write_text(new))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--write", type=Path, default=None, metavar="FILE")
    args = parser.parse_args()
    size = tuple(args.size)
    rows, pairs = measure(args.models, size, args.threads, args.warmup, args.repeats)
    table = markdown(rows, pairs, size, args.warmup, args.repeats)
    print(table)
    if args.write is not None:
        write_block(args.write, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
