"""Timing on a shared machine: the thread count for one block, callables timed in turns
(on the CPU or, synchronised, on a GPU), and the summaries of their times (medians,
per-round ratios, the comparison table).

Latency drifts from run to run when other jobs share the machine, so comparisons run
every contender once per round (a, b, a, b, ...): drift hits all alike, and the ratio of
two times taken in the same round stays meaningful when the absolute medians move.
``bench``, ``bench --data``, the demo and ``benchmarks/*.py`` all time through here.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from typing import Any, Callable, Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block only (``None``: leave it)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_in_turns(
    runners: dict[str, Callable[[Any], Any]],
    inputs: Any,
    warmup: int,
    repeats: int,
    train: bool = False,
    device: torch.device | None = None,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Milliseconds per call ``runner(inputs)`` of each runner, all runners taking one turn
    per round; the first ``warmup`` rounds are not recorded. Also returns each runner's
    last output. Runs under ``torch.inference_mode`` unless ``train``. On a CUDA
    ``device`` each call is timed by CUDA events and waited for (``call_ms``)."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, Any] = {}
    with contextlib.nullcontext() if train else torch.inference_mode():
        for round_index in range(warmup + repeats):
            for name, run_once in runners.items():
                elapsed_ms, outputs[name] = call_ms(run_once, inputs, device)
                if round_index >= warmup:
                    times[name].append(elapsed_ms)
    return times, outputs


def call_ms(run: Callable[[Any], Any], inputs: Any, device: torch.device | None = None) -> tuple[float, Any]:
    """Milliseconds of one call ``run(inputs)``, and its output. On CUDA the device is idle
    first (``synchronize``) and the time is that between two CUDA events recorded around
    the call, waited for: the GPU's work, not just the launches. Elsewhere wall time."""
    if device is None or device.type != "cuda":
        start = time.perf_counter()
        output = run(inputs)
        return (time.perf_counter() - start) * 1e3, output
    torch.cuda.synchronize(device)
    start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    stream = torch.cuda.current_stream(device)
    start_event.record(stream)
    output = run(inputs)
    end_event.record(stream)
    end_event.synchronize()
    return start_event.elapsed_time(end_event), output


def summarise(times_ms: list[float], batch: int) -> dict[str, float]:
    """Median milliseconds per call and images per second at that median."""
    median = statistics.median(times_ms)
    return {"median_ms": median, "images_per_s": batch * 1e3 / median}


def relative_rows(times_ms: dict[str, list[float]], batch: int) -> list[dict]:
    """One row per timed runner (in order): median, throughput, and its time relative to
    the first runner's: ``relative`` is the median over rounds of the ratio within a round
    (both ran back to back, so drift between rounds cancels), with its quartiles
    ``relative_q1``/``relative_q3`` as the spread."""
    first = next(iter(times_ms.values()))
    rows = []
    for name, times in times_ms.items():
        ratios = [t / f for t, f in zip(times, first)]
        q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
        rows.append({"model": name, **summarise(times, batch), "relative": median, "relative_q1": q1,
                     "relative_q3": q3})  # fmt: skip
    return rows


def setting(result: dict) -> str:
    """Where a result was measured: ``cuda:0 (NVIDIA H100 ...), bf16, compiled, torch 2.x``;
    results without a device (the CPU scripts) give their threads and torch version."""
    if "device" not in result:
        return f"{result['threads']} threads, torch {result['torch']}"
    where = f"{result['device_name']}" if result["device"] == "cpu" else f"{result['device']} ({result['device_name']})"
    compiled = "eager" if result["compile"] is None else f"compiled {result['compile'] or ''}".rstrip()
    cuda = f", CUDA {result['cuda']}" if result["device"] != "cpu" else ""
    return f"{where}, {result['precision']}, {compiled}, torch {result['torch']}{cuda}"


def mib(row: dict) -> str:
    """A row's ``peak_memory_mib`` as text (``-`` where it was not measured)."""
    value = row.get("peak_memory_mib")
    return "peak -" if value is None else f"peak {value:.0f} MiB"


def print_comparison(result: dict, as_json: bool) -> int:
    """Print a comparison (``input``, ``threads``, ``torch``, ``repeats``, ``warmup``,
    optional ``mode``, device fields and ``memory``, and ``models``: rows of
    ``relative_rows``, optionally with ``peak_memory_mib``) as JSON or as a table."""
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    shape = "x".join(map(str, result["input"]))
    print(
        f"input {shape}, {setting(result)}: median of {result['repeats']} "
        f"rounds after {result['warmup']} warm-up, models timed in turns"
        + (" (training steps)" if result.get("mode") == "train" else "")
    )
    width = max(len(r["model"]) for r in result["models"])
    memory = any("peak_memory_mib" in r for r in result["models"])
    print(f"  {'model':<{width}} {'median ms':>10} {'img/s':>8} {'relative':>9}  {'quartiles':>13}"
          + ("  peak memory" if memory else ""))  # fmt: skip
    for r in result["models"]:
        print(f"  {r['model']:<{width}} {r['median_ms']:>10.1f} {r['images_per_s']:>8.2f} {r['relative']:>8.3f}x"
              f"  {r['relative_q1']:.3f}-{r['relative_q3']:.3f}" + (f"  {mib(r)}" if memory else ""))
    for name, reason in result.get("left_out", {}).items():
        print(f"  {name}: left out ({reason})")
    if "memory" in result:
        print(f"  ({result['memory']})")
    return 0
