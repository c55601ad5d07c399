"""``segformer-lab demo`` end to end on a tiny budget: the report, the plots, the result
files, reuse of finished runs on a rerun, resuming an unfinished run, and seeds."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from segformer_lab import cli, get_config
from segformer_lab.data import build_dataset, build_transforms
from segformer_lab.engine import OptimConfig
from segformer_lab.tools.demo import budget
from segformer_lab.tools.demo.budget import (
    MIN_STEPS, PLAN_FRACTION, Costs, calibrate, demo_fixed_s, loop_costs, plan_steps,
)  # fmt: skip
from segformer_lab.tools.demo.command import LOCK_FILE, check_output, resumable
from segformer_lab.tools.demo.dataset import dataset_meta
from segformer_lab.tools.demo.formatting import duration, pm
from segformer_lab.tools.demo.recipe import RECIPE, VAL_POINTS, load_recipe

MODELS = ["segformer_b0", "boostformer_b0"]
TINY = ["--train-images", "16", "--val-images", "4", "--steps", "2", "--set", "data.batch_size=2",
        "--latency-size", "64", "--latency-repeats", "1", "--grid-images", "2", "--no-progress"]
PLOTS = ("miou_vs_gmacs.png", "training_curves.png", "miou_vs_size.png", "predictions.png")


pytestmark = pytest.mark.usefixtures("one_thread")


def run_demo(out: Path, *extra: str, models=MODELS) -> str:
    """The demo through the command line, in this process; its standard output."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["demo", "--out", str(out), *TINY, "--models", *models, *extra])
    assert code == 0, stdout.getvalue()
    return stdout.getvalue()


def weights_mtimes(out: Path) -> dict[str, int]:
    files = [p for pattern in ("runs/*/model.safetensors", "runs/*/checkpoints/*.ckpt", "runs/*/result.json")
             for p in out.glob(pattern)]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> tuple[Path, str, dict[str, int]]:
    out = tmp_path_factory.mktemp("demo") / "out"
    log = run_demo(out)
    return out, log, weights_mtimes(out)


def table_rows(report: str) -> dict[str, list[str]]:
    rows = {}
    for line in report.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_report_table_plots_and_results(first):
    out, log, _ = first
    report = (out / "report.md").read_text(encoding="utf-8")
    rows = table_rows(report)
    header = rows["model"]
    assert header[:4] == ["mIoU", "mAcc", "aAcc", "params"] and header[-1] == "mIoU @256"
    assert any(h.startswith("GMACs @512") for h in header) and any(h.startswith("CPU ms") for h in header)
    for model in MODELS:
        cells = rows[model]
        assert len(cells) == len(header)
        assert 0 <= float(cells[0]) <= 100 and int(cells[3].replace(",", "")) > 1_000_000
    baseline = [name for name in rows if name.startswith("majority class")]
    assert len(baseline) == 1 and float(rows[baseline[0]][0]) >= 0

    for name in PLOTS:
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 100

    for model in MODELS:
        result = json.loads((out / "runs" / f"{model}-seed0" / "result.json").read_text())
        assert result["model"] == model and result["seed"] == 0 and result["steps"] == 2
        assert set(result["scores"]) == {"128", "256"}
        assert all(0 <= result["scores"][s]["mIoU"] <= 100 for s in ("128", "256"))
        assert result["train_time_s"] > 0 and result["curve"]["val/mIoU"]
    results = json.loads((out / "results.json").read_text())
    assert results["models"] == MODELS and set(results["latency_ms"]) == set(MODELS)

    # one line per finished stage, the paths at the end
    stages = re.findall(r"^\[(\d+)/(\d+)\] (.*)$", log, flags=re.M)
    assert [int(k) for k, _, _ in stages] == list(range(1, 8)) and {n for _, n, _ in stages} == {"7"}
    assert any(text.startswith("trained segformer_b0 seed 0: mIoU") for _, _, text in stages)
    assert f"report: {out / 'report.md'}" in log and all(f"plot: {out / name}" in log for name in PLOTS)


def test_rerun_reuses_finished_runs(first):
    out, _, mtimes = first
    log = run_demo(out)
    for model in MODELS:
        assert re.search(rf"^\[\d+/7\] reused {model} seed 0: mIoU", log, flags=re.M), log
    assert "dataset reused" in log and "kept from" in log
    assert weights_mtimes(out) == mtimes  # nothing trained or scored again
    assert len(list((out / "runs" / "segformer_b0-seed0" / "logs" / "csv").iterdir())) == 1


def test_unfinished_run_resumes_from_its_checkpoint(first):
    out, _, _ = first
    run_dir = out / "runs" / "boostformer_b0-seed0"
    before = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").unlink()  # killed after training, before it was scored
    (run_dir / "trained.json").unlink()
    log = run_demo(out, models=["boostformer_b0"])
    assert re.search(r"^\[3/6\] resumed boostformer_b0 seed 0", log, flags=re.M), log
    after = json.loads((run_dir / "result.json").read_text())
    assert after["steps"] == 2
    assert after["scores"]["128"]["mIoU"] == pytest.approx(before["scores"]["128"]["mIoU"], abs=1e-6)


def test_seeds_give_mean_and_std(first):
    out, _, _ = first
    log = run_demo(out, "--seeds", "2", models=["segformer_b0"])
    assert re.search(r"reused segformer_b0 seed 0", log) and re.search(r"trained segformer_b0 seed 1", log)
    assert (out / "runs" / "segformer_b0-seed1" / "result.json").is_file()
    row = table_rows((out / "report.md").read_text(encoding="utf-8"))["segformer_b0"]
    assert all(re.fullmatch(r"\d+\.\d ± \d+\.\d", cell) for cell in (row[0], row[1], row[2], row[-1])), row


def test_plan_fits_the_budget():
    costs = Costs(steps={"a": 0.5, "b": 0.5}, per_image={"a": {1: 0.02, 2: 0.08}, "b": {1: 0.02, 2: 0.08}})
    plan = {"elapsed_s": 30, "runs": {"a": 2, "b": 2}, "val_images": 200, "multiples": (1, 2),
            "fixed_s": demo_fixed_s(costs, 4)}
    steps, estimate = plan_steps(costs, budget_s=480, **plan)
    assert steps % VAL_POINTS == 0 and steps > 50
    assert estimate["total_s"] <= PLAN_FRACTION * 480 + 1
    tight, _ = plan_steps(costs, budget_s=60, **plan)
    assert tight == MIN_STEPS


def test_plan_counts_every_kind_at_its_own_costs():
    """A kind that trains 40% slower per step, and scores slower, takes its share of the
    budget: the plan for a B0 at 0.2 s and a variant at 0.28 s is the plan of two runs at
    0.24 s, not at 0.2 s; the same for scoring."""
    plan = {"budget_s": 600, "elapsed_s": 0, "val_images": 10, "multiples": (1, 2, 3), "fixed_s": 0.0}
    mixed = Costs(steps={"b0": 0.2, "slow": 0.28}, per_image={"b0": {1: 0.01, 2: 0.04, 3: 0.1},
                                                               "slow": {1: 0.03, 2: 0.08, 3: 0.2}})
    even = Costs(steps={"b0": 0.24}, per_image={"b0": {1: 0.02, 2: 0.06, 3: 0.15}})
    steps, estimate = plan_steps(mixed, runs={"b0": 1, "slow": 1}, **plan)
    assert steps == plan_steps(even, runs={"b0": 2}, **plan)[0]
    assert estimate["total_s"] == pytest.approx(PLAN_FRACTION * 600, rel=0.01)
    assert mixed.scoring("b0", (1, 2, 3)) == pytest.approx(0.01 + 0.04 + 0.1)
    assert plan_steps(mixed, runs={"b0": 1, "slow": 1}, **{**plan, "val_images": 200})[0] < steps


def test_the_recipe_ships_in_the_package(tmp_path):
    """demo.yaml is package data (the one copy of the recipe): it resolves and builds like
    the recipes of configs/, and --config FILE takes another file."""
    assert RECIPE.is_file()
    config = load_recipe()
    get_config(config["model"]["name"], **config["model"]["overrides"])
    for key in ("train_transforms", "val_transforms"):
        params = dict(config["data"][key])
        build_transforms(params.pop("name"), **params)
    OptimConfig(**config["optim"]).warmup_iters(1000)
    assert config["model"]["num_classes"] == 14 and config["data"]["batch_size"] == 8
    other = tmp_path / "other.yaml"
    other.write_text(RECIPE.read_text(encoding="utf-8").replace("batch_size: 8", "batch_size: 4"), encoding="utf-8")
    assert load_recipe(other, ["optim.lr=1e-3"])["data"]["batch_size"] == 4
    assert load_recipe(other, ["optim.lr=1e-3"])["optim"]["lr"] == 1e-3


def test_calibration_arithmetic():
    """A step is the mean time between step ends after the warm-up; the rest of the run
    (set-up, slower first steps, tear-down) is what it took beyond its steps at that pace."""
    ends = [10.0, 10.5, 10.7, 10.9, 11.1, 11.3]
    step, rest = loop_costs(ends, start=7.0, finish=12.0, warmup=1)
    assert step == pytest.approx(0.2)  # (11.3 - 10.5) / 4
    assert rest == pytest.approx(5.0 - 6 * 0.2)
    assert loop_costs([10.1, 10.2, 10.5, 10.8], start=10.0, finish=10.85, warmup=1) == (pytest.approx(0.3), 0.0)
    with pytest.raises(ValueError, match="step ends"):
        loop_costs([1.0, 2.0], start=0.0, finish=3.0, warmup=1)
    # a slower run (busier machine, slower loop) gets fewer planned steps
    fast = Costs(steps={"m": 0.2}, per_image={"m": {1: 0.02, 2: 0.06}}, run_overhead=1.0)
    slow = Costs(steps={"m": 0.3}, per_image={"m": {1: 0.02, 2: 0.06}}, run_overhead=1.0)
    plan = {"budget_s": 480, "elapsed_s": 30, "runs": {"m": 4}, "val_images": 200, "multiples": (1, 2),
            "fixed_s": 10.0}
    assert plan_steps(slow, **plan)[0] < plan_steps(fast, **plan)[0]


def test_scoring_is_timed_without_cache_hits_a_real_scoring_would_not_get(monkeypatch):
    """A RoPE model caches its tables per input size: the calibration's warm-up scores other
    images than the timed ones, and each timed image is scored once at each size (a warm-up
    on the timed images, the old way, made RoPE's scoring look 25-35% cheaper than it was)."""
    calls = []

    def fake_evaluate(model, images, sizes, **_):
        calls.append(([images.dataset[i] for i in images.indices], list(sizes)))

    monkeypatch.setattr(budget, "evaluate", fake_evaluate)
    per_image = budget._time_scoring(None, list(range(100)), "cpu", (1, 2, 3))
    assert list(per_image) == [1, 2, 3]
    (warmup, _), *timed = calls
    assert [sizes for _, sizes in timed] == [[128], [256], [384]]
    assert all(images == timed[0][0] for images, _ in timed) and not set(warmup) & set(timed[0][0])


def test_calibration_times_the_engine_training_loop(first):
    """Calibration trains a few real steps through the engine (Lightning's loop, the
    fused loss) and scores a few validation images; the thread count is restored."""
    out, _, _ = first
    root = out / "scenes"
    num_classes = len(dataset_meta(root)["classes"])
    config = load_recipe(None, ["data.batch_size=2"])
    config["data"]["root"], config["model"]["num_classes"] = str(root), num_classes
    eval_set = build_dataset("ade20k", root, "validation", transforms="none", num_classes=num_classes)
    threads_before = torch.get_num_threads()
    kinds = {name: {**config, "model": {**config["model"], "name": name}}
             for name in ("segformer_b0", "boostformer_b0")}
    costs, threads = calibrate(kinds, eval_set, "cpu", [1], (1, 2, 3))
    assert threads == 1 and torch.get_num_threads() == threads_before
    assert list(costs.steps) == list(kinds) and min(costs.steps.values()) > 0  # every kind timed
    for kind in kinds:  # every kind scored at every size, each timed
        assert list(costs.per_image[kind]) == [1, 2, 3] and min(costs.per_image[kind].values()) > 0
    assert costs.run_overhead >= 0 and costs.forward_profile("boostformer_b0") >= costs.per_image["boostformer_b0"][2]


def test_help():
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0 and "--budget" in stdout.getvalue() and "--seeds" in stdout.getvalue()


def test_mean_and_std_format():
    assert pm([41.23]) == "41.2"
    assert pm([40.0, 42.0]) == f"41.0 ± {math.sqrt(2):.1f}"
    assert duration(123) == "2m03s" and duration(4.25) == "4.2s"



def test_one_demo_at_a_time(tmp_path):
    """A second demo in the same directory is refused before it touches anything."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    with (out / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            assert cli.main(["demo", "--out", str(out), *TINY]) == 2
    assert "another demo is running" in stderr.getvalue()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


def test_an_output_directory_of_other_files_is_refused_untouched(tmp_path):
    """The demo replaces run directories under OUT: an OUT holding files it did not write
    (here a ``runs/segformer_b0-seed0`` of the user's, which an unfinished run's restart
    would remove) is refused before anything is written; an empty one is taken."""
    out = tmp_path / "mine"
    user_run = out / "runs" / "segformer_b0-seed0"
    user_run.mkdir(parents=True)
    (user_run / "notes.txt").write_text("mine")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cli.main(["demo", "--out", str(out), *TINY]) == 2
    assert "holds files this command did not write (runs)" in stderr.getvalue()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "runs", "runs/segformer_b0-seed0", "runs/segformer_b0-seed0/notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output(empty)
    (empty / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_output(empty / "file")


def test_the_project_info_lines_are_held_back_while_the_stages_run(tmp_path, caplog):
    """The stage lines say what was trained and loaded: the library's "loaded ..." INFO line
    per checkpoint (a dozen in a demo) is held back, warnings are not, and the level is
    restored afterwards."""
    library = logging.getLogger("segformer_lab.models.pretrained")

    def stages(out):
        library.info("loaded a checkpoint")
        library.warning("a warning")
        return 0

    with caplog.at_level(logging.INFO):
        assert resumable(tmp_path / "out", stages) == 0
        assert [r.getMessage() for r in caplog.records] == ["a warning"]
        library.info("after the stages")
    assert caplog.records[-1].getMessage() == "after the stages"


def test_another_recipe_trains_again_and_keeps_the_previous_run(first):
    out, _, _ = first
    log = run_demo(out, "--steps", "4", models=["boostformer_b0"])
    assert re.search(r"^\[3/6\] trained boostformer_b0 seed 0", log, flags=re.M), log
    assert "trained with another recipe" in log
    assert json.loads((out / "runs" / "boostformer_b0-seed0" / "result.json").read_text())["steps"] == 4
    assert json.loads((out / "runs" / "boostformer_b0-seed0.previous" / "result.json").read_text())["steps"] == 2
