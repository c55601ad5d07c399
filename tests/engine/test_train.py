"""Training and evaluation end to end on a tiny ADE20K directory written by the tests:
the train / eval commands, exact resume after SIGKILL, NaN handling, DDP on CPU."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from datasets_on_disk import make_blocky_ade

from segformer_lab import cli, load_model
from segformer_lab.data import ADE20K_CLASSES, build_dataset, build_transforms
from segformer_lab.engine import NonFiniteLossError, SegmentationDataModule, evaluate, resolve_config, train
from segformer_lab.engine.rundir import RunDirectoryBusy, own_run_directory

NUM_CLASSES = 150
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """An experiment YAML over the tiny dataset: B0 with drop path (random state matters),
    2 epochs of 4 steps, a checkpoint every step, random colour jitter (per-sample seeds
    make augmentation exact on resume too)."""
    root = make_blocky_ade(tmp_path_factory.mktemp("data"))
    config = {
        "model": {"name": "segformer_b0", "num_classes": NUM_CLASSES, "overrides": {"drop_path_rate": 0.1}},
        "data": {"format": "ade20k", "root": str(root), "train_split": "training", "val_split": "validation",
                 "train_transforms": {"name": "rope_seed", "size": [64, 64]},
                 "val_transforms": {"name": "val", "scale": [64, 48]}, "batch_size": 2, "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup": 0.25},
        "checkpoint": {"every_n_train_steps": 1},
        "trainer": {"max_steps": -1, "max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    }
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished_run(experiment, tmp_path_factory) -> Path:
    """An uninterrupted run of the tiny experiment, through ``segformer-lab train``."""
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    torch.set_num_threads(1)
    assert cli.main(["train", str(experiment), "--out", str(run_dir)]) == 0
    return run_dir


def checkpoint_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_writes_a_run_directory(finished_run):
    files = ("config.yaml", "config.json", "model.safetensors", "checkpoints/last.ckpt", "logs/csv/version_0/metrics.csv")
    for name in files:
        assert (finished_run / name).is_file(), name
    assert len(list((finished_run / "checkpoints").glob("best-*.ckpt"))) == 1
    assert list((finished_run / "logs" / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    assert config["optim"]["head_lr_mult"] == 10.0 and config["model"]["num_classes"] == NUM_CLASSES
    header = (finished_run / "logs/csv/version_0/metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/img_per_s", "val/mIoU", "val/mAcc", "val/aAcc", "lr-AdamW/head"} <= set(header)
    last = checkpoint_state(finished_run / "checkpoints/last.ckpt")
    assert last["global_step"] == 8 and "rng_states" in last
    assert load_model(finished_run).config.num_classes == NUM_CLASSES


def test_eval_reproduces_the_best_validation(finished_run, tmp_path, capsys):
    best = checkpoint_state(next((finished_run / "checkpoints").glob("best-*.ckpt")))
    best_miou = next(v for k, v in best["callbacks"].items() if k.startswith("BestCheckpoint"))["best_model_score"]
    out = tmp_path / "eval.json"
    assert cli.main(["eval", str(finished_run), "--json", str(out), "--num-workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "building" in printed and "mIoU" in printed
    result = json.loads(out.read_text())["results"][0]
    assert result["mIoU"] == pytest.approx(float(best_miou), abs=1e-3)
    assert list(result["per_class"]) == list(ADE20K_CLASSES)
    assert result["per_class"]["wall"]["IoU"] is not None and result["per_class"]["flag"]["IoU"] is None

    sweep = tmp_path / "sweep.json"
    ckpt = finished_run / "checkpoints" / "last.ckpt"
    assert cli.main(["eval", str(ckpt), "--sizes", "32,48", "--mode", "slide", "--crop", "40", "--stride", "24",
                     "--flip", "--json", str(sweep), "--num-workers", "0"]) == 0
    assert [r["size"] for r in json.loads(sweep.read_text())["results"]] == [32, 48]
    assert "short side" in capsys.readouterr().out


def test_resume_after_sigkill_is_exact(experiment, finished_run, tmp_path):
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "segformer_lab.cli", "train", str(experiment), "--out", str(run_dir)]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        _, stderr = process.communicate()
    assert last.exists(), stderr.decode()[-2000:]
    step = checkpoint_state(last)["global_step"]
    assert step < 8, "the process finished before it could be killed"

    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    resumed, full = checkpoint_state(last), checkpoint_state(finished_run / "checkpoints/last.ckpt")
    assert resumed["global_step"] == full["global_step"] == 8
    for key, value in full["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), f"{key} differs after resuming at step {step}"
    states = (c["optimizer_states"][0]["state"].values() for c in (resumed, full))
    for got, want in zip(*states):
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert resumed["lr_schedulers"] == full["lr_schedulers"]
    best = [[v["best_model_score"] for k, v in c["callbacks"].items() if k.startswith("BestCheckpoint")]
            for c in (resumed, full)]
    assert best[0] == best[1]


class NaNImages(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        sample = dict(self.dataset[index])
        sample["pixel_values"] = torch.full_like(sample["pixel_values"], float("nan"))
        return sample


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(experiment, finished_run, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = {p.name: p.read_bytes() for p in [run_dir / "model.safetensors", *(run_dir / "checkpoints").iterdir()]}

    config = resolve_config(experiment, ["trainer.max_epochs=3"])
    data = config["data"]
    good = SegmentationDataModule.from_config(data, num_classes=NUM_CLASSES)
    bad = SegmentationDataModule(NaNImages(good.train), good.val, batch_size=2, num_workers=0)
    with pytest.raises(NonFiniteLossError, match=r"training loss is not finite \(here: nan\) at step 8 \(epoch 2\)"):
        train(config, run_dir, resume=True, datamodule=bad)

    monkeypatch.setattr(SegmentationDataModule, "from_config", classmethod(lambda cls, *a, **k: bad))
    assert cli.main(["train", "--resume", str(run_dir), "--set", "trainer.max_epochs=3"]) == 1
    assert "training loss is not finite" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in [run_dir / "model.safetensors", *(run_dir / "checkpoints").iterdir()]}
    assert after == before


DDP_SCRIPT = """
import sys, torch
from segformer_lab.engine import resolve_config, train
config = resolve_config(sys.argv[1], [
    "trainer.strategy=ddp", "trainer.devices=2", "trainer.max_epochs=1", "data.batch_size=4",
    "checkpoint.every_n_train_steps=null",  # and the recipe's augmentations:
    "data.train_transforms={name: segformer_ade, crop_size: [64, 64], scale: [128, 64]}"])
trainer = train(config, sys.argv[2])
torch.save(trainer.lightning_module.val_scores["confmat"], f"{sys.argv[2]}/confmat-{trainer.global_rank}.pt")
"""


def test_ddp_on_cpu_synchronises_validation(experiment, tmp_path):
    script, run_dir = tmp_path / "ddp.py", tmp_path / "ddp"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    done = subprocess.run([sys.executable, str(script), str(experiment), str(run_dir)], env=ENV, capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    rank0, rank1 = (torch.load(run_dir / f"confmat-{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(rank0, rank1)

    # the 3 validation images are split 2 + 1 over the ranks: each counted once
    config = resolve_config(experiment)
    val = build_dataset("ade20k", config["data"]["root"], "validation",
                        transforms=build_transforms("val", scale=[64, 48]))
    expected = evaluate(load_model(run_dir), val, progress=False)[None]["confmat"]
    assert torch.equal(rank0, expected)
    assert int(rank0.sum()) == sum(int((val[i]["labels"] != 255).sum()) for i in range(len(val)))


def test_augmentation_is_exact_after_a_mid_epoch_resume_with_workers(tmp_path):
    """Each sample's augmentation depends on (seed, epoch, sample) only: a loader resumed
    after 2 of 4 batches, with 2 workers, yields the rest bit for bit, and so does a
    loader with another number of workers."""
    root = make_blocky_ade(tmp_path)
    pipeline = build_transforms("segformer_ade", crop_size=(32, 32), scale=(80, 64))
    dataset = build_dataset("ade20k", root, "training", transforms=pipeline)

    def loader(workers: int) -> torch.utils.data.DataLoader:
        module = SegmentationDataModule(dataset, batch_size=2, num_workers=workers, seed=3)
        loader = module.train_dataloader()
        loader.sampler.set_epoch(1)
        return loader

    full = list(loader(2))
    assert len(full) == 4
    resumed = loader(2)
    resumed.load_state_dict({"epoch": 1, "batches": 2})
    rest = list(resumed)
    assert len(rest) == 2
    for got, want in zip(rest + list(loader(0)), full[2:] + full):
        assert got["path"] == want["path"]
        assert torch.equal(got["pixel_values"], want["pixel_values"]) and torch.equal(got["labels"], want["labels"])
    other_epoch = loader(0)
    other_epoch.sampler.set_epoch(2)
    assert not all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(other_epoch, full))


@pytest.mark.parametrize("data_format", ["folder", "parquet"])
def test_cli_trains_on_folder_and_parquet_data(data_format, tmp_path):
    """The user-folder format and scene_parse_150-style parquet files train through
    ``segformer-lab train`` as ADE20K does (validation on the training split here)."""
    from datasets_on_disk import encode, folder_mask, make_folder, make_parquet, raw_ade_mask, rgb

    if data_format == "folder":
        root, classes, split = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()}), 3, "train"
    else:
        rows = [(encode(rgb(), "JPEG"), encode(raw_ade_mask(), "PNG")) for _ in range(2)]
        root, classes, split = tmp_path / "parquet", NUM_CLASSES, "train"
        make_parquet(root / "data" / "train-00000-of-00001.parquet", rows)
    config = {
        "model": {"name": "segformer_b0", "num_classes": classes},
        "data": {"format": data_format, "root": str(root), "train_split": split, "val_split": split,
                 "train_transforms": {"name": "rope_seed", "size": [32, 32]},
                 "val_transforms": {"name": "val", "scale": [64, 32]}, "batch_size": 2, "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup": 0},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    lightning_lines: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = lightning_lines.append
    logging.getLogger("lightning.pytorch").addHandler(listener)
    try:
        assert cli.main(["train", str(path), "--out", str(run_dir)]) == 0
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(listener)
    assert lightning_lines, "Lightning said nothing: the listener is not where its lines go"
    assert not [r for r in lightning_lines if "litlogger" in r.getMessage() or "litmodels" in r.getMessage()]
    assert load_model(run_dir).config.num_classes == classes
    metrics = (run_dir / "logs/csv/version_0/metrics.csv").read_text()
    assert "train/loss" in metrics and "val/mIoU" in metrics


def copy_run(finished_run: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    return run_dir


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_second_training_into_a_busy_run_directory_fails_at_once(experiment, tmp_path, capsys):
    run_dir = tmp_path / "busy"
    command = [sys.executable, "-m", "segformer_lab.cli", "train", str(experiment), "--out", str(run_dir),
               "--set", "trainer.max_epochs=4"]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints/last.ckpt").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for second in (["train", str(experiment), "--out", str(run_dir), "--set", "seed=1"],
                       ["train", "--resume", str(run_dir)]):
            assert cli.main(second) == 2
            err = one_error_line(capsys)
            assert f"{run_dir} is in use by another training (pid {first.pid} on " in err
        assert first.poll() is None, "the first training ended before the second was refused"
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr.decode()[-2000:]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 0
    assert checkpoint_state(run_dir / "checkpoints/last.ckpt")["global_step"] == 16
    assert len(list((run_dir / "checkpoints").glob("best-*.ckpt"))) == 1
    assert cli.main(["train", "--resume", str(run_dir)]) == 0  # the lock went with its owner


def test_a_new_run_over_an_earlier_one_needs_overwrite(experiment, finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "notes.txt").write_text("mine")
    before = (run_dir / "checkpoints/last.ckpt").read_bytes()
    assert cli.main(["train", str(experiment), "--out", str(run_dir)]) == 2
    assert f"{run_dir} holds an earlier run (config.yaml, config.json" in one_error_line(capsys)
    assert (run_dir / "checkpoints/last.ckpt").read_bytes() == before

    short = ["--set", "trainer.max_epochs=1", "--set", "trainer.limit_train_batches=1"]
    assert cli.main(["train", str(experiment), "--out", str(run_dir), "--overwrite", *short]) == 0
    assert checkpoint_state(run_dir / "checkpoints/last.ckpt")["global_step"] == 1
    assert len(list((run_dir / "checkpoints").glob("best-*.ckpt"))) == 1
    assert [p.name for p in (run_dir / "logs/csv").iterdir()] == ["version_0"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["max_epochs"] == 1
    assert (run_dir / "notes.txt").read_text() == "mine"  # not a run's file: kept


@pytest.mark.parametrize("override, named", [
    ("optim.lr=abc", "optim.lr must be a number, got 'abc'"),
    ("trainer.max_steps=abc", "trainer.max_steps must be an integer, got 'abc'"),
    ("trainer.max_stepz=9", "unknown config key 'trainer.max_stepz': not a Lightning Trainer argument; known: "),
    ("model.name=boostformer_b0", "model.name cannot change on resume"),
    ("model.num_classes=3", "model.num_classes cannot change on resume"),
    ("data.train_split=validation", "data.train_split cannot change on resume"),
    ("trainer.devices=2", "trainer.devices cannot change on resume"),
])
def test_a_refused_override_on_resume_leaves_the_run_resumable(override, named, finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path)
    before = {p: p.read_bytes() for p in [run_dir / "config.yaml", *(run_dir / "checkpoints").iterdir()]}
    assert cli.main(["train", "--resume", str(run_dir), "--set", override]) == 2
    assert named in one_error_line(capsys)
    assert {p: p.read_bytes() for p in before} == before
    if override.startswith("model.name"):  # the run still resumes and evaluates
        assert cli.main(["train", "--resume", str(run_dir)]) == 0
        assert cli.main(["eval", str(run_dir / "checkpoints/last.ckpt"), "--num-workers", "0"]) == 0


def test_an_optimiser_override_on_resume_is_applied(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    assert cli.main(["train", "--resume", str(run_dir), "--set", "optim.lr=5e-4", "--set", "optim.weight_decay=0.05",
                     "--set", "trainer.max_epochs=3"]) == 0
    state = checkpoint_state(run_dir / "checkpoints/last.ckpt")
    assert state["global_step"] == 12
    schedule = state["lr_schedulers"][0]
    assert sorted(schedule["base_lrs"]) == pytest.approx([5e-4, 5e-4, 5e-3, 5e-3])
    assert schedule["lr_lambdas"][0]["total"] == 12
    groups = {g["name"]: g for g in state["optimizer_states"][0]["param_groups"]}
    assert groups["encoder"]["weight_decay"] == groups["head"]["weight_decay"] == 0.05
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["optim"]["lr"] == 5e-4 and config["trainer"]["max_epochs"] == 3


def test_a_killed_runs_leftovers_are_removed_when_it_resumes(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    checkpoints = run_dir / "checkpoints"
    best = next(checkpoints.glob("best-*.ckpt"))
    planted = [checkpoints / ".last.ckpt.tmp-4242", run_dir / ".model.safetensors.tmp-4242",
               checkpoints / "best-e009-s000099.ckpt"]
    for path in planted:
        path.write_bytes(b"half written")
    others = [run_dir / ".notes.tmp-x", checkpoints / "notes.txt"]
    for path in others:
        path.write_text("not the run's")
    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    assert not any(path.exists() for path in planted)
    assert list(checkpoints.glob("best-*.ckpt")) == [best]
    assert all(path.exists() for path in others)


def test_resuming_from_a_truncated_checkpoint_is_one_error_line(finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path)
    last = run_dir / "checkpoints/last.ckpt"
    last.write_bytes(last.read_bytes()[:4096])
    before = (run_dir / "config.yaml").read_bytes()
    assert cli.main(["train", "--resume", str(run_dir), "--set", "optim.lr=1e-4"]) == 2
    assert f"cannot resume: {last} could not be read (truncated or corrupt?)" in one_error_line(capsys)
    assert (run_dir / "config.yaml").read_bytes() == before


def test_a_killed_run_releases_its_directory_at_once(experiment, tmp_path):
    """The lock goes with its owner, not with the DataLoader workers it forked (they
    outlive a SIGKILLed parent by seconds)."""
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "segformer_lab.cli", "train", str(experiment), "--out", str(run_dir),
               "--set", "data.num_workers=2", "--set", "trainer.max_epochs=20"]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints/last.ckpt").exists() and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None
        with pytest.raises(RunDirectoryBusy, match=f"pid {process.pid} on "):
            with own_run_directory(run_dir, resume=True):
                pass
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate()
    with own_run_directory(run_dir, resume=True):
        assert f"pid {os.getpid()} on " in (run_dir / ".lock").read_text()
