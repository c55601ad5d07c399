"""One run of the demo (a model and a seed): trained, resumed or reused, then scored.

A run is finished when its ``result.json`` (written atomically after training and
evaluation) is there and records the same recipe: a rerun reuses it. An unfinished run
resumes from its ``checkpoints/last.ckpt`` (or restarts when it has none); a run of
another recipe is moved aside. ``sessions.json`` keeps the wall-clock span of each
training session, so a resumed run reports its whole training time.
"""

from __future__ import annotations

import csv
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..._io import read_json, write_json
from ...engine import dataset_view, evaluate, load_for_eval, resolve_config, train
from ...engine.recipe import recipe_preprocessing
from ...engine.rundir import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT
from .recipe import recipe_key

RESULT_FILE, TRAINED_FILE, SESSIONS_FILE = "result.json", "trained.json", "sessions.json"


def run_dir_of(out: Path, model: str, seed: int) -> Path:
    """Where the demo in ``out`` trains ``model`` with ``seed``."""
    return out / "runs" / f"{model}-seed{seed}"


def last_checkpoint(run_dir: Path) -> Path:
    """The run's latest Lightning checkpoint: the final weights once training is done."""
    return run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT


@dataclass
class RunOutcome:
    result: dict[str, Any]
    how: str  # "trained", "resumed", "evaluated", "reused"
    seconds: float


def _session_time(run_dir: Path) -> float:
    """Training seconds of earlier sessions of an unfinished run: each up to its last
    checkpoint (work after it is lost and redone)."""
    sessions = read_json(run_dir / SESSIONS_FILE) or []
    last = last_checkpoint(run_dir)
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
    last = last_checkpoint(run_dir)
    for session in sessions:  # close interrupted sessions at their last checkpoint
        if session.get("end") is None and session["start"] != start:
            mtime = last.stat().st_mtime if last.is_file() else session["start"]
            session["end"] = max(session["start"], mtime)
    if not sessions or sessions[-1]["start"] != start:
        sessions.append({"start": start, "end": end})
    else:
        sessions[-1]["end"] = end
    write_json(run_dir / SESSIONS_FILE, sessions)


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


def scoring_set(root: Path, config: dict[str, Any], num_classes: int):
    """The validation split of the scenes in ``root`` as the runs of ``config`` are scored on
    it: the recipe's preprocessing at the images' own size (each run's scoring resizes to
    the swept short sides)."""
    return dataset_view(("ade20k", str(root)), config["data"]["val_split"],
                        recipe_preprocessing(config).at_own_size(), num_classes)


def finished_result(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The result of the run in ``run_dir`` if it finished with this recipe, else None."""
    result = read_json(run_dir / RESULT_FILE)
    if result is not None and recipe_key(result.get("config", {})) == recipe_key(config):
        return result
    return None


def run_variant(config: dict[str, Any], run_dir: Path, eval_set, sizes: Sequence[int], device: str,
                progress: bool) -> RunOutcome:
    """Train (or resume) and score one run; reuse it when already finished with this recipe."""
    started = time.perf_counter()
    result = finished_result(run_dir, config)
    if result is not None:
        return RunOutcome(result, "reused", 0.0)
    if run_dir.exists():  # a run of another recipe, or unfinished: can it go on?
        previous = None
        if (run_dir / CONFIG_FILE).is_file():
            previous = resolve_config(run_dir / CONFIG_FILE)
        if previous is None:  # killed before training started: nothing to keep
            shutil.rmtree(run_dir)
        elif recipe_key(previous) != recipe_key(config):  # keep the last one aside
            aside = run_dir.with_name(run_dir.name + ".previous")
            shutil.rmtree(aside, ignore_errors=True)
            run_dir.rename(aside)
            print(f"{run_dir} was trained with another recipe: moved to {aside}, training again", flush=True)
    last = last_checkpoint(run_dir)
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
    # the final weights (not the best validation: no selection on val), scored as the run's recipe says
    # (engine.run_recipe): its preprocessing's interpolation at each short side, its inference settings
    model, recipe = load_for_eval(last)
    scores = evaluate(model, eval_set, sizes=list(sizes), device=device, progress=progress,
                      preprocessing=recipe.preprocessing, **recipe.inference)
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
