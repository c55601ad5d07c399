"""``segformer-lab demo`` end to end on a tiny budget: the report, the plots, the result
files, reuse of finished runs on a rerun, resuming an unfinished run, and seeds."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from segformer_lab import cli
from segformer_lab.tools import demo

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


def test_recipe_file_matches_builtin_copy():
    """configs/demo.yaml is the recipe; the module's copy (used outside a checkout) agrees."""
    from segformer_lab.engine import resolve_config

    assert demo.RECIPE_FILE.is_file()
    assert resolve_config(demo.RECIPE_FILE) == resolve_config(demo.BUILTIN_RECIPE)


def test_plan_fits_the_budget():
    costs = demo.Costs(step=0.5, forward=0.02, forward2x=0.08, forward_profile=0.3)
    steps, estimate = demo.plan_steps(costs, budget_s=480, elapsed_s=30, runs=4, models=4, val_images=200,
                                      bench_rounds=4)
    assert steps % demo.VAL_POINTS == 0 and steps > 50
    assert estimate["total_s"] <= demo.PLAN_FRACTION * 480 + 1
    tight, _ = demo.plan_steps(costs, budget_s=60, elapsed_s=30, runs=4, models=4, val_images=200, bench_rounds=4)
    assert tight == demo.MIN_STEPS


def test_help():
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0 and "--budget" in stdout.getvalue() and "--seeds" in stdout.getvalue()


def test_mean_and_std_format():
    assert demo.pm([41.23]) == "41.2"
    assert demo.pm([40.0, 42.0]) == f"41.0 ± {math.sqrt(2):.1f}"
    assert demo.duration(123) == "2m03s" and demo.duration(4.25) == "4.2s"



def test_one_demo_at_a_time(tmp_path):
    """A second demo in the same directory is refused before it touches anything."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    with (out / demo.LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            assert cli.main(["demo", "--out", str(out), *TINY]) == 2
    assert "another demo is running" in stderr.getvalue()
    assert sorted(p.name for p in out.iterdir()) == [demo.LOCK_FILE]


def test_another_recipe_trains_again_and_keeps_the_previous_run(first):
    out, _, _ = first
    log = run_demo(out, "--steps", "4", models=["boostformer_b0"])
    assert re.search(r"^\[3/6\] trained boostformer_b0 seed 0", log, flags=re.M), log
    assert "trained with another recipe" in log
    assert json.loads((out / "runs" / "boostformer_b0-seed0" / "result.json").read_text())["steps"] == 4
    assert json.loads((out / "runs" / "boostformer_b0-seed0.previous" / "result.json").read_text())["steps"] == 2
