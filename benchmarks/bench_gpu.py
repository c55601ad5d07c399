"""The GPU table of docs/benchmarks.md in one call (``make bench-gpu``).

    python benchmarks/bench_gpu.py [--out DIR] [--budget SECONDS] [--quick]

On a CUDA machine: SegFormer-B0..B5, BoostFormer-B0/B2 and segformer_b0_rope_axial at
512x512 (B5 also at 640x640), batch 1 and 16, fp32 and bf16, eager and compiled, each a
``segformer-lab bench`` run (``analysis.benchmark.benchmark``: CUDA-event timing, peak memory);
B0 and B2 against transformers on the same weights in the same precision and mode; and
a bf16 training step of B0 and B2 at batch 8 against transformers, with peak memory.

Rows run in order of importance (the issue's targets first). Before each row the script
predicts its time from the rows already measured (a fixed cost per contender, a cost per
unit of work, and for compiled rows a compile cost per block; priors until measured) and
skips it, saying so, when it no longer fits the budget: 420 s by default on a GPU, so the
whole call ends inside 8 minutes. A row that fails (out of memory, a compiler error) is
reported and the next one runs. The device is printed first, the table last; both
bench_gpu.md and bench_gpu.json are written to DIR (default outputs/bench-gpu).

Without CUDA it runs a small version of the same table on the CPU (B0, BoostFormer-B0
and the RoPE variant at 128x128, batch 1 and 2, transformers for B0, a float32 training
step at batch 2) in about a minute; ``--quick`` makes it smaller still (64x64, two
rounds, a 25 s budget) for the test suite. Compiled rows do not fit on a CPU (inductor took minutes for
B0 on two cores) and are listed as skipped.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from segformer_lab._io import atomic_write, write_json
from segformer_lab.export.errors import described
from segformer_lab.models import get_config
from segformer_lab.analysis.benchmark import benchmark
from segformer_lab.analysis.device import environment

GPU_MODELS = [("segformer_b0", 512), ("segformer_b1", 512), ("segformer_b2", 512), ("segformer_b3", 512),
              ("segformer_b4", 512), ("segformer_b5", 512), ("segformer_b5", 640), ("boostformer_b0", 512),
              ("boostformer_b2", 512), ("segformer_b0_rope_axial", 512)]  # fmt: skip
HF_MODELS = ("segformer_b0", "segformer_b2")
# Frames per second at 512x512 (ADE20K) to beat: the SegFormer paper's (V100, Table 1)
# and mmsegmentation's model zoo (configs/segformer/README.md, "Inf time (fps)").
PAPER_V100_FPS = {"segformer_b0": 50.5, "segformer_b4": 15.4, "segformer_b5": 9.8}
MMSEG_FPS = {"segformer_b0": 51.32, "segformer_b1": 47.66, "segformer_b2": 30.88, "segformer_b3": 22.11,
             "segformer_b4": 15.45, "segformer_b5": 11.89}  # fmt: skip
# Priors of the time model until a row of the kind has run: seconds per contender and
# row, seconds per unit of work (``work``), compile seconds per encoder block.
PRIORS = {
    "cuda": {"fixed": 4.0, "per_work": 0.05, "train_per_work": 0.2, "compile_per_block": 4.0},
    "cpu": {"fixed": 2.0, "per_work": 4.0, "train_per_work": 15.0, "compile_per_block": 25.0},
}


@dataclass(frozen=True)
class Row:
    model: str
    size: int
    batch: int
    precision: str
    compiled: bool = False
    train: bool = False
    compare_hf: bool = False

    @property
    def contenders(self) -> int:
        return 2 if self.compare_hf else 1

    def label(self) -> str:
        mode = "training step" if self.train else "compiled" if self.compiled else "eager"
        return f"{self.model} {self.size}x{self.size} batch {self.batch} {self.precision} {mode}"


def gpu_plan() -> list[Row]:
    """Every row of the GPU table, most important first."""
    rows = [
        Row("segformer_b0", 512, 1, "bf16", compare_hf=True),
        Row("segformer_b0", 512, 16, "bf16", compare_hf=True),
        Row("segformer_b2", 512, 8, "bf16", train=True, compare_hf=True),
        Row("segformer_b0", 512, 8, "bf16", train=True, compare_hf=True),
        Row("segformer_b0", 512, 1, "bf16", compiled=True, compare_hf=True),
        Row("segformer_b0", 512, 16, "bf16", compiled=True, compare_hf=True),
    ]
    for precision in ("bf16", "fp32"):
        for model, size in GPU_MODELS:
            for batch in (1, 16):
                rows.append(Row(model, size, batch, precision, compare_hf=model in HF_MODELS))
    for precision in ("bf16", "fp32"):
        for model, size in GPU_MODELS:
            for batch in (1, 16):
                rows.append(Row(model, size, batch, precision, compiled=True, compare_hf=model in HF_MODELS))
    return list(dict.fromkeys(rows))


def cpu_plan(quick: bool) -> list[Row]:
    """The same table, small, for a machine without CUDA (float32 first, and the training
    step in float32: bf16 is emulated and slow on most CPUs, its backward most of all)."""
    size = 64 if quick else 128
    rows = [
        Row("segformer_b0", size, 1, "fp32", compare_hf=True),
        Row("segformer_b0", size, 1, "bf16", compare_hf=True),
        Row("segformer_b0", size, 1 if quick else 2, "fp32", train=True, compare_hf=True),
    ]
    for precision in ("fp32", "bf16"):
        for model in ("segformer_b0", "boostformer_b0", "segformer_b0_rope_axial"):
            for batch in (1, 2):
                rows.append(Row(model, size, batch, precision, compare_hf=model == "segformer_b0" and not quick))
    rows += [Row("segformer_b0", size, 1, precision, compiled=True) for precision in ("fp32", "bf16")]
    return list(dict.fromkeys(rows))


def work(row: Row) -> float:
    """Units of work of a row: the encoder's linear-layer multiply-adds (depth x width^2 x
    tokens per stage, stride 4 to 32) times the batch, in 1e9; proportional to its time."""
    stages = get_config(row.model).stages
    tokens = [(row.size // 2 ** (i + 2)) ** 2 for i in range(len(stages))]
    return row.batch * sum(s.depth * s.width**2 * n for s, n in zip(stages, tokens)) / 1e9


def blocks(row: Row) -> int:
    return sum(s.depth for s in get_config(row.model).stages)


class TimeModel:
    """Predicted seconds of a row from the rows measured so far (priors until then)."""

    def __init__(self, device_type: str) -> None:
        self.rates = dict(PRIORS[device_type])

    def predict(self, row: Row) -> float:
        r = self.rates
        per_contender = r["fixed"] + r["train_per_work" if row.train else "per_work"] * work(row)
        if row.compiled:
            per_contender += r["compile_per_block"] * blocks(row)
        return row.contenders * per_contender

    def update(self, row: Row, seconds: float) -> None:
        r = self.rates
        per_contender = seconds / row.contenders
        if row.compiled:
            rest = per_contender - r["fixed"] - r["per_work"] * work(row)
            r["compile_per_block"] = max(rest, 0.0) / blocks(row)
        else:
            key = "train_per_work" if row.train else "per_work"
            r[key] = max(per_contender - r["fixed"], 0.0) / work(row)


def run_row(row: Row, device: torch.device, rounds: tuple[int, int]) -> dict:
    warmup, repeats = rounds
    return benchmark(row.model, (row.size, row.size), row.batch, None, warmup, repeats, row.compare_hf,
                     train=row.train, device=device, precision=row.precision,
                     compile={} if row.compiled else None)  # fmt: skip


def run_plan(rows: list[Row], device: torch.device, budget: float, rounds: tuple[int, int]) -> list[dict]:
    """Measure the rows in order within ``budget`` seconds; one record per row."""
    model = TimeModel(device.type)
    start = time.perf_counter()
    records = []
    for row in rows:
        left = budget - (time.perf_counter() - start)
        predicted = model.predict(row)
        record = {**asdict(row), "predicted_s": round(predicted, 1)}
        if predicted > left:
            record.update(status="skipped", reason=f"predicted {predicted:.0f} s, {max(left, 0):.0f} s left")
            print(f"skipped  {row.label()}: {record['reason']}", flush=True)
            records.append(record)
            continue
        began = time.perf_counter()
        try:
            record.update(status="measured", result=run_row(row, device, rounds))
        except Exception as err:  # noqa: BLE001 - one row's failure (memory, compiler) leaves the others
            record.update(status="failed", reason=described(err))
        seconds = time.perf_counter() - began
        record["seconds"] = round(seconds, 1)
        if record["status"] == "measured":
            model.update(row, seconds)
        print(f"{record['status']:<8} {row.label()}: {seconds:.1f} s" + (f" ({record['reason']})" if "reason" in record
              else ""), flush=True)  # fmt: skip
        records.append(record)
        release(device)
    return records


def release(device: torch.device) -> None:
    """Forget compiled graphs (dynamo caches one per model, up to a limit) and free memory."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"Device: {env['device_name']} ({env['device']}), torch {env['torch']}"
             + (f", CUDA {env['cuda']}" if env["cuda"] and env["device"] != "cpu" else "")
             + f"; {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget.", ""]  # fmt: skip
    measured = [r for r in report["rows"] if r["status"] == "measured"]
    lines += ["| model | input | batch | precision | mode | ms | img/s | anchor FPS: paper / mmseg | peak MiB "
              "| transformers ms | transformers img/s | speed-up | transformers peak MiB | max abs diff |",
              "| --- " * 14 + "|"]  # fmt: skip
    for r in (r for r in measured if not r["train"]):
        lines.append(table_row(r, "max_abs_diff", anchors(r)))
    lines += ["", "Training step (forward, loss, backward, AdamW):", "",
              "| model | input | batch | precision | mode | step ms | img/s | peak MiB | transformers ms "
              "| transformers img/s | speed-up | transformers peak MiB | loss diff |", "| --- " * 13 + "|"]  # fmt: skip
    for r in (r for r in measured if r["train"]):
        lines.append(table_row(r, "loss_abs_diff"))
    lines += ["", *targets(measured, env["device"])]
    others = [r for r in report["rows"] if r["status"] != "measured"]
    if others:
        lines += ["", "Not measured:", ""]
        lines += [f"- {Row(**{k: r[k] for k in Row.__dataclass_fields__}).label()}: {r['status']} ({r['reason']})"
                  for r in others]  # fmt: skip
    if measured:
        lines += ["", f"({measured[0]['result']['memory']})"]
    return "\n".join(lines) + "\n"


def anchors(record: dict) -> str:
    """The published FPS of a 512x512 SegFormer at batch 1, to compare img/s with."""
    if (record["size"], record["batch"]) != (512, 1) or record["model"] not in MMSEG_FPS:
        return ""
    return f"{PAPER_V100_FPS.get(record['model'], '-')} / {MMSEG_FPS[record['model']]}"


def table_row(record: dict, difference: str, anchor: str | None = None) -> str:
    result = record["result"]
    ours, theirs = result["ours"], result.get("transformers")
    mode = "train" if record["train"] else "compiled" if record["compiled"] else "eager"
    cells = [record["model"], f"{record['size']}x{record['size']}", str(record["batch"]), record["precision"], mode,
             f"{ours['median_ms']:.2f}", f"{ours['images_per_s']:.1f}", *([anchor] if anchor is not None else []),
             mib(ours)]  # fmt: skip
    if theirs:
        cells += [f"{theirs['median_ms']:.2f}", f"{theirs['images_per_s']:.1f}", f"**{result['speedup']:.2f}x**",
                  mib(theirs), f"{result[difference]:.1e}"]  # fmt: skip
    else:
        cells += [""] * 5
    return "| " + " | ".join(cells) + " |"


def mib(side: dict) -> str:
    return "" if side.get("peak_memory_mib") is None else f"{side['peak_memory_mib']:.0f}"


def targets(measured: list[dict], device: str) -> list[str]:
    """The issue's targets against what was measured (GPU only)."""
    if device == "cpu":
        return ["Targets (issue 16) are for a GPU: not assessed on the CPU."]
    lines = ["Targets (issue 16):", ""]
    for r in measured:
        key = (r["model"], r["size"], r["batch"], r["precision"], r["train"], r["compiled"])
        result = r["result"]
        if key[:5] == ("segformer_b0", 512, 1, "bf16", False):
            fps = result["ours"]["images_per_s"]
            lines.append(f"- B0 batch 1 bf16 {'compiled' if r['compiled'] else 'eager'}: {fps:.0f} img/s = "
                         f"{fps / PAPER_V100_FPS['segformer_b0']:.1f}x the paper's V100 FPS (target 3x); "
                         f"{result['speedup']:.2f}x transformers (target 3x)")  # fmt: skip
        if key[:5] == ("segformer_b0", 512, 16, "bf16", False):
            lines.append(f"- B0 batch 16 bf16 {'compiled' if r['compiled'] else 'eager'}: {result['speedup']:.2f}x "
                         "transformers' throughput (target 2x)")  # fmt: skip
        if key[:5] == ("segformer_b2", 512, 8, "bf16", True) and result.get("memory_ratio") is not None:
            lines.append(f"- B2 training batch 8 bf16: peak memory {result['memory_ratio']:.2f}x transformers' "
                         "(target at most 0.5x)")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/bench-gpu", help="directory for bench_gpu.md and bench_gpu.json")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of measurement (default: 420 on a GPU, 60 on the CPU, 25 with --quick)")
    parser.add_argument("--quick", action="store_true", help="on the CPU: the smallest table (the test suite's)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    env = {k: v for k, v in environment(device, "fp32", None).items() if k not in ("precision", "compile")}
    print(f"device: {env['device_name']} ({env['device']}), torch {env['torch']}"
          + (f", CUDA {env['cuda']}" if cuda else ": no CUDA, running the small CPU version"), flush=True)  # fmt: skip
    budget = args.budget or (420.0 if cuda else 25.0 if args.quick else 60.0)
    rows = gpu_plan() if cuda else cpu_plan(args.quick)
    rounds = (3, 15) if cuda else (0, 2) if args.quick else (1, 4)
    start = time.perf_counter()
    records = run_plan(rows, device, budget, rounds)
    report = {"environment": env, "budget_s": budget, "elapsed_s": round(time.perf_counter() - start, 1),
              "warmup": rounds[0], "repeats": rounds[1], "paper_v100_fps": PAPER_V100_FPS,
              "mmseg_fps": MMSEG_FPS, "rows": records}  # fmt: skip
    text = markdown(report)
    out = Path(args.out)
    write_json(out / "bench_gpu.json", report)
    atomic_write(out / "bench_gpu.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
