"""A diverging run stops before a poisoned state is saved (issue 15, item 4): the loss, the
gradients and the weights are checked before any checkpoint of the step; the one-line
error names the step, the last good checkpoint and the command that resumes it, and
resuming with a sane rate (an optimiser override) continues from that checkpoint."""

from __future__ import annotations

import itertools
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
import yaml
from lightning.pytorch.plugins import MixedPrecision
from safetensors.torch import load_file

from datasets_on_disk import folder_mask, make_folder
from segformer_lab import cli
from segformer_lab.engine import NonFiniteLossError, SegmentationDataModule, resolve_config, train
from segformer_lab.engine import module as module_lib
from segformer_lab.engine import optim
from segformer_lab.engine.experiment import build_model, build_module

pytestmark = pytest.mark.usefixtures("one_thread")
SANE = 100.0  # |w| of a tiny B0 after a few steps at a sane rate stays far below this


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """B0 on 4 folder images at 32 px: 2 steps per epoch, 2 epochs, a checkpoint every step;
    a warmup of 2 steps, so step 0 runs at rate 0 and is checkpointed whatever optim.lr is."""
    root = make_folder(tmp_path_factory.mktemp("data"), {f"s{i}": folder_mask() for i in range(4)})
    config = {
        "model": {"name": "segformer_b0", "num_classes": 3},
        "data": {"format": "folder", "root": str(root), "train_split": "train", "val_split": "train",
                 "train_transforms": {"name": "rope_seed", "size": [32, 32]},
                 "val_transforms": {"name": "val", "scale": [64, 32]}, "batch_size": 2, "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup": 2},
        "checkpoint": {"every_n_train_steps": 1},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    }
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("segformer-lab train: error: "), err
    return lines[0]


def assert_sane(run_dir: Path, step: int) -> dict:
    """last.ckpt is at ``step``; its weights and optimiser state, and any exported weights, are finite and small."""
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == step
    tensors = [*last["state_dict"].values(), *(v for s in last["optimizer_states"][0]["state"].values()
                                               for v in s.values())]
    if (run_dir / "model.safetensors").is_file():
        tensors += list(load_file(run_dir / "model.safetensors").values())
    for ckpt in (run_dir / "checkpoints").glob("best-*.ckpt"):
        tensors += list(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"].values())
    floats = [t for t in tensors if t.is_floating_point()]
    assert all(torch.isfinite(t).all() for t in floats)
    assert max(t.abs().max().item() for t in floats if t.numel()) < SANE
    return last


@pytest.mark.parametrize("lr, fused, what", [
    ("1e10", True, "the weights exploded"),
    ("1e300", True, "the weights exploded"),
    ("1e300", False, "the optimiser step overflowed"),
])
def test_a_diverging_rate_stops_naming_the_safe_checkpoint(experiment, tmp_path, capsys, monkeypatch, lr, fused, what):
    """1e10 gives finite weights of ~1e11 after step 1 (no NaN yet: the loss alone would let
    step 1 be checkpointed); 1e300 does not fit float32: the fused AdamW step makes the
    weights NaN, the unfused one (a device without the fused kernel) raises. All stop the
    same way."""
    if not fused:
        monkeypatch.setattr(optim, "FUSED_ADAMW_DEVICES", ())
    run_dir = tmp_path / "run"
    assert cli.main(["train", str(experiment), "--out", str(run_dir), "--set", f"optim.lr={lr}"]) == 1
    line = error_line(capsys)
    assert f"{what}" in line and "at step 1 (epoch 0)" in line
    assert f"Last good checkpoint: {run_dir / 'checkpoints' / 'last.ckpt'} (step 1)." in line
    assert line.endswith(f"resume from it: segformer-lab train --resume {run_dir} --set optim.lr=6e-05")
    assert_sane(run_dir, step=1)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no best, no temporary


def test_resuming_the_safe_checkpoint_with_a_sane_rate_finishes(experiment, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", str(experiment), "--out", str(run_dir), "--set", "optim.lr=1e10"]) == 1
    command = error_line(capsys).split("resume from it: ")[1].split()
    assert command[:4] == ["segformer-lab", "train", "--resume", str(run_dir)]

    assert cli.main([*command[1:-1], "optim.lr=1e-4"]) == 0  # the suggested command, at a rate of our choice
    last = assert_sane(run_dir, step=4)
    assert (run_dir / "model.safetensors").is_file()
    # the override reached the optimiser and the schedule (a resumed run restores the saved ones)
    groups = {g["name"]: g for g in last["optimizer_states"][0]["param_groups"]}
    assert groups["encoder"]["initial_lr"] == pytest.approx(1e-4)
    assert groups["head"]["initial_lr"] == pytest.approx(1e-3)  # head_lr_mult 10
    base_lrs = last["lr_schedulers"][0]["base_lrs"]
    assert base_lrs == pytest.approx([g["initial_lr"] for g in last["optimizer_states"][0]["param_groups"]])


def test_non_finite_gradients_stop_before_the_step(experiment, tmp_path, monkeypatch):
    """A loss that stays finite (0) while its gradient is NaN, from step 2 on: the weights
    would turn NaN in the step and be checkpointed; the run stops before it instead, and
    last.ckpt, the best checkpoint and model.safetensors keep step 2's good weights."""
    real, calls = module_lib.upsampled_cross_entropy, itertools.count()

    def loss(logits, labels):
        return real(logits, labels) if next(calls) < 2 else (logits * 0).sqrt().sum()  # d sqrt(u) at 0: inf * 0

    monkeypatch.setattr(module_lib, "upsampled_cross_entropy", loss)
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"the gradients are not finite \(norm nan\) at step 2 \(epoch 1\)"):
        train(resolve_config(experiment), run_dir)
    assert_sane(run_dir, step=2)
    assert (run_dir / "model.safetensors").is_file() and len(list((run_dir / "checkpoints").glob("best-*"))) == 1




@pytest.mark.parametrize("clip", [None, 1.0])
def test_float16_loss_scaling_skips_overflowing_steps_without_stopping(experiment, monkeypatch, clip):
    """Under ``16-mixed`` infinite gradients are the loss scaler's business (it skips the
    step and lowers its scale): a huge loss at step 1 does not stop the run. (The string
    ``16-mixed`` turns into bf16 on CPU: the plugin is given with a CPU scaler.) Without
    clipping the fused AdamW step unscales and skips; with it, the unfused one (Lightning
    refuses to clip for a fused optimiser, which unscales too late for clipping)."""
    real, calls = module_lib.upsampled_cross_entropy, itertools.count()

    def loss(logits, labels):
        return real(logits, labels) * (1e30 if next(calls) == 1 else 1.0)  # float16 gradients overflow

    monkeypatch.setattr(module_lib, "upsampled_cross_entropy", loss)
    config = resolve_config(experiment)
    model = build_model(config["model"])
    scaler = torch.amp.GradScaler("cpu")
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        gradient_clip_val=clip, plugins=[MixedPrecision("16-mixed", "cpu", scaler)])
    module = build_module(config, model)
    trainer.fit(module, SegmentationDataModule.from_config(config["data"], num_classes=3))
    assert bool(module.optimizers(use_pl_optimizer=False).defaults["fused"]) == (clip is None)
    assert trainer.global_step == 3 and scaler.get_scale() < 2.0 ** 16  # it did skip a step
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_run_that_exploded_before_any_checkpoint_is_replaced_not_resumed(experiment, tmp_path, capsys):
    """With no checkpoint there is nothing to resume: a new run into its directory says to
    use --overwrite (which then works), not --resume."""
    run_dir = tmp_path / "run"
    no_checkpoints = ["--set", "checkpoint.every_n_train_steps=null"]
    assert cli.main(["train", str(experiment), "--out", str(run_dir), "--set", "optim.lr=1e10", *no_checkpoints]) == 1
    assert "No checkpoint was written before it" in error_line(capsys)
    assert not (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "config.yaml").is_file()
    assert cli.main(["train", str(experiment), "--out", str(run_dir), *no_checkpoints]) == 2
    line = error_line(capsys)
    assert "left no checkpoint to resume" in line and "--overwrite" in line and "--resume" not in line
    assert cli.main(["train", str(experiment), "--out", str(run_dir), "--overwrite", *no_checkpoints]) == 0
