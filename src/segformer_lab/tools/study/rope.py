"""``segformer-lab study rope``: does RoPE help SegFormer on the embedded scenes, and by how
much, with intervals that can resolve a one-point effect.

Stages: the two datasets (the scenes, and the position-free control: every scene upside
down with probability 1/2), the plan (every variant's training step timed, the steps per
run fitted to ``--budget``), the runs (seed by seed, every variant of a seed before the
next seed, so an interrupted study already holds paired results; each run trained,
resumed or reused through the demo's ``run_variant``), then ``results.json``,
``report.md`` and the plot. Rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..._io import write_json
from ..demo.budget import Job, make_plan, usable_cores
from ..demo.command import Stages, add_run_arguments, quiet_lightning, resumable
from ..demo.dataset import IMAGE_SIZE, dataset_meta, prepare_dataset
from ..demo.recipe import device_of, load_recipe
from ..demo.runs import finished_result, run_variant, scoring_set
from .report import plot_differences, write_report
from .summary import position_effect, summarise
from .variants import BY_NAME, CONTROL_VARIANTS, VARIANTS, initialisation, run_config, select

NATURAL, CONTROL = "scenes", "scenes_position_free"
MULTIPLES = (1, 2, 3)
DEFAULT_BUDGET_MIN = 90.0
# 100 validation images: every variant scores the same ones, so their sampling noise
# cancels in a paired difference, and at 200 scoring took two thirds of a 90-minute study
FULL = {"seeds": 5, "train_images": 2000, "val_images": 100}
QUICK = {"seeds": 2, "train_images": 200, "val_images": 24, "steps": 40}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Seeds, image counts and steps: the options given, else ``--quick``'s or the full study's."""
    defaults = QUICK if args.quick else FULL
    chosen = {key: getattr(args, key) if getattr(args, key) is not None else defaults.get(key)
              for key in ("seeds", "train_images", "val_images", "steps")}
    if chosen["seeds"] < 2:
        raise ValueError(f"--seeds must be >= 2 for an interval, got {chosen['seeds']}")
    if chosen["steps"] is not None and chosen["steps"] < 1:
        raise ValueError(f"--steps must be >= 1, got {chosen['steps']}")
    if chosen["train_images"] < 1 or chosen["val_images"] < 1:
        raise ValueError("--train-images and --val-images must be >= 1")
    return chosen


def run_one(out: Path, config: dict[str, Any], variant: str, seed: int, dataset: str, eval_set, sizes: list[int],
            progress: bool):
    """Train (from the seed's shared initialisation), resume or reuse one run, and score it."""
    init = out / "init" / f"{variant}-seed{seed}"
    run_dir = out / "runs" / dataset / f"{variant}-seed{seed}"
    config = run_config(config, BY_NAME[variant], seed, init)
    try:
        if finished_result(run_dir, config) is None:
            initialisation(config, BY_NAME[variant], seed).save_pretrained(init)
        return run_variant(config, run_dir, eval_set, sizes, device_of(config), progress)
    finally:
        shutil.rmtree(init, ignore_errors=True)  # the run's config.yaml says how to rebuild it


def run_study(args: argparse.Namespace, out: Path, clock: float) -> int:
    quiet_lightning()
    chosen = settings(args)
    variants = select(args.variants, tuple(BY_NAME))
    control = [] if args.no_control else select(args.control_variants, CONTROL_VARIANTS)
    seeds = chosen["seeds"]
    plan = {NATURAL: variants, CONTROL: control}
    stages = Stages((1 + bool(control)) + 1 + seeds * (len(variants) + len(control)) + 1)  # data, plan, runs, report

    roots, eval_sets = {}, {}
    for dataset, position_free in ((NATURAL, False), (CONTROL, True)):
        if not plan[dataset]:
            continue
        name = f"{dataset}-{chosen['train_images']}x{chosen['val_images']}"
        root, reused, seconds = prepare_dataset(out / "data" / name, chosen["train_images"], chosen["val_images"],
                                                position_free)
        roots[dataset] = root
        stages.finish(f"{dataset}: {'reused' if reused else 'generated'} {root}", None if reused else seconds)
    classes = dataset_meta(roots[NATURAL])["classes"]
    base = load_recipe(args.config, args.overrides)
    base["model"]["num_classes"] = len(classes)
    for dataset, root in roots.items():
        eval_sets[dataset] = scoring_set(root, base, len(classes))
    base["data"]["root"] = str(roots[NATURAL])
    runs = {v.name: seeds * sum(v in plan[d] for d in plan) for v in variants + control}
    job = Job(base, {name: run_config(base, BY_NAME[name], 0, None) for name in runs}, runs, MULTIPLES,
              lambda costs: 10.0,  # results, report and plot
              val_points=0)  # no validation while training: the final weights are scored at every size
    config, threads, plan_note = make_plan(out, job, eval_sets[NATURAL], clock, steps=chosen["steps"],
                                           budget=args.budget, threads=args.threads, default_budget=DEFAULT_BUDGET_MIN)
    torch.set_num_threads(threads)
    stages.finish(f"plan: {plan_note}")

    sizes = [m * IMAGE_SIZE for m in MULTIPLES]
    rows = []
    base_seed = int(config["seed"])
    for k in range(seeds):
        for dataset, members in plan.items():
            for variant in members:
                dataset_config = {**config, "data": {**config["data"], "root": str(roots[dataset])}}
                outcome = run_one(out, dataset_config, variant.name, base_seed + k, dataset, eval_sets[dataset],
                                  sizes, not args.no_progress)
                scores = {size: outcome.result["scores"][str(size)]["mIoU"] for size in sizes}
                rows += [{"variant": variant.name, "seed": base_seed + k, "dataset": dataset, "size": size,
                          "mIoU": miou} for size, miou in scores.items()]
                text = f"{outcome.how} {variant.name} seed {base_seed + k} on {dataset}: mIoU " + ", ".join(
                    f"@{size} {miou:.1f}" for size, miou in scores.items())
                stages.finish(text, None if outcome.how == "reused" else outcome.seconds)

    summary = summarise(rows)
    datasets = [d for d in plan if plan[d]]
    command = " ".join([
        "segformer-lab study rope --out", shlex.quote(str(out)), "--seeds", str(seeds),
        "--steps", str(config["trainer"]["max_steps"]), "--train-images", str(chosen["train_images"]),
        "--val-images", str(chosen["val_images"]), "--variants", *(v.name for v in variants),
        *(["--control-variants", *(v.name for v in control)] if control else ["--no-control"]),
        *(f"--set {shlex.quote(o)}" for o in args.overrides)])
    results = {
        "runs": rows, "summary": summary, "sizes": sizes, "datasets": datasets,
        "position_effect": position_effect(rows, summary, NATURAL, CONTROL) if CONTROL in datasets else [],
        "meta": {"seeds": [base_seed + k for k in range(seeds)], "train_images": chosen["train_images"],
                 "val_images": chosen["val_images"], "threads": torch.get_num_threads(), "cores": usable_cores(),
                 "torch": torch.__version__, "plan": plan_note, "wall_s": time.perf_counter() - clock,
                 "command": command},
        "config": config,
    }
    write_json(out / "results.json", results)
    plot = plot_differences(summary, datasets, sizes, out / "paired_differences.png")
    report = write_report(out, results, plot)
    stages.finish("report written")
    print(f"report: {report}\nresults: {out / 'results.json'}\nplot: {plot}")
    return 0


def run(args: argparse.Namespace) -> int:
    clock = time.perf_counter()
    return resumable(Path(args.out), lambda out: run_study(args, out, clock))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train SegFormer-B0, its RoPE variants (axial and mixed, keys at the window centres or the RoPE project's "
        "pooled keys, theta 10 or 100) and BoostFormer-B0 with and without RoPE on the embedded scenes over paired "
        "seeds, score each at 1x, 2x and 3x the training size, and report every mean and every paired difference "
        "to the baseline with its 95% interval; the baseline and two RoPE variants again on a position-free "
        "control. Rerunning the same command continues where it stopped."
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (datasets, runs, report)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help=f"paired seeds per variant (default: {FULL['seeds']}; --quick: {QUICK['seeds']})")
    p.add_argument("--budget", type=float, default=None, metavar="MIN",
                   help=f"wall-clock minutes for the whole study: every variant's training step is timed and the "
                   f"steps per run fitted to it (default: {DEFAULT_BUDGET_MIN:g})")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="training steps per run, instead of a budget")
    p.add_argument("--quick", action="store_true",
                   help=f"a small study to try the command: {QUICK['seeds']} seeds, {QUICK['train_images']} training "
                   f"and {QUICK['val_images']} validation images, {QUICK['steps']} steps (minutes on 2 cores)")
    p.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help=f"variants to train (default: all: {', '.join(v.name for v in VARIANTS)}); their "
                   "baselines are added")
    p.add_argument("--control-variants", nargs="+", default=None, metavar="NAME",
                   help=f"variants repeated on the position-free scenes (default: {', '.join(CONTROL_VARIANTS)})")
    p.add_argument("--no-control", action="store_true", help="skip the position-free control")
    p.add_argument("--train-images", type=int, default=None, metavar="N",
                   help=f"training images (default: {FULL['train_images']})")
    p.add_argument("--val-images", type=int, default=None, metavar="N",
                   help=f"validation images (default: {FULL['val_images']})")
    add_run_arguments(p)
