"""Engine pieces without a training loop: metrics, inference, optimiser recipe, configs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers import REPO
from segformer_lab import create_model
from segformer_lab.engine import (
    OptimConfig,
    SegmentationMetrics,
    WarmupDecay,
    build_optimizer,
    build_scheduler,
    param_groups,
    resolve_config,
)
from segformer_lab.inference import predict_logits, window_starts

K = 5


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- metrics


def numpy_scores(preds: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """mmseg's definitions, written independently: per-class intersections and unions."""
    valid = labels != 255
    p, t = preds[valid], labels[valid]
    inter = np.array([np.sum((p == c) & (t == c)) for c in range(k)], dtype=float)
    area_p = np.array([np.sum(p == c) for c in range(k)], dtype=float)
    area_t = np.array([np.sum(t == c) for c in range(k)], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, acc = inter / (area_p + area_t - inter), inter / area_t
    return {"IoU": iou, "Acc": acc, "mIoU": np.nanmean(iou), "mAcc": np.nanmean(acc), "aAcc": inter.sum() / valid.sum()}


def test_metrics_match_numpy_and_merge():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K - 1, size=(6, 17, 23))  # class K-1 never in the labels
    labels[rng.random(labels.shape) < 0.2] = 255
    preds = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, K - 2, size=labels.shape))
    preds[labels == 255] = K - 1  # predictions on ignored pixels do not count
    expected = numpy_scores(preds, labels, K)
    assert np.isnan(expected["IoU"][K - 1]) and np.isnan(expected["Acc"][K - 1])

    whole, first, second = (SegmentationMetrics(K) for _ in range(3))
    whole.update(torch.from_numpy(preds), torch.from_numpy(labels))
    first.update(torch.from_numpy(preds[:2]), torch.from_numpy(labels[:2]))
    second.update(torch.from_numpy(preds[2:]), torch.from_numpy(labels[2:]))
    first.merge_state(second)  # what DDP's sum of states does
    for got in (whole.compute(), first.compute()):
        for key in ("mIoU", "mAcc", "aAcc"):
            assert got[key].item() == pytest.approx(expected[key], abs=1e-12)
        np.testing.assert_allclose(got["IoU"].numpy(), expected["IoU"], equal_nan=True)
        np.testing.assert_allclose(got["Acc"].numpy(), expected["Acc"], equal_nan=True)


def test_metrics_take_logits_and_reject_bad_labels():
    metric = SegmentationMetrics(3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 1] = 1.0
    metric.update(logits, torch.tensor([[[1, 1], [0, 255]]]))
    out = metric.compute()
    assert out["confmat"].tolist() == [[0, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert out["IoU"][1].item() == pytest.approx(2 / 3) and out["IoU"][0].item() == 0.0
    assert math.isnan(out["IoU"][2].item())
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))


# ----------------------------------------------------------------------------- inference


class PixelModel(nn.Module):
    """A per-pixel linear map pooled to stride 4: equivariant to horizontal flips when
    the width is a multiple of 4."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(self.proj(x), 4, ceil_mode=True)


class ConstantModel(nn.Module):
    """Ignores the image: the same logits everywhere, at stride 4 (ceil)."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.randn(K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = -(-x.shape[-2] // 4), -(-x.shape[-1] // 4)
        return self.logits.view(1, K, 1, 1).expand(x.shape[0], K, h, w)


@torch.no_grad()
def test_slide_with_a_crop_covering_the_image_is_whole():
    model = create_model("segformer_b0", num_classes=K).eval()
    x = torch.randn(2, 3, 64, 80)
    whole = predict_logits(model, x, (70, 90))
    assert whole.shape == (2, K, 70, 90)
    torch.testing.assert_close(predict_logits(model, x, (70, 90), mode="slide", crop=96, stride=64), whole)
    torch.testing.assert_close(predict_logits(model, x, (70, 90), mode="slide", crop=(64, 80), stride=32), whole)


@torch.no_grad()
def test_slide_averages_overlapping_windows():
    assert window_starts(100, 40, 30) == [0, 30, 60]
    assert window_starts(100, 40, 25) == [0, 25, 50, 60]  # the last window is flush with the end
    model = ConstantModel()
    out = predict_logits(model, torch.randn(1, 3, 100, 130), (100, 130), mode="slide", crop=40, stride=25)
    torch.testing.assert_close(out, model.logits.view(1, K, 1, 1).expand(1, K, 100, 130))
    with pytest.raises(ValueError, match="stride"):
        predict_logits(model, torch.randn(1, 3, 64, 64), (64, 64), mode="slide", crop=32, stride=40)


@torch.no_grad()
def test_flip_and_multiscale_tta():
    model = PixelModel()
    x = torch.randn(2, 3, 32, 48)
    plain = predict_logits(model, x, (32, 48)).softmax(1)
    torch.testing.assert_close(predict_logits(model, x, (32, 48), flip=True).softmax(1), plain)
    torch.testing.assert_close(predict_logits(model, x, (32, 48), mode="slide", crop=32, stride=16, flip=True)
                               .softmax(1), predict_logits(model, x, (32, 48), mode="slide", crop=32, stride=16)
                               .softmax(1))
    multi = predict_logits(model, x, (40, 50), scales=(0.5, 1.0, 1.5), flip=True)
    assert multi.shape == (2, K, 40, 50)
    torch.testing.assert_close(multi.exp().sum(1), torch.ones(2, 40, 50))  # log of mean probabilities


# ----------------------------------------------------------------------------- optimiser recipe


def test_param_groups_decoder_lr_and_no_decay():
    model = create_model("segformer_b0_rope_mixed", num_classes=K)
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3, weight_decay=0.05, head_lr_mult=10)}
    assert set(groups) == {"encoder", "encoder_no_decay", "head", "head_no_decay"}
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for g in groups.values() for p in g["params"]]
    assert sorted(seen) == sorted(names.values())  # every parameter exactly once
    for key, group in groups.items():
        assert group["lr"] == pytest.approx(1e-2 if key.startswith("head") else 1e-3)
        assert group["weight_decay"] == (0.0 if key.endswith("no_decay") else 0.05)
        in_head = {names[id(p)].startswith("decode_head.") for p in group["params"]}
        assert in_head == {key.startswith("head")}
    no_decay = {names[id(p)] for key in ("encoder_no_decay", "head_no_decay") for p in groups[key]["params"]}
    assert no_decay == model.no_weight_decay()
    assert any("rope" in n or "freq" in n for n in no_decay)
    assert all(n.endswith(".bias") or "norm" in n or "rope" in n or "freq" in n or "bn" in n or
               model.get_parameter(n).ndim <= 1 for n in no_decay)
    assert all(model.get_parameter(names[id(p)]).ndim > 1 for p in groups["encoder"]["params"])


def test_warmup_poly_and_cosine_schedules():
    schedule = WarmupDecay(total=100, warmup=10, power=1.0)
    assert [schedule(t) for t in (0, 5, 10, 55, 100, 120)] == pytest.approx([0, 0.5, 1.0, 0.5, 0.0, 0.0])
    assert WarmupDecay(100, 0, power=2.0)(50) == pytest.approx(0.25)
    cosine = WarmupDecay(total=110, warmup=10, kind="cosine", floor=0.1)
    assert [cosine(t) for t in (5, 10, 35, 60, 110, 130)] == pytest.approx(
        [0.5, 1.0, 0.1 + 0.9 * (1 + 2 ** -0.5) / 2, 0.55, 0.1, 0.1])
    with pytest.raises(ValueError, match="unknown schedule"):
        WarmupDecay(10, 0, kind="step")
    with pytest.raises(ValueError, match="min_lr_ratio"):
        WarmupDecay(10, 0, floor=1.0)

    model = nn.Linear(2, 2)
    config = OptimConfig(lr=0.1, weight_decay=0.0, warmup=0.1, poly_power=0.9)  # warmup: 10% of 50 = 5
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total=50)
    lrs = []
    for _ in range(50):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:6] == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[30] == pytest.approx(0.1 * (1 - 25 / 45) ** 0.9)
    with pytest.raises(ValueError, match="fraction"):
        OptimConfig(warmup=1.5).warmup_iters(10)


# ----------------------------------------------------------------------------- checkpoint files


class Custom:
    pass


def test_checkpoint_io_is_atomic_and_loads_only_weights(tmp_path, monkeypatch):
    from segformer_lab.engine.callbacks import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 3}, path)
    assert io.load_checkpoint(path)["global_step"] == 3

    def interrupted(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 4}, path)
    assert io.load_checkpoint(path)["global_step"] == 3 and list(tmp_path.iterdir()) == [path]
    monkeypatch.undo()

    torch.save({"state_dict": {}, "payload": Custom()}, path)  # would need unpickling a class
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        io.load_checkpoint(path)


# ----------------------------------------------------------------------------- configs


def test_resolve_config(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {name: segformer_b1}\noptim: {lr: 6e-5}\ntrainer: {max_epochs: 3, max_steps: -1}\n")
    config = resolve_config(path, ["optim.lr=1e-3", "data.train_transforms={name: rope_seed, size: [64, 64]}",
                                   "trainer.precision=bf16-mixed", "model.overrides.drop_path_rate=0.0"])
    assert config["optim"]["lr"] == 1e-3 and isinstance(resolve_config(path)["optim"]["lr"], float)
    assert config["model"]["name"] == "segformer_b1" and config["model"]["overrides"] == {"drop_path_rate": 0.0}
    assert config["data"]["train_transforms"] == {"name": "rope_seed", "size": [64, 64]}  # another pipeline
    config = resolve_config(config, ["data.train_transforms.size=[32, 32]", "data.train_transforms.jitter=null"])
    assert config["data"]["train_transforms"] == {"name": "rope_seed", "size": [32, 32], "jitter": None}
    assert config["trainer"]["max_epochs"] == 3 and config["trainer"]["precision"] == "bf16-mixed"
    assert config["data"]["batch_size"] == 16  # a default
    with pytest.raises(ValueError, match="unknown config key 'optim.learning_rate'"):
        resolve_config(path, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="key.path=value"):
        resolve_config(path, ["optim.lr"])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_resolve(path):
    from segformer_lab import get_config
    from segformer_lab.data import build_transforms

    config = resolve_config(path)
    get_config(config["model"]["name"], **config["model"]["overrides"])
    for key in ("train_transforms", "val_transforms"):
        params = dict(config["data"][key])
        build_transforms(params.pop("name"), **params)
    OptimConfig(**config["optim"]).warmup_iters(1000)
    if config["task"] == "segmentation":  # the published recipes: 16 per step on ADE20K, 8 on Cityscapes
        per_format = {"cityscapes": 8, "folder": 8}  # and 8 for fine-tuning on a folder (one GPU)
        assert config["data"]["batch_size"] == per_format.get(config["data"]["format"], 16)
