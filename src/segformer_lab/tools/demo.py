"""``segformer-lab demo``: the main job, on an embedded dataset, from nothing to a report.

1. generate (or reuse) the scenes dataset (``data.scenes``: 14 classes, ADE20K layout);
2. train every variant with one recipe (``configs/demo.yaml``) and seed through the
   training engine, each into ``OUT/runs/<model>-seed<k>``;
3. score each one's final weights on the validation split with the input's short side at
   the training size and at twice it (a resolution sweep: extrapolation);
4. count parameters and MACs at 512x512 and time CPU inference at 512x512, all models in
   turns;
5. write ``OUT/report.md`` (a table with a majority-class baseline), ``OUT/results.json``
   and plots: mIoU vs GMACs, training curves, mIoU vs evaluation size, predictions.

The number of training steps is the plan's: ``--steps``, or as many as ``--budget``
minutes (the whole demo, dataset included) allow on this machine, from a few timed
training steps. The plan is kept in ``OUT/plan.json``, so a rerun trains with the same
recipe. A run is finished when its ``result.json`` (written atomically after training
and evaluation) is there and records the same recipe: a rerun reuses it; an unfinished
run resumes from its ``checkpoints/last.ckpt`` (or restarts when it has none).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import logging
import math
import shutil
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .._io import read_json, write_json

DEFAULT_MODELS = ("segformer_b0", "segformer_b0_rope_axial", "segformer_b0_rope_mixed", "boostformer_b0")
DEFAULT_BUDGET_MIN = 8.0
DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES, IMAGE_SIZE, DATA_SEED = 2000, 200, 128, 0
PROFILE_SIZE = 512
VAL_POINTS = 2  # validations during training (the curve): halfway and at the end
MIN_STEPS = 10
PLAN_FRACTION = 0.85  # of --budget, planned for: the rest absorbs a machine that gets busier
RESULT_FILE, TRAINED_FILE, SESSIONS_FILE, PLAN_FILE = "result.json", "trained.json", "sessions.json", "plan.json"
LOCK_FILE = ".demo.lock"
RECIPE_FILE = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"  # in a source checkout

# configs/demo.yaml without its comments: the recipe when the package runs outside the
# checkout (tests/test_demo.py checks that both agree)
BUILTIN_RECIPE: dict[str, Any] = {
    "seed": 0,
    "model": {"name": "segformer_b0", "num_classes": 14, "pretrained": None, "overrides": {"drop_path_rate": 0.0}},
    "data": {"format": "ade20k", "root": None, "train_split": "training", "val_split": "validation",
             "train_transforms": {"name": "segformer_ade", "crop_size": [128, 128], "scale": [128, 128],
                                  "ratio_range": [1.0, 1.0], "cat_max_ratio": 1.0, "flip_prob": 0.5,
                                  "photometric": False},
             "val_transforms": {"name": "val", "scale": [4096, 128]},
             "batch_size": 8, "val_batch_size": 1, "num_workers": 0},
    "optim": {"lr": 2e-3, "weight_decay": 0.01, "head_lr_mult": 1.0, "warmup": 0.1, "poly_power": 1.0},
    "val": {"mode": "whole"},
    "checkpoint": {"every_n_train_steps": 50},
    "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32", "max_epochs": -1, "max_steps": 300,
                "check_val_every_n_epoch": None, "val_check_interval": 150, "num_sanity_val_steps": 0,
                "log_every_n_steps": 5, "enable_model_summary": False},
}
# config keys that do not change what a run computes (a moved cache, the console)
NEUTRAL = (("data", "root"), ("data", "num_workers"), ("trainer", "enable_progress_bar"))


# --------------------------------------------------------------------------- small helpers

def duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def recipe_key(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the keys that do not change a run's result."""
    key = copy.deepcopy(config)
    for section, name in NEUTRAL:
        key.get(section, {}).pop(name, None)
    return key


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def pm(values: Sequence[float], digits: int = 1) -> str:
    """``"41.2"`` for one value, ``"41.2 ± 0.8"`` (sample std) for several."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


class Stages:
    """``[k/N] what happened (time)`` lines, one per finished stage."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def finish(self, text: str, seconds: float | None = None) -> None:
        self.done += 1
        suffix = f" ({duration(seconds)})" if seconds is not None else ""
        print(f"[{self.done}/{self.total}] {text}{suffix}", flush=True)


# --------------------------------------------------------------------------- the recipe and the plan

def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The demo's recipe resolved over the engine's defaults: ``path``, else
    ``configs/demo.yaml`` of the checkout, else the built-in copy of it."""
    from ..engine import resolve_config

    if path is None:
        path = RECIPE_FILE if RECIPE_FILE.is_file() else None
    return resolve_config(BUILTIN_RECIPE if path is None else path, overrides)


def set_steps(config: dict[str, Any], steps: int) -> dict[str, Any]:
    """``steps`` optimiser steps, validated ``VAL_POINTS`` times (halfway and at the end)."""
    config = copy.deepcopy(config)
    steps = max(VAL_POINTS, steps - steps % VAL_POINTS)
    config["trainer"].update(max_steps=steps, max_epochs=-1, check_val_every_n_epoch=None,
                             val_check_interval=steps // VAL_POINTS)
    return config


def device_of(config: dict[str, Any]) -> str:
    import torch

    accelerator = str(config["trainer"].get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


@dataclass
class Costs:
    """Seconds, measured on this machine by ``probe``."""

    step: float  # one training step (forward, backward, AdamW) of a batch
    forward: float  # one evaluation forward at the training size (aspect 3:2)
    forward2x: float  # ... at twice the size
    forward_profile: float  # one forward at PROFILE_SIZE x PROFILE_SIZE (extrapolated from forward2x)


def usable_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def probe(config: dict[str, Any], model_name: str, device: str, thread_options: Sequence[int]) -> tuple[Costs, int]:
    """Time training steps of ``model_name`` (random data of the recipe's batch and crop)
    with each thread count of ``thread_options``, keep the fastest (on a machine that
    other jobs share, one thread often beats all cores: threads wait for each other), then
    time evaluation forwards with it."""
    import torch
    import torch.nn.functional as F

    from ..engine import OptimConfig, build_model, build_optimizer

    batch = int(config["data"]["batch_size"])
    crop = config["data"]["train_transforms"].get("crop_size", [IMAGE_SIZE, IMAGE_SIZE])
    crop = (int(crop[0]), int(crop[1])) if isinstance(crop, (list, tuple)) else (int(crop), int(crop))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *crop, generator=generator).to(device)
    y = torch.randint(0, config["model"]["num_classes"], (batch, *crop), generator=generator).to(device)
    model = build_model({**config["model"], "name": model_name, "pretrained": None}, pretrained=False).to(device)
    optimizer = build_optimizer(model, OptimConfig(**config["optim"]))

    def timed(fn, rounds: int) -> float:
        times = []
        for _ in range(rounds + 1):  # the first is a warm-up
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    def step() -> None:
        logits = F.interpolate(model(x), size=crop, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    best: tuple[float, int] | None = None
    for threads in dict.fromkeys(thread_options):
        torch.set_num_threads(threads)
        seconds = timed(step, 4)
        if best is None or seconds < best[0]:
            best = (seconds, threads)
    step_s, threads = best
    torch.set_num_threads(threads)
    model.eval()
    forwards = []
    with torch.no_grad():
        for size in ((IMAGE_SIZE, IMAGE_SIZE * 3 // 2), (2 * IMAGE_SIZE, 3 * IMAGE_SIZE)):
            image = torch.randn(1, 3, *size, generator=generator).to(device)
            forwards.append(timed(lambda: model(image), 5))
    profile = forwards[1] * PROFILE_SIZE**2 / (2 * IMAGE_SIZE * 3 * IMAGE_SIZE)
    return Costs(step_s, forwards[0], forwards[1], profile), threads


def plan_steps(costs: Costs, budget_s: float, elapsed_s: float, runs: int, models: int, val_images: int,
               bench_rounds: int) -> tuple[int, dict[str, float]]:
    """Training steps per run so that the whole demo fits ``budget_s``; and the estimate.
    The plan aims at ``PLAN_FRACTION`` of the budget (the machine may get busier after the
    probe: other jobs slowed whole demos on a shared machine by up to 1.5x) and gives the
    steps a 5% margin (the other variants may be a little slower than the one timed)."""
    step = 1.05 * costs.step
    per_run = (4.0  # trainer set-up, checkpoints, loading for evaluation
               + VAL_POINTS * val_images * costs.forward  # validations during training
               + val_images * (costs.forward + costs.forward2x))  # the final scoring
    fixed = (models * bench_rounds * costs.forward_profile * 1.2  # latency
             + 5.0 + 1.0 * models  # profile (fake tensors), plots, report
             + 4 * models * costs.forward2x)  # prediction grid
    left = PLAN_FRACTION * budget_s - elapsed_s - runs * per_run - fixed
    steps = int(left / (runs * step)) if left > 0 else 0
    steps = max(MIN_STEPS, steps - steps % VAL_POINTS)
    estimate = {"train_s_per_run": steps * step, "eval_s_per_run": per_run, "fixed_s": fixed,
                "total_s": elapsed_s + runs * (per_run + steps * step) + fixed}
    return steps, estimate


# --------------------------------------------------------------------------- dataset and baseline

def prepare_dataset(root: Path, train: int, val: int) -> tuple[Path, bool, float]:
    from ..data.scenes import generate_scenes, scenes_ready

    size = (IMAGE_SIZE, IMAGE_SIZE)
    start = time.perf_counter()
    reused = scenes_ready(root, train, val, DATA_SEED, size)
    root = generate_scenes(root, train, val, DATA_SEED, size)
    return root, reused, time.perf_counter() - start


def dataset_meta(root: Path) -> dict[str, Any]:
    from ..data.scenes import SCENE_PALETTE

    meta = read_json(root / "dataset.json") or {}
    classes = [line.strip() for line in (root / "classes.txt").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    palette = meta.get("palette") or [list(c) for c in SCENE_PALETTE]
    return {"classes": classes, "palette": [tuple(int(v) for v in c) for c in palette], "meta": meta}


def train_pixel_counts(root: Path, num_classes: int) -> list[int]:
    """Labelled training pixels per class: from ``dataset.json`` when it has them (the
    generator counts while it writes), else by reading the training annotations."""
    meta = read_json(root / "dataset.json") or {}
    raw = (meta.get("pixels") or {}).get("train")
    if isinstance(raw, list) and len(raw) >= num_classes + 1:
        return [int(v) for v in raw[1:num_classes + 1]]  # raw value c + 1 is class c
    import numpy as np

    from ..data import build_dataset

    dataset = build_dataset("ade20k", root, "train", transforms="none", num_classes=num_classes)
    counts = np.zeros(num_classes, np.int64)
    for ref in dataset.samples:
        mask = dataset.load(ref)["mask"]
        counts += np.bincount(mask[mask != 255].ravel(), minlength=num_classes)[:num_classes]
    return counts.tolist()


def majority_baseline(root: Path, val_set, num_classes: int) -> dict[str, Any]:
    """Predict the most frequent training class everywhere, scored on ``val_set`` with the
    engine's metrics (the same confusion matrix as the models)."""
    import torch

    from ..engine import SegmentationMetrics

    from ..data import decode_mask, reduce_zero_label

    counts = train_pixel_counts(root, num_classes)
    majority = max(range(num_classes), key=lambda c: counts[c])
    metric = SegmentationMetrics(num_classes)
    for _, mask_path in val_set.samples:  # (image, annotation) paths: only the masks are read
        labels = torch.from_numpy(reduce_zero_label(decode_mask(mask_path, str(mask_path))).astype("int64"))
        metric.update(torch.full_like(labels, majority), labels)
    scores = metric.compute()
    return {"class": majority, **{k: 100 * float(scores[k]) for k in ("mIoU", "mAcc", "aAcc")},
            "train_fraction": counts[majority] / max(1, sum(counts))}


# --------------------------------------------------------------------------- one run

@dataclass
class RunOutcome:
    result: dict[str, Any]
    how: str  # "trained", "resumed", "evaluated", "reused"
    seconds: float


def _session_time(run_dir: Path) -> float:
    """Training seconds of earlier sessions of an unfinished run: each up to its last
    checkpoint (work after it is lost and redone)."""
    sessions = read_json(run_dir / SESSIONS_FILE) or []
    last = run_dir / "checkpoints" / "last.ckpt"
    total = 0.0
    for session in sessions:
        end = session.get("end")
        if end is None and last.is_file():
            end = min(last.stat().st_mtime, time.time())
        if end is not None and end > session["start"]:
            total += end - session["start"]
    return total


def _mark_session(run_dir: Path, start: float, end: float | None) -> None:
    sessions = read_json(run_dir / SESSIONS_FILE) or []
    last = run_dir / "checkpoints" / "last.ckpt"
    for session in sessions:  # close interrupted sessions at their last checkpoint
        if session.get("end") is None and session["start"] != start:
            mtime = last.stat().st_mtime if last.is_file() else session["start"]
            session["end"] = max(session["start"], mtime)
    if not sessions or sessions[-1]["start"] != start:
        sessions.append({"start": start, "end": end})
    else:
        sessions[-1]["end"] = end
    write_json(run_dir / SESSIONS_FILE, sessions)


def run_variant(config: dict[str, Any], run_dir: Path, eval_set, sizes: Sequence[int], device: str,
                progress: bool) -> RunOutcome:
    """Train (or resume) and score one run; reuse it when already finished with this recipe."""
    import yaml

    from ..engine import evaluate, load_for_eval, train
    from ..engine.experiment import CONFIG_FILE, resolve_config

    started = time.perf_counter()
    result = read_json(run_dir / RESULT_FILE)
    if result is not None and recipe_key(result.get("config", {})) == recipe_key(config):
        return RunOutcome(result, "reused", 0.0)
    if run_dir.exists():  # a run of another recipe, or unfinished: can it go on?
        previous = None
        if (run_dir / CONFIG_FILE).is_file():
            previous = resolve_config(yaml.safe_load((run_dir / CONFIG_FILE).read_text()) or {})
        if previous is None:  # killed before training started: nothing to keep
            shutil.rmtree(run_dir)
        elif recipe_key(previous) != recipe_key(config):  # keep the last one aside
            aside = run_dir.with_name(run_dir.name + ".previous")
            shutil.rmtree(aside, ignore_errors=True)
            run_dir.rename(aside)
            print(f"{run_dir} was trained with another recipe: moved to {aside}, training again", flush=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    trained = read_json(run_dir / TRAINED_FILE)
    how = "evaluated"
    if trained is None:
        resume = last.is_file()
        if not resume and run_dir.exists():  # nothing to resume from: start over
            shutil.rmtree(run_dir)
        how = "resumed" if resume else "trained"
        earlier = _session_time(run_dir) if resume else 0.0
        run_dir.mkdir(parents=True, exist_ok=True)
        session_start = time.time()
        _mark_session(run_dir, session_start, None)
        clock = time.perf_counter()
        trainer = train(config, run_dir, resume=resume, enable_progress_bar=progress)
        seconds = time.perf_counter() - clock
        _mark_session(run_dir, session_start, time.time())
        steps = int(trainer.global_step)
        if steps < config["trainer"]["max_steps"]:
            raise RuntimeError(f"{run_dir}: training stopped at step {steps} of {config['trainer']['max_steps']}")
        trained = {"steps": steps, "train_time_s": earlier + seconds, "sessions": len(read_json(
            run_dir / SESSIONS_FILE) or [])}
        write_json(run_dir / TRAINED_FILE, trained)
    model, _ = load_for_eval(last)  # the final weights (not the best validation: no selection on val)
    scores = evaluate(model, eval_set, sizes=list(sizes), device=device, progress=progress)
    classes = list(getattr(eval_set, "classes", ()))
    result = {
        "model": config["model"]["name"],
        "seed": config["seed"],
        "steps": trained["steps"],
        "train_time_s": trained["train_time_s"],
        "scores": {str(size): {**{k: 100 * float(scores[size][k]) for k in ("mIoU", "mAcc", "aAcc")},
                               "IoU": {name: _percent(v) for name, v in zip(classes, scores[size]["IoU"])}}
                   for size in sizes},
        "curve": read_curve(run_dir),
        "config": config,
    }
    write_json(run_dir / RESULT_FILE, result)
    return RunOutcome(result, how, time.perf_counter() - started)


def _percent(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else 100 * value


def read_curve(run_dir: Path) -> dict[str, list[list[float]]]:
    """``train/loss`` and ``val/mIoU`` against the step from the run's CSV logs (all
    sessions; a resumed session's values replace those of the steps it redid)."""
    curves: dict[str, dict[int, float]] = {"train/loss": {}, "val/mIoU": {}}
    for path in sorted((run_dir / "logs" / "csv").glob("version_*/metrics.csv"),
                       key=lambda p: int(p.parent.name.split("_")[-1])):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for key, points in curves.items():
                    value = row.get(key)
                    if value not in (None, "") and row.get("step") not in (None, ""):
                        # logged at the 0-based index of the step: the loss of step k + 1,
                        # the validation after k + 1 steps
                        points[int(row["step"]) + 1] = float(value)
    return {key: sorted([step, value] for step, value in points.items()) for key, points in curves.items()}


# --------------------------------------------------------------------------- profile and latency

def profile_models(models: Sequence[str], num_classes: int) -> dict[str, dict[str, float]]:
    from .profile import profile_model

    out = {}
    for name in models:
        prof = profile_model(name, (PROFILE_SIZE, PROFILE_SIZE), num_classes=num_classes)
        out[name] = {"params": prof.params, "gmacs": prof.executed.total / 1e9,
                     "gmacs_published": prof.published.total / 1e9}
    return out


def measure_latency(models: Sequence[str], num_classes: int, size: int, warmup: int, repeats: int,
                    cache: Path) -> tuple[dict[str, float], bool]:
    """Median CPU milliseconds of one ``size``² image per model, all timed in turns
    (``bench.time_in_turns``); cached in ``cache`` for the same models and settings."""
    import torch

    from ..models import create_model
    from .bench import time_in_turns

    key = {"models": list(models), "num_classes": num_classes, "size": size, "warmup": warmup,
           "repeats": repeats, "threads": torch.get_num_threads(), "torch": torch.__version__}
    cached = read_json(cache)
    if cached and cached.get("key") == key:
        return cached["median_ms"], True
    runners = {name: create_model(name, num_classes=num_classes).eval() for name in models}
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    times, _ = time_in_turns(runners, x, warmup, repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}
    write_json(cache, {"key": key, "median_ms": medians, "times_ms": times})
    return medians, False


# --------------------------------------------------------------------------- report and plots

@dataclass
class Summary:
    """Everything the report shows, per model (lists over seeds)."""

    models: list[str]
    sizes: list[int]
    results: dict[str, list[dict[str, Any]]]
    profile: dict[str, dict[str, float]]
    latency_ms: dict[str, float]
    latency_size: int
    baseline: dict[str, Any]
    classes: list[str]
    palette: list[tuple[int, int, int]]
    config: dict[str, Any]
    dataset: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self, model: str, metric: str, size: int | None = None) -> list[float]:
        size = self.sizes[0] if size is None else size
        return [r["scores"][str(size)][metric] for r in self.results[model]]


def write_report(summary: Summary, out: Path, plots: dict[str, Path]) -> Path:
    s0, s1 = summary.sizes[0], summary.sizes[-1]
    config = summary.config
    threads = summary.extra.get("threads", "?")
    warmup = config["optim"]["warmup"]
    warmup = f"{warmup:.0%} of the steps" if isinstance(warmup, float) else f"{warmup} steps"
    seeds = sorted({r["seed"] for runs in summary.results.values() for r in runs})
    n = len(seeds)
    lines = [
        "# segformer-lab demo",
        "",
        f"Scene parsing on the embedded scenes dataset ({summary.dataset['train']} training images of "
        f"{IMAGE_SIZE}x{IMAGE_SIZE}, {summary.dataset['val']} validation images of varied sizes, "
        f"{len(summary.classes)} classes), every model trained from scratch with one recipe "
        f"(`configs/demo.yaml`): {config['trainer']['max_steps']} steps of batch {config['data']['batch_size']}, "
        f"AdamW lr {config['optim']['lr']:g} (weight decay {config['optim']['weight_decay']:g}), warmup over "
        f"{warmup} then poly {config['optim']['poly_power']:g} decay; "
        + (f"seed {seeds[0]}." if n == 1 else f"{n} seeds ({', '.join(map(str, seeds))}), mean ± sample std."),
        f"Machine: {usable_cores()} usable CPU cores, torch {summary.extra.get('torch', '?')}, "
        f"{threads} thread{'s' if threads != 1 else ''}. Steps: {summary.extra.get('plan', '?')}.",
        "",
        f"Scores of the final weights on the validation split in percent, each image resized so that its short "
        f"side is {s0} (the training size); **mIoU @{s1}**: short side {s1} (2x, extrapolation). Labels stay at "
        f"their own size. Params and GMACs (executed, {len(summary.classes)} classes) at {PROFILE_SIZE}x"
        f"{PROFILE_SIZE}; CPU latency: median of one {summary.latency_size}x{summary.latency_size} image, batch 1, "
        f"{threads} thread{'s' if threads != 1 else ''}, all models timed in turns. Training time includes the "
        f"{VAL_POINTS} validations.",
        "",
        f"| model | mIoU | mAcc | aAcc | params | GMACs @{PROFILE_SIZE}² | CPU ms @{summary.latency_size}² "
        f"| training time | mIoU @{s1} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in summary.models:
        prof, ms = summary.profile[model], summary.latency_ms.get(model)
        times = [r["train_time_s"] for r in summary.results[model]]
        mean_time = statistics.fmean(times)
        lines.append(
            f"| {model} | {pm(summary.values(model, 'mIoU'))} | {pm(summary.values(model, 'mAcc'))} "
            f"| {pm(summary.values(model, 'aAcc'))} | {prof['params']:,} | {prof['gmacs']:.2f} "
            f"| {'—' if ms is None else f'{ms:.0f}'} | {duration(mean_time)} | {pm(summary.values(model, 'mIoU', s1))} |")
    base = summary.baseline
    lines.append(f"| majority class ({summary.classes[base['class']]}) | {base['mIoU']:.1f} | {base['mAcc']:.1f} "
                 f"| {base['aAcc']:.1f} | — | — | — | — | {base['mIoU']:.1f} |")
    best = max(summary.models, key=lambda m: mean_std(summary.values(m, "mIoU"))[0])
    best_miou = mean_std(summary.values(best, "mIoU"))[0]
    lines += [
        "",
        f"Best: **{best}**, mIoU {best_miou:.1f} against {base['mIoU']:.1f} for always predicting "
        f"'{summary.classes[base['class']]}' (the most frequent training class, "
        f"{100 * base['train_fraction']:.0f}% of the labelled training pixels).",
        "",
        "Per-class IoU (short side {}):".format(s0),
        "",
        "| class | " + " | ".join(summary.models) + " |",
        "| --- | " + " | ".join("---:" for _ in summary.models) + " |",
    ]
    for name in summary.classes:
        cells = []
        for model in summary.models:
            values = [r["scores"][str(s0)]["IoU"].get(name) for r in summary.results[model]]
            cells.append(pm([v for v in values if v is not None]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Plots", ""]
    titles = {"miou_vs_gmacs": "mIoU vs GMACs", "training_curves": "Training curves",
              "miou_vs_size": "mIoU vs evaluation size", "predictions": "Predictions"}
    for key, path in plots.items():
        lines += [f"### {titles.get(key, key)}", "", f"![{titles.get(key, key)}]({path.name})", ""]
    lines += [
        "## Reproduce",
        "",
        "```bash",
        f"segformer-lab demo --out {out} --steps {config['trainer']['max_steps']}"
        + (f" --seeds {n}" if n > 1 else "") + " --models " + " ".join(summary.models),
        "```",
        "",
        "Run directories (config, checkpoints, CSV/TensorBoard logs, result.json): "
        + ", ".join(f"`runs/{model}-seed{seed}`" for model in summary.models for seed in seeds[:1]) + ", ...",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _colours(models: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {model: cmap(i % 10) for i, model in enumerate(models)}


def make_plots(summary: Summary, out: Path, grid: dict[str, Any] | None) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    colours = _colours(summary.models)
    s0, s1 = summary.sizes[0], summary.sizes[-1]
    base = summary.baseline
    paths: dict[str, Path] = {}

    # mIoU vs GMACs
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for model in summary.models:
        mean, std = mean_std(summary.values(model, "mIoU"))
        ax.errorbar(summary.profile[model]["gmacs"], mean, yerr=std if len(summary.results[model]) > 1 else None,
                    fmt="o", capsize=4, color=colours[model], label=model, markersize=7, alpha=0.85)
    ax.axhline(base["mIoU"], color="grey", linestyle="--", label="majority class")
    ax.set_xlabel(f"GMACs at {PROFILE_SIZE}x{PROFILE_SIZE} (executed)")
    ax.set_ylabel(f"val mIoU (%), short side {s0}")
    ax.set_title("Accuracy vs compute")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    paths["miou_vs_gmacs"] = _save(fig, out / "miou_vs_gmacs.png")

    # training curves (mean over seeds at the steps all seeds logged)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in summary.models:
        for key, ax in (("train/loss", left), ("val/mIoU", right)):
            per_seed = [dict((int(s), v) for s, v in r["curve"][key]) for r in summary.results[model]]
            steps = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
            if not steps:
                continue
            values = np.array([[p[s] for s in steps] for p in per_seed])
            mean = values.mean(0)
            if key == "train/loss":
                ax.plot(steps, mean, color=colours[model], label=model, linewidth=1.4)
                if len(per_seed) > 1:
                    std = values.std(0, ddof=1)
                    ax.fill_between(steps, mean - std, mean + std, color=colours[model], alpha=0.15)
            else:
                ax.errorbar(steps, mean, yerr=values.std(0, ddof=1) if len(per_seed) > 1 else None, marker="o",
                            capsize=3, color=colours[model], label=model)
    right.axhline(base["mIoU"], color="grey", linestyle="--", label="majority class")
    right.set_ylim(bottom=0)
    left.set_title("training loss")
    left.set_xlabel("step")
    left.set_ylabel("cross-entropy")
    right.set_title(f"validation mIoU (short side {s0})")
    right.set_xlabel("step")
    right.set_ylabel("mIoU (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    paths["training_curves"] = _save(fig, out / "training_curves.png")

    # mIoU vs evaluation size
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for model in summary.models:
        stats = [mean_std(summary.values(model, "mIoU", size)) for size in summary.sizes]
        ax.errorbar(summary.sizes, [m for m, _ in stats],
                    yerr=[s for _, s in stats] if len(summary.results[model]) > 1 else None,
                    marker="o", capsize=4, color=colours[model], label=model)
    ax.axhline(base["mIoU"], color="grey", linestyle="--", label="majority class")
    ax.axvline(s0, color="black", alpha=0.2)
    ax.set_xticks(summary.sizes)
    ax.set_xlabel("evaluation short side (px); training size {}".format(s0))
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(f"Resolution extrapolation ({s0} → {s1})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths["miou_vs_size"] = _save(fig, out / "miou_vs_size.png")

    if grid is not None:
        paths["predictions"] = prediction_grid(grid, summary, out / "predictions.png")
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def predictions(models: dict[str, Any], val_set, indices: Sequence[int], size: int, device: str) -> dict[str, Any]:
    """Images, labels and each model's prediction (input short side ``size``, upsampled
    to the label size) for the grid."""
    import torch

    from ..engine import predict_logits
    from ..engine.evaluation import short_side_resize

    rows = []
    with torch.no_grad():
        for index in indices:
            raw = val_set.load(val_set.samples[index])
            sample = val_set[index]
            x = short_side_resize(sample["pixel_values"][None].to(device), size)
            preds = {name: predict_logits(model, x, sample["labels"].shape).argmax(1)[0].cpu().numpy()
                     for name, model in models.items()}
            rows.append({"image": raw["image"], "labels": raw["mask"], "preds": preds,
                         "name": Path(raw["path"]).stem})
    return {"rows": rows}


def prediction_grid(grid: dict[str, Any], summary: Summary, path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    palette = np.zeros((256, 3), np.uint8)
    palette[:len(summary.palette)] = summary.palette  # 255 (unlabelled) stays black
    rows = grid["rows"]
    columns = ["input", "ground truth", *summary.models]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.3 * len(columns), 2.0 * len(rows) + 0.9),
                             squeeze=False)
    for r, row in enumerate(rows):
        panels = [row["image"], palette[row["labels"]], *(palette[row["preds"][m]] for m in summary.models)]
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
        h, w = row["labels"].shape
        axes[r][0].set_ylabel(f"{row['name']}\n{h}x{w}", fontsize=7)
    handles = [Patch(color=np.array(summary.palette[i]) / 255, label=name) for i, name in enumerate(summary.classes)]
    handles.append(Patch(color="black", label="unlabelled"))
    fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- the command

def add_parser(sub: argparse._SubParsersAction, command: str) -> None:
    p = sub.add_parser(
        command,
        help="the main job: train and compare SegFormer variants on an embedded dataset, with a report",
        description="Generate the scenes dataset, train SegFormer-B0, its two RoPE variants and BoostFormer-B0 "
        "from scratch with one recipe (configs/demo.yaml) and seed, score them at the training size and at 2x, "
        "profile and time them, and write OUT/report.md with plots. An interrupted demo picks up where it "
        "stopped: finished runs are reused, unfinished ones resume.",
    )
    p.add_argument("--out", default="outputs/demo", metavar="DIR", help="output directory (default: outputs/demo)")
    p.add_argument("--budget", type=float, default=None, metavar="MIN",
                   help=f"wall-clock minutes for the whole demo, dataset included: the training steps per run are "
                   f"chosen from a few timed steps so that the demo is planned to take {PLAN_FRACTION * 100:.0f}%% of it "
                   f"(default: {DEFAULT_BUDGET_MIN:g})")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="training steps per run, instead of fitting the budget")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="runs per model with seeds 0..N-1 (added to the recipe's); mean ± std (default: 1)")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="MODEL",
                   help=f"models to train (default: {' '.join(DEFAULT_MODELS)}; boostformer_b0_rope_mixed "
                   "is a good addition)")
    p.add_argument("--data-dir", metavar="DIR", help="where the scenes dataset is generated or reused "
                   "(default: OUT/scenes)")
    p.add_argument("--train-images", type=int, default=DEFAULT_TRAIN_IMAGES, metavar="N",
                   help=f"training images (default: {DEFAULT_TRAIN_IMAGES}); small values for a quick look")
    p.add_argument("--val-images", type=int, default=DEFAULT_VAL_IMAGES, metavar="N",
                   help=f"validation images (default: {DEFAULT_VAL_IMAGES})")
    p.add_argument("--config", metavar="YAML", help="the recipe (default: configs/demo.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a recipe value (as 'segformer-lab train --set'), e.g. optim.lr=1e-3")
    p.add_argument("--latency-size", type=int, default=PROFILE_SIZE, metavar="S",
                   help=f"side of the square image timed on the CPU (default: {PROFILE_SIZE})")
    p.add_argument("--latency-repeats", type=int, default=3, metavar="N",
                   help="timed rounds after one warm-up round (default: 3; 0 skips timing)")
    p.add_argument("--grid-images", type=int, default=4, metavar="N",
                   help="validation images in the prediction grid (default: 4)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads (default: 1 or all cores, whichever trains faster here)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _quiet_lightning() -> None:
    """Lightning's progress bar stays; its INFO lines (accelerators, tips, stops) go."""
    import lightning.pytorch  # noqa: F401  (it sets its loggers' level on import)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from lightning.fabric.utilities.warnings import PossibleUserWarning
    except ImportError:  # pragma: no cover
        PossibleUserWarning = UserWarning  # noqa: N806
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*val_check_interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning against torch 2.13
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # resuming


def make_plan(args: argparse.Namespace, out: Path, base: dict[str, Any], models: list[str], runs: int,
              val_images: int, bench_rounds: int, clock: float) -> tuple[dict[str, Any], int, str]:
    """The training steps (and the recipe they belong to) and the thread count: explicit,
    kept from an earlier run of this demo in ``out``, or fitted to the budget now."""
    import torch

    kept = read_json(out / PLAN_FILE)
    if (kept and recipe_key(kept.get("recipe", {})) == recipe_key(base)
            and (args.steps is None or args.steps == kept.get("steps"))
            and (args.budget is None or args.budget == kept.get("budget_min"))):
        threads = args.threads or int(kept.get("threads") or torch.get_num_threads())
        return (set_steps(base, int(kept["steps"])), threads,
                f"{kept['steps']} steps per run, kept from {out / PLAN_FILE} ({kept.get('how', '')})")
    cores = usable_cores()
    options = [args.threads] if args.threads else sorted({1, cores})
    if args.steps is not None:
        threads = args.threads or torch.get_num_threads()
        steps, note, extra = args.steps, "given", {}
    else:
        budget = DEFAULT_BUDGET_MIN if args.budget is None else args.budget
        costs, threads = probe(base, models[0], device_of(base), options)
        steps, estimate = plan_steps(costs, budget * 60, time.perf_counter() - clock, runs, len(models),
                                     val_images, bench_rounds)
        note = (f"fitted to a {budget:g}-minute budget: {costs.step:.2f} s per training step with {threads} "
                f"thread{'s' if threads > 1 else ''} (fastest of {', '.join(map(str, options))}), "
                f"expected total {duration(estimate['total_s'])}")
        extra = {"costs": costs.__dict__, "estimate": estimate}
    config = set_steps(base, steps)
    write_json(out / PLAN_FILE, {"steps": config["trainer"]["max_steps"], "budget_min": args.budget,
                                 "threads": threads, "recipe": base, "how": note, **extra})
    return config, threads, f"{config['trainer']['max_steps']} steps per run, {note}"


@contextlib.contextmanager
def exclusive(out: Path):
    """One demo at a time in ``out`` (two would train the same runs into the same files)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with (out / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"another demo is running in {out} (it holds {out / LOCK_FILE})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(args: argparse.Namespace) -> int:
    clock = time.perf_counter()
    from ..models import get_config

    models = list(dict.fromkeys(get_config(name).name for name in args.models))  # unknown names fail here
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.steps is not None and args.steps < VAL_POINTS:
        raise ValueError(f"--steps must be >= {VAL_POINTS}, got {args.steps}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        try:
            return _run(args, out, models, clock)
        except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit(1)
            print(f"\ninterrupted: run the same command again to continue (finished runs are kept, the "
                  f"unfinished one resumes from its last checkpoint in {out / 'runs'})", flush=True)
            raise


def _run(args: argparse.Namespace, out: Path, models: list[str], clock: float) -> int:
    import torch

    from ..data import build_dataset

    _quiet_lightning()
    progress = not args.no_progress
    runs_total = len(models) * args.seeds
    stages = Stages(2 + runs_total + 3)  # dataset, baseline, runs, profile, latency, report

    # 1. the dataset
    data_dir = Path(args.data_dir) if args.data_dir else out / "scenes"
    root, reused, seconds = prepare_dataset(data_dir, args.train_images, args.val_images)
    info = dataset_meta(root)
    classes, num_classes = info["classes"], len(info["classes"])
    stages.finish(f"dataset {'reused' if reused else 'generated'}: {root} ({args.train_images} train, "
                  f"{args.val_images} val images, {num_classes} classes)", None if reused else seconds)

    base = load_recipe(args.config, args.overrides)
    base["data"]["root"], base["model"]["num_classes"] = str(root), num_classes
    device = device_of(base)
    latency_rounds = 1 + args.latency_repeats if args.latency_repeats > 0 else 0
    config, threads, plan_note = make_plan(args, out, base, models, runs_total, args.val_images, latency_rounds,
                                           clock)
    torch.set_num_threads(threads)
    print(f"plan: {plan_note}", flush=True)

    # 2. the majority-class baseline
    start = time.perf_counter()
    eval_set = build_dataset("ade20k", root, config["data"]["val_split"], transforms="none", num_classes=num_classes)
    baseline = majority_baseline(root, eval_set, num_classes)
    stages.finish(f"baseline: always '{classes[baseline['class']]}': mIoU {baseline['mIoU']:.1f}, "
                  f"aAcc {baseline['aAcc']:.1f}", time.perf_counter() - start)

    # 3. train and score every run
    sizes = [IMAGE_SIZE, 2 * IMAGE_SIZE]
    results: dict[str, list[dict[str, Any]]] = {model: [] for model in models}
    base_seed = int(config["seed"])
    for model in models:
        for k in range(args.seeds):
            seed = base_seed + k
            run_config = copy.deepcopy(config)
            run_config["model"]["name"], run_config["seed"] = model, seed
            run_dir = out / "runs" / f"{model}-seed{seed}"
            outcome = run_variant(run_config, run_dir, eval_set, sizes, device, progress)
            results[model].append(outcome.result)
            score = outcome.result["scores"]
            text = (f"{outcome.how} {model} seed {seed}: mIoU {score[str(sizes[0])]['mIoU']:.1f}, "
                    f"@{sizes[1]} {score[str(sizes[1])]['mIoU']:.1f}")
            if outcome.how == "reused":
                stages.finish(f"{text} (finished earlier, {run_dir})")
            else:
                stages.finish(text, outcome.seconds)

    # 4. parameters, MACs, latency
    start = time.perf_counter()
    profile = profile_models(models, num_classes)
    stages.finish("profiled: " + ", ".join(f"{m} {profile[m]['gmacs']:.2f} GMACs" for m in models),
                  time.perf_counter() - start)
    start = time.perf_counter()
    latency: dict[str, float] = {}
    if args.latency_repeats > 0:
        latency, cached = measure_latency(models, num_classes, args.latency_size, 1, args.latency_repeats,
                                          out / "latency.json")
        text = ", ".join(f"{m} {latency[m]:.0f} ms" for m in models)
        stages.finish(f"latency @{args.latency_size}² (CPU, batch 1): {text}" + (" (reused)" if cached else ""),
                      None if cached else time.perf_counter() - start)
    else:
        stages.finish("latency: skipped (--latency-repeats 0)")

    # 5. report and plots
    start = time.perf_counter()
    grid = None
    if args.grid_images > 0:
        from ..engine import load_for_eval

        trained = {m: load_for_eval(out / "runs" / f"{m}-seed{base_seed}" / "checkpoints" / "last.ckpt")[0]
                   for m in models}
        count = min(args.grid_images, len(eval_set))
        indices = sorted({round(i * (len(eval_set) - 1) / max(1, count - 1)) for i in range(count)})
        grid = predictions(trained, eval_set, indices, sizes[0], device)
    summary = Summary(models, sizes, results, profile, latency, args.latency_size, baseline, classes,
                      info["palette"], config, {"train": args.train_images, "val": args.val_images},
                      {"threads": torch.get_num_threads(), "torch": torch.__version__, "plan": plan_note})
    plots = make_plots(summary, out, grid)
    report = write_report(summary, out, plots)
    write_json(out / "results.json", {
        "models": models, "sizes": sizes, "baseline": {**baseline, "class_name": classes[baseline["class"]]},
        "profile": profile, "latency_ms": latency, "latency_size": args.latency_size,
        "runs": {m: [{k: v for k, v in r.items() if k != "config"} for r in rs] for m, rs in results.items()},
        "config": config,
    })
    stages.finish("report written", time.perf_counter() - start)

    best = max(models, key=lambda m: mean_std(summary.values(m, "mIoU"))[0])
    print(f"best: {best} mIoU {pm(summary.values(best, 'mIoU'))} vs majority class {baseline['mIoU']:.1f} "
          f"(total {duration(time.perf_counter() - clock)})")
    print(f"report: {report}")
    for path in plots.values():
        print(f"plot: {path}")
    print(f"results: {out / 'results.json'}")
    return 0
