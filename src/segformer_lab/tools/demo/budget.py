"""The demo's plan: how many training steps each run gets so that the whole demo fits
``--budget`` minutes on this machine, and with how many threads.

The costs are calibrated on the real thing. A few training steps of every model run
through the engine's own ``train`` (the Lightning loop: data loading, the fused loss,
backward, AdamW, callbacks, logging) — the first model once per candidate thread count,
the others with the count chosen: their steps differ (mixed RoPE and BoostFormer-B0 train
35-37% slower per step than B0 here, and a plan on B0's step alone overshot a 24-minute
budget by a third) — and a few validation images are scored with the engine's
``evaluate`` by each model (RoPE and BoostFormer score slower too, most at 3x). Timing a bare
forward/backward/AdamW step instead misses the loop's per-step costs: a plan built on
it overshoots (about 2m10s of training per model where 1m30s were planned).
The plan is kept in ``OUT/plan.json``, so that a rerun trains with the same recipe.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from lightning.pytorch.profilers import Profiler
from torch.utils.data import Subset

from ..._io import read_json, write_json
from ...engine import evaluate, train
from ...analysis.timing import torch_threads
from .dataset import IMAGE_SIZE, spread_indices
from .formatting import duration
from .measure import PROFILE_SIZE
from .recipe import VAL_POINTS, device_of, recipe_key, set_steps

DEFAULT_BUDGET_MIN = 8.0
MIN_STEPS = 10
PLAN_FRACTION = 0.85  # of --budget, planned for: the rest absorbs a machine that gets busier
PLAN_FILE = "plan.json"
CALIBRATION_STEPS, CALIBRATION_WARMUP = 12, 2  # training steps per calibration run; the first ones untimed
CALIBRATION_IMAGES = 6  # validation images scored to time evaluation
STEP_MARGIN = 1.03  # periodic checkpoints, validations' data loading


@dataclass
class Costs:
    """Seconds, measured on this machine by ``calibrate``."""

    steps: dict[str, float]  # per run kind: one step of the training loop (data, forward, loss, backward,
    # AdamW, callbacks, logging)
    per_image: dict[str, dict[int, float]]  # per run kind: scoring one validation image (loading, forward,
    # metrics) at each multiple of the training size
    run_overhead: float = 3.0  # a run's training beyond its steps: set-up, warm-up, final checkpoint

    def scoring(self, kind: str, multiples: Sequence[int]) -> float:
        """Seconds per validation image that ``kind`` scores at these multiples of the training size."""
        return sum(self.per_image[kind][m] for m in multiples)

    def forward_profile(self, kind: str) -> float:
        """One forward of ``kind`` at PROFILE_SIZE x PROFILE_SIZE, extrapolated from its 2x
        scoring by area (the images are about 3:2)."""
        return self.per_image[kind][2] * PROFILE_SIZE**2 / (2 * IMAGE_SIZE * 3 * IMAGE_SIZE)


class StepClock(Profiler):
    """A Lightning profiler that notes when each training batch ends (the loop's
    ``run_training_batch`` action): between two notes lies one whole step of the loop,
    its data loading, callbacks and logging included."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        if action_name == "run_training_batch":
            self.ends.append(time.perf_counter())


def loop_costs(ends: Sequence[float], start: float, finish: float, warmup: int) -> tuple[float, float]:
    """Seconds per training step and seconds of the rest, from a short training run that
    started at ``start``, returned at ``finish`` and ended its steps at ``ends``. The step
    is the mean time between step ends after the first ``warmup`` steps (a mean, so that
    the steps that also log count with their share); the rest is what the run took beyond
    its steps at that pace (set-up, the slower first steps, tear-down)."""
    timed = len(ends) - 1 - warmup
    if timed < 1:
        raise ValueError(f"timing a step needs more than {warmup + 1} step ends, got {len(ends)}")
    step = (ends[-1] - ends[warmup]) / timed
    return step, max(0.0, finish - start - len(ends) * step)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _time_training(config: dict[str, Any]) -> tuple[float, float, Any]:
    """``loop_costs`` of ``config`` trained for ``CALIBRATION_STEPS`` steps (no validation)
    into a temporary directory, and the trained model."""
    config = copy.deepcopy(config)
    config["trainer"]["max_steps"] = CALIBRATION_STEPS
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="segformer-lab-calibration-") as run_dir:
        start = time.perf_counter()
        trainer = train(config, run_dir, enable_progress_bar=False, limit_val_batches=0, profiler=clock)
        finish = time.perf_counter()
    return (*loop_costs(clock.ends, start, finish, CALIBRATION_WARMUP), trainer.lightning_module.model)


def _time_scoring(model: Any, eval_set: Any, device: str, multiples: Sequence[int]) -> dict[int, float]:
    """Seconds per validation image of ``evaluate`` at each of ``multiples`` of the training
    size. A warm-up scores other images first, and each timed image is scored once per
    size, as in a real scoring: a model that caches per input size (RoPE's tables) gets no
    cache hit a real scoring would not get. Every size is timed, not extrapolated by area:
    attention's cost grows with the square of the tokens."""
    indices = spread_indices(2 * CALIBRATION_IMAGES, len(eval_set))
    timed, warmup = indices[::2], indices[1::2] or indices[:1]
    evaluate(model, Subset(eval_set, warmup), sizes=[IMAGE_SIZE], device=device, progress=False)
    images, seconds = Subset(eval_set, timed), {}
    for m in multiples:
        start = time.perf_counter()
        evaluate(model, images, sizes=[m * IMAGE_SIZE], device=device, progress=False)
        seconds[m] = (time.perf_counter() - start) / len(images)
    return seconds


def calibrate(configs: Mapping[str, dict[str, Any]], eval_set: Any, device: str,
              thread_options: Sequence[int], multiples: Sequence[int]) -> tuple[Costs, int]:
    """The costs of the runs of ``configs`` (run kind -> its recipe): the first one's
    training loop timed with each thread count of ``thread_options``, keeping the fastest
    (on a machine that other jobs share, one thread often beats all cores: threads wait
    for each other), every other one's with that count; then each kind's trained model
    scores a few images of ``eval_set`` at ``multiples`` of the training size with that count."""
    (first, config), *others = configs.items()
    best: tuple[float, float, int, Any] | None = None
    for threads in dict.fromkeys(thread_options):
        with torch_threads(threads):
            step, overhead, model = _time_training(config)
        if best is None or step < best[0]:
            best = (step, overhead, threads, model)
    step, overhead, threads, model = best
    steps, per_image = {first: step}, {}
    with torch_threads(threads):
        per_image[first] = _time_scoring(model, eval_set, device, multiples)
        for kind, other in others:
            steps[kind], _, trained = _time_training(other)
            per_image[kind] = _time_scoring(trained, eval_set, device, multiples)
    return Costs(steps, per_image, overhead), threads


def plan_steps(costs: Costs, budget_s: float, elapsed_s: float, runs: Mapping[str, int], val_images: int,
               multiples: Sequence[int], fixed_s: float, val_points: int = VAL_POINTS) -> tuple[int, dict[str, float]]:
    """Training steps per run so that the whole job fits ``budget_s``; and the estimate.
    ``runs``: how many runs of each kind of ``costs.steps`` (each kind at its own step
    cost); every run is validated ``val_points`` times at the training size during
    training and scored at ``multiples`` of it at the end; ``fixed_s``: what the job
    spends besides its runs. The plan aims at ``PLAN_FRACTION`` of the budget (the machine
    may get busier after the calibration: other jobs slowed whole demos on a shared
    machine by up to 1.5x) and gives the steps a margin (``STEP_MARGIN``)."""
    step = STEP_MARGIN * sum(n * costs.steps[kind] for kind, n in runs.items())  # one step of every run
    # what the runs cost besides their steps
    beside_steps = sum(n * (costs.run_overhead + 1.0  # training set-up and tear-down (measured); loading the weights
                            + val_points * val_images * costs.scoring(kind, (1,))  # validations during training
                            + val_images * costs.scoring(kind, multiples))  # the final scoring
                       for kind, n in runs.items())
    left = PLAN_FRACTION * budget_s - elapsed_s - beside_steps - fixed_s
    steps = int(left / step) if left > 0 else 0
    steps = max(MIN_STEPS, steps - steps % max(1, val_points))
    estimate = {"train_s": steps * step, "runs_beside_steps_s": beside_steps, "fixed_s": fixed_s,
                "total_s": elapsed_s + beside_steps + steps * step + fixed_s}
    return steps, estimate


def demo_fixed_s(costs: Costs, bench_rounds: int) -> float:
    """What the demo spends besides its runs, for each of its models (the kinds of
    ``costs``): latency, profile, plots, report, predictions."""
    return 5.0 + sum(bench_rounds * costs.forward_profile(kind) * 1.2  # latency
                     + 1.0  # profile (fake tensors), plots, report
                     + 4 * costs.scoring(kind, (2,))  # prediction grid
                     for kind in costs.steps)


def step_costs(costs: Costs) -> str:
    """``0.14 s (segformer_b0), 0.19 s (boostformer_b0)``: each kind's measured step."""
    return ", ".join(f"{s:.2f} s ({kind})" for kind, s in costs.steps.items())


@dataclass
class Job:
    """What a plan is for: the recipe, each kind of run with its recipe (kind -> config:
    the models of the demo, the variants of a study) and how many runs of it, the
    multiples of the training size every run is scored at, what the job spends besides
    its runs, given the measured costs, and how often a run validates while it trains."""

    base: dict[str, Any]
    kinds: dict[str, dict[str, Any]]
    runs: dict[str, int]
    multiples: tuple[int, ...]
    fixed_s: Callable[[Costs], float]
    val_points: int = VAL_POINTS


def make_plan(out: Path, job: Job, eval_set: Any, clock: float, steps: int | None = None,
              budget: float | None = None, threads: int | None = None,
              default_budget: float = DEFAULT_BUDGET_MIN) -> tuple[dict[str, Any], int, str]:
    """The recipe with its training steps, the thread count, and a line saying how they
    were chosen: ``steps`` given, kept from an earlier plan in ``out`` (same recipe, steps
    and budget), or fitted to ``budget`` minutes (default ``default_budget``) counted from
    ``clock`` (``time.perf_counter`` when the job started), every kind of run timed.
    ``threads`` given, else the fastest of one and all cores."""
    base = job.base
    kept = read_json(out / PLAN_FILE)
    if (kept and recipe_key(kept.get("recipe", {})) == recipe_key(base)
            and kept.get("runs") == job.runs
            and (steps is None or steps == kept.get("steps"))
            and (budget is None or budget == kept.get("budget_min"))):
        chosen = threads or int(kept.get("threads") or torch.get_num_threads())
        return (set_steps(base, int(kept["steps"]), job.val_points), chosen,
                f"{kept['steps']} steps per run, kept from {out / PLAN_FILE} ({kept.get('how', '')})")
    options = [threads] if threads else sorted({1, usable_cores()})
    if steps is not None:
        chosen, note, extra = threads or torch.get_num_threads(), "given", {}
    else:
        minutes = default_budget if budget is None else budget
        timed = sorted({1, 2, *job.multiples})  # validations at 1x, the demo's predictions at 2x
        costs, chosen = calibrate(job.kinds, eval_set, device_of(base), options, timed)
        steps, estimate = plan_steps(costs, minutes * 60, time.perf_counter() - clock, job.runs, len(eval_set),
                                     job.multiples, job.fixed_s(costs), job.val_points)
        note = (f"fitted to a {minutes:g}-minute budget: {step_costs(costs)} per training step with {chosen} "
                f"thread{'s' if chosen > 1 else ''} (fastest of {', '.join(map(str, options))}), "
                f"expected total {duration(estimate['total_s'])}")
        extra = {"costs": costs.__dict__, "estimate": estimate}
    config = set_steps(base, steps, job.val_points)
    write_json(out / PLAN_FILE, {"steps": config["trainer"]["max_steps"], "budget_min": budget, "runs": job.runs,
                                 "threads": chosen, "recipe": base, "how": note, **extra})
    return config, chosen, f"{config['trainer']['max_steps']} steps per run, {note}"
