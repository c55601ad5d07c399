"""What training may do to a directory (issue 24): ``--overwrite`` replaces only an earlier
run's files, only once the new run starts, and never files no run wrote; a start that
fails leaves nothing that blocks its rerun; a moved run keeps its best model; SIGTERM
stops at a safe point, resumable, with one line and exit status 143."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from datasets_on_disk import make_blocky_ade
from test_train import ENV, checkpoint_state, copy_run, experiment, finished_run, one_error_line

from segformer_lab import cli

__all__ = ["experiment", "finished_run"]  # the fixtures, shared with test_train
pytestmark = pytest.mark.usefixtures("one_thread")
SHORT = ["--set", "trainer.max_epochs=1", "--set", "trainer.limit_train_batches=1"]


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def user_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files", [
    {"logs/server.log": "x", "checkpoints/resnet.pth": "y", "config.json": '{"app": 1}'},  # the issue's
    {"config.yaml": "name: my app\nport: 8080\n", "logs/server.log": "x"},
])
def test_a_directory_no_run_wrote_is_never_replaced(experiment, tmp_path, capsys, files):
    project = tmp_path / "proj"
    user_files(project, files)
    before = contents(project)
    for overwrite in ([], ["--overwrite"]):
        assert cli.main(["train", str(experiment), "--out", str(project), *overwrite, *SHORT]) == 2
        line = one_error_line(capsys)
        assert f"{project} holds " in line and "no segformer-lab run wrote them" in line
        assert "even with --overwrite" in line
        assert contents(project) == before  # no file gone or changed, and no .lock left behind


def test_overwrite_removes_the_runs_files_by_name_and_keeps_the_users(experiment, finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    mine = {"notes.txt": "mine", "checkpoints/resnet.pth": "mine", "logs/server.log": "mine",
            "logs/other/x.txt": "mine"}
    user_files(run_dir, mine)
    assert cli.main(["train", str(experiment), "--out", str(run_dir), "--overwrite", *SHORT]) == 0
    assert checkpoint_state(run_dir / "checkpoints/last.ckpt")["global_step"] == 1
    assert all((run_dir / name).read_text() == "mine" for name in mine)
    assert len(list((run_dir / "checkpoints").glob("best-*.ckpt"))) == 1
    assert sorted(p.name for p in (run_dir / "logs/csv").iterdir()) == ["version_0"]
    assert "train/loss" in (run_dir / "logs/csv/version_0/metrics.csv").read_text()
    assert len(list((run_dir / "logs/tensorboard/version_0").glob("events.out.tfevents.*"))) == 1
    assert json.loads((run_dir / ".segformer-lab-run").read_text())["written_by"] == "segformer-lab train"
    assert not (run_dir / ".lock").exists()


@pytest.mark.parametrize("override, error", [
    (["--set", "optim.warmup=1500", "--set", "trainer.max_steps=2"], "warmup <= total, got total 2, warmup 1500"),
    (["--set", "val.mode=slide", "--set", "val.crop=0"], "crop: expected two positive sides, got 0"),  # refused with the settings
])
def test_overwrite_checks_everything_before_it_removes_anything(experiment, finished_run, tmp_path, capsys, override,
                                                                error):
    run_dir = copy_run(finished_run, tmp_path)
    before = contents(run_dir)
    assert cli.main(["train", str(experiment), "--out", str(run_dir), "--overwrite", *override]) == 2
    assert error in one_error_line(capsys)
    assert contents(run_dir) == before


def test_a_start_that_fails_leaves_nothing_that_blocks_its_rerun(experiment, tmp_path, capsys):
    """Failing in the sanity validation (before anything is written) and at the first
    training batch (after the run's files were started): the directory goes, and the
    same command, fixed, runs."""
    bad_data = tmp_path / "bad"
    shutil.copytree(make_blocky_ade(tmp_path / "good"), bad_data)
    for image in (bad_data / "images/training").iterdir():
        image.write_bytes(image.read_bytes()[:100])
    run_dir = tmp_path / "run"
    for broken in (["--set", "val.mode=slide", "--set", "val.crop=0"], ["--set", f"data.root={bad_data}"]):
        assert cli.main(["train", str(experiment), "--out", str(run_dir), *SHORT, *broken]) == 2
        assert ("crop: expected two positive sides, got 0" if "val.crop=0" in broken else "cannot decode") in one_error_line(capsys)
        assert not run_dir.exists()
    project = tmp_path / "project"
    user_files(project, {"notes.txt": "mine"})
    assert cli.main(["train", str(experiment), "--out", str(project), *SHORT, "--set", f"data.root={bad_data}"]) == 2
    assert contents(project) == {"notes.txt": b"mine"}
    assert cli.main(["train", str(experiment), "--out", str(project), *SHORT]) == 0


def best_of(path: Path) -> dict:
    return next(v for k, v in checkpoint_state(path)["callbacks"].items() if k.startswith("BestCheckpoint"))


def test_a_moved_run_keeps_its_best_model(finished_run, tmp_path):
    """Lightning restores the best score only in the same absolute folder: resumed after a
    move, the first validation counted as the best (replacing model.safetensors with worse
    weights) and the earlier best checkpoint stayed beside the new one."""
    moved = tmp_path / "moved"
    copy_run(finished_run, tmp_path).rename(moved)
    before = float(best_of(moved / "checkpoints/last.ckpt")["best_model_score"])
    assert cli.main(["train", "--resume", str(moved), "--set", "trainer.max_epochs=3"]) == 0
    with (moved / "logs/csv/version_1/metrics.csv").open() as handle:
        scores = [float(row["val/mIoU"]) for row in csv.DictReader(handle) if row.get("val/mIoU")]
    assert scores, "the resumed session validated nothing"
    best = best_of(moved / "checkpoints/last.ckpt")
    assert float(best["best_model_score"]) == pytest.approx(max(before, *scores), abs=1e-4)
    (kept,) = (moved / "checkpoints").glob("best-*.ckpt")
    assert best["best_model_path"] == str(kept)
    state, weights = checkpoint_state(kept)["state_dict"], load_file(moved / "model.safetensors")
    assert all(torch.equal(value, state[f"model.{key}"]) for key, value in weights.items())


def test_sigterm_stops_at_a_safe_point_that_resumes_exactly(experiment, finished_run, tmp_path):
    """SIGTERM to the whole process group (as systemd or Slurm send it: the loader's worker
    too): the run saves last.ckpt at the end of the step, prints one line and exits 143;
    resumed, it ends as the uninterrupted run, bit for bit."""
    run_dir = tmp_path / "stopped"
    command = [sys.executable, "-m", "segformer_lab.cli", "train", str(experiment), "--out", str(run_dir),
               "--set", "checkpoint.every_n_train_steps=null", "--set", "data.num_workers=1"]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "config.yaml").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    lines = [line for line in stderr.decode().splitlines() if line.startswith("segformer-lab")]
    assert process.returncode == 143, stderr.decode()[-2000:]
    assert "Traceback" not in stderr.decode() and len(lines) == 1, stderr.decode()[-2000:]
    step = checkpoint_state(run_dir / "checkpoints/last.ckpt")["global_step"]
    assert 1 <= step < 8
    assert lines[0] == (f"segformer-lab train: stopped by SIGTERM at step {step}; the run in {run_dir} is saved at "
                        f"step {step} ({run_dir / 'checkpoints/last.ckpt'}): continue it with segformer-lab train "
                        f"--resume {run_dir}")
    assert not (run_dir / ".lock").exists()

    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    resumed = checkpoint_state(run_dir / "checkpoints/last.ckpt")
    full = checkpoint_state(finished_run / "checkpoints/last.ckpt")
    assert resumed["global_step"] == 8
    for key, value in full["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), f"{key} differs after stopping at step {step}"
