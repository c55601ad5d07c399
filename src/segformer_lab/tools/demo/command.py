"""``segformer-lab demo``: the command. It runs the demo's stages in order, one line per
finished stage (the package docstring says what each does), under a lock on the output
directory, and says how to continue when interrupted."""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning.pytorch  # noqa: F401  (it sets its loggers' level on import: quiet_lightning comes after)
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning

from ..._io import write_json
from ...engine import load_for_eval
from ...models import get_config
from .budget import DEFAULT_BUDGET_MIN, PLAN_FILE, PLAN_FRACTION, Job, demo_fixed_s, make_plan, usable_cores
from .dataset import (DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES, IMAGE_SIZE, dataset_meta, majority_baseline,
                      prepare_dataset, spread_indices)
from .formatting import duration, mean_std, pm
from .measure import PROFILE_SIZE, measure_latency, profile_models
from .plots import make_plots, predictions
from .recipe import VAL_POINTS, device_of, load_recipe
from .report import Summary, write_report
from .runs import last_checkpoint, run_dir_of, run_variant, scoring_set

DEFAULT_MODELS = ("segformer_b0", "segformer_b0_rope_axial", "segformer_b0_rope_mixed", "boostformer_b0")
LOCK_FILE = ".demo.lock"
OWNER_FILE = ".segformer-lab-output"  # written into OUT: the demo's or a study's, whose run directories it replaces


class Stages:
    """``[k/N] what happened (time)`` lines, one per finished stage."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def finish(self, text: str, seconds: float | None = None) -> None:
        self.done += 1
        suffix = f" ({duration(seconds)})" if seconds is not None else ""
        print(f"[{self.done}/{self.total}] {text}{suffix}", flush=True)


def quiet_lightning() -> None:
    """Lightning's progress bar stays; its INFO lines (accelerators, tips, stops) go."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*val_check_interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning against torch 2.13
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # resuming


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
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


def run_stages(args: argparse.Namespace, out: Path, models: list[str], clock: float) -> int:
    """The demo's stages in order, into ``out`` (``run`` checks the arguments and holds the lock)."""
    quiet_lightning()
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
    eval_set = scoring_set(root, base, num_classes)
    latency_rounds = 1 + args.latency_repeats if args.latency_repeats > 0 else 0
    job = Job(base, {m: {**base, "model": {**base["model"], "name": m}} for m in models},
              {m: args.seeds for m in models}, (1, 2), lambda costs: demo_fixed_s(costs, latency_rounds))
    config, threads, plan_note = make_plan(out, job, eval_set, clock, steps=args.steps, budget=args.budget,
                                           threads=args.threads)
    torch.set_num_threads(threads)
    print(f"plan: {plan_note}", flush=True)

    # 2. the majority-class baseline
    start = time.perf_counter()
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
            run_dir = run_dir_of(out, model, seed)
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
        trained = {m: load_for_eval(last_checkpoint(run_dir_of(out, m, base_seed)))[0] for m in models}
        grid = predictions(trained, eval_set, spread_indices(args.grid_images, len(eval_set)), sizes[0], device)
    summary = Summary(models, sizes, results, profile, latency, args.latency_size, baseline, classes,
                      info["palette"], config, {"train": args.train_images, "val": args.val_images},
                      {"threads": torch.get_num_threads(), "cores": usable_cores(), "torch": torch.__version__,
                       "plan": plan_note})
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


def run(args: argparse.Namespace) -> int:
    clock = time.perf_counter()
    models = list(dict.fromkeys(get_config(name).name for name in args.models))  # unknown names fail here
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.steps is not None and args.steps < VAL_POINTS:
        raise ValueError(f"--steps must be >= {VAL_POINTS}, got {args.steps}")
    return resumable(Path(args.out), lambda out: run_stages(args, out, models, clock))


def check_output(out: Path) -> None:
    """Refuse an ``out`` that holds files the demo or a study did not write: they replace
    and remove run directories under it. Theirs: new or empty, or with the owner file (or
    the lock or plan an earlier version wrote)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if names and not {OWNER_FILE, LOCK_FILE, PLAN_FILE} & set(names):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ValueError(f"--out {out} holds files this command did not write ({shown}); they are left as they "
                         "are: choose a new or empty directory")


def resumable(out: Path, stages: Callable[[Path], int]) -> int:
    """``stages(out)`` under the lock on ``out`` (created, or one of ours: ``check_output``),
    the project's INFO lines held back; interrupted, one line says how to go on (the same
    command again: finished runs are reused, the unfinished one resumes)."""
    check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    project_log = logging.getLogger("segformer_lab")
    level = project_log.level
    with exclusive(out):
        if not (out / OWNER_FILE).is_file():
            write_json(out / OWNER_FILE, {"written_by": "segformer-lab demo / study"})
        # the stage lines say what was trained and loaded: no "loaded ..." line per checkpoint
        project_log.setLevel(max(level, logging.WARNING))
        try:
            return stages(out)
        except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit(1)
            print(f"\ninterrupted: run the same command again to continue (finished runs are kept, the "
                  f"unfinished one resumes from its last checkpoint in {out / 'runs'})", flush=True)
            raise
        finally:
            project_log.setLevel(level)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Generate the scenes dataset, train SegFormer-B0, its two RoPE variants and BoostFormer-B0 "
        "from scratch with one recipe (the packaged demo.yaml) and seed, score them at the training size and at 2x, "
        "profile and time them, and write OUT/report.md with plots. An interrupted demo picks up where it "
        "stopped: finished runs are reused, unfinished ones resume."
    )
    p.add_argument("--out", default="outputs/demo", metavar="DIR", help="output directory (default: outputs/demo)")
    p.add_argument("--budget", type=float, default=None, metavar="MIN",
                   help=f"wall-clock minutes for the whole demo, dataset included: the training steps per run are "
                   f"calibrated on a few real training steps so that the demo is planned to take "
                   f"{PLAN_FRACTION * 100:.0f}%% of it (default: {DEFAULT_BUDGET_MIN:g})")
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
    p.add_argument("--latency-size", type=int, default=PROFILE_SIZE, metavar="S",
                   help=f"side of the square image timed on the CPU (default: {PROFILE_SIZE})")
    p.add_argument("--latency-repeats", type=int, default=3, metavar="N",
                   help="timed rounds after one warm-up round (default: 3; 0 skips timing)")
    p.add_argument("--grid-images", type=int, default=4, metavar="N",
                   help="validation images in the prediction grid (default: 4)")
    add_run_arguments(p)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a job of runs on the demo's machinery (the demo, ``study``): the recipe,
    its overrides, threads, progress bars."""
    p.add_argument("--config", metavar="YAML", help="the recipe (default: demo.yaml of segformer_lab.tools.demo)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a recipe value (as 'segformer-lab train --set'), e.g. optim.lr=1e-3")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads (default: 1 or all cores, whichever trains faster here)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
