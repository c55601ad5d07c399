"""Encoder pre-training as image classification: the classifier over every encoder, its
checkpoints in a segmentation model, top-1 / top-5, and a Tiny-ImageNet run through
``segformer-lab train`` on a tree the tests write (``make_tiny`` of test_data)."""

from __future__ import annotations

import csv
import logging
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from datasets_on_disk import make_tiny
from torch import nn

import segformer_lab as sl
from segformer_lab import cli
from segformer_lab.engine import ClassificationTask, load_for_eval, resolve_config
from segformer_lab.engine.optim import param_groups
from segformer_lab.models import ImageClassifier, SegmentationModel, load_weights
from segformer_lab.models.factory import open_model
from segformer_lab.models.pretrained import MODEL_CONFIG_KEY

NUM_CLASSES = 3  # make_tiny's wnids


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stages():
    """BoostFormer-B0 with one block per stage (the ``shallow`` fixture's rule), as the
    ``stages`` override a config takes."""
    config = sl.get_config("boostformer_b0")
    return config.with_stages(depth=[1] * len(config.stages)).to_dict()["stages"]


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory, stages):
    """Two epochs of 3 steps of classification through ``segformer-lab train``."""
    root = make_tiny(tmp_path_factory.mktemp("data"))
    config = {
        "task": "classification",
        "model": {"name": "boostformer_b0", "num_classes": NUM_CLASSES, "overrides": {"stages": stages}},
        "data": {"format": "tiny_imagenet", "root": str(root), "train_split": "train", "val_split": "val",
                 "train_transforms": {"name": "classify", "size": 32, "train": True},
                 "val_transforms": {"name": "classify", "size": 32}, "batch_size": 2, "val_batch_size": 4,
                 "num_workers": 0},
        "optim": {"lr": 1e-3, "weight_decay": 0.05, "warmup": 0.25},
        "classification": {"label_smoothing": 0.1},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    }
    path = tmp_path_factory.mktemp("configs") / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path_factory.mktemp("runs") / "pretrain"
    assert cli.main(["train", str(path), "--out", str(run_dir)]) == 0
    return run_dir


def test_pretraining_run_directory(pretrain_run):
    for name in ("config.yaml", "config.json", "model.safetensors", "checkpoints/last.ckpt"):
        assert (pretrain_run / name).is_file(), name
    (best,) = (pretrain_run / "checkpoints").glob("best-*.ckpt")
    assert yaml.safe_load((pretrain_run / "config.yaml").read_text())["task"] == "classification"
    with open(pretrain_run / "logs/csv/version_0/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"train/loss", "val/top1", "val/top5", "lr-AdamW/encoder"} <= set(rows[0])
    top1 = [float(r["val/top1"]) for r in rows if r["val/top1"]]
    assert [float(r["val/top5"]) for r in rows if r["val/top5"]] == [100.0, 100.0]  # 3 classes: top-5 is top-3

    assert torch.load(pretrain_run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
    best = torch.load(best, map_location="cpu", weights_only=True)
    (monitor,) = [v for k, v in best["callbacks"].items() if k.startswith("BestCheckpoint") and "val/top1" in k]
    assert float(monitor["best_model_score"]) == pytest.approx(max(top1))
    classifier = ImageClassifier.from_pretrained(pretrain_run)  # the run's weights are the best classifier
    assert classifier.config.num_classes == NUM_CLASSES and not classifier.training
    for key, value in classifier.state_dict().items():
        assert torch.equal(value, best["state_dict"][f"model.{key}"]), key

    with pytest.raises(ValueError, match="classification run"):
        load_for_eval(pretrain_run)


def test_run_checkpoint_describes_its_model(pretrain_run, stages):
    """A run's .ckpt carries its model's config: it opens alone, as a classifier or, its
    encoder, as a segmentation model."""
    last = pretrain_run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    config = ImageClassifier.from_pretrained(pretrain_run).pretrained_config()
    assert checkpoint[MODEL_CONFIG_KEY] == config and config["task"] == "classification"
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    classifier = sl.create_classifier("boostformer_b0", num_classes=NUM_CLASSES, pretrained=last, stages=stages)
    assert all(torch.equal(v, weights[k]) for k, v in classifier.state_dict().items())
    model = open_model(last)
    assert isinstance(model, SegmentationModel) and model.config.num_classes == 150 and not model.training
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items() if k.startswith("encoder."))


def test_segmentation_takes_the_pretrained_encoder(pretrain_run, stages, caplog):
    weights = load_file(str(pretrain_run / "model.safetensors"))
    assert {k for k in weights if not k.startswith("encoder.")} == {"classifier.weight", "classifier.bias"}
    for source in (pretrain_run, pretrain_run / "model.safetensors"):  # the directory, or the bare file
        model = SegmentationModel(sl.get_config("boostformer_b0", stages=stages))
        head = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
        report = load_weights(model, source)
        assert report.format == "segformer_lab_classification"
        assert sorted(report.unused) == ["classifier.bias", "classifier.weight"]
        assert report.missing == [f"decode_head.{k}" for k in head]
        assert any("the decode head is freshly initialised" in n for n in report.notes)
        assert any("image-classification head" in n and "classifier.weight" in n for n in report.notes)
        encoder = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
        assert encoder.keys() == {k for k in weights if k.startswith("encoder.")}
        assert all(torch.equal(v, weights[k]) for k, v in encoder.items())
        assert all(torch.equal(v, head[k]) for k, v in model.decode_head.state_dict().items())

    with caplog.at_level(logging.INFO, logger="segformer_lab"):
        model = sl.create_model("boostformer_b0", num_classes=150, pretrained=pretrain_run, stages=stages)
    assert "encoder-only: the decode head is freshly initialised" in caplog.text
    assert "segformer_lab_classification format" in caplog.text and "classifier.weight" in caplog.text
    assert torch.equal(model.encoder.patch_embeddings[0].proj.weight, weights["encoder.patch_embeddings.0.proj.weight"])
    assert sl.load_model(pretrain_run).config.num_classes == 150  # a segmentation model, ADE20K's classes


def test_wrong_architecture_is_refused(pretrain_run, stages):
    deeper = r"another architecture.*missing from the checkpoint: encoder\.block\.0\.1\."
    with pytest.raises(sl.CheckpointError, match=deeper):
        sl.create_model("boostformer_b0", pretrained=pretrain_run)  # two blocks per stage
    embedding = (r"encoder\.patch_embeddings\.0\.proj\.weight has shape \(32, 3\) in the checkpoint but "
                 r"\(32, 3, 7, 7\) in the model")  # BoostFormer's pooling embedding against SegFormer's conv
    with pytest.raises(sl.CheckpointError, match=embedding):
        sl.create_model("segformer_b0", pretrained=pretrain_run / "model.safetensors")

    # a classifier takes all of a classifier checkpoint of its own architecture
    head = r"classifier\.weight has shape \(3, 256\) in the checkpoint but \(5, 256\)"
    with pytest.raises(sl.CheckpointError, match=head):
        sl.create_classifier("boostformer_b0", num_classes=5, pretrained=pretrain_run, stages=stages)
    classifier = sl.create_classifier("boostformer_b0", num_classes=3, pretrained=pretrain_run, stages=stages)
    weights = load_file(str(pretrain_run / "model.safetensors"))
    assert all(torch.equal(v, weights[k]) for k, v in classifier.state_dict().items())


def test_classifier_over_every_encoder(tmp_path):
    """Forward at the smallest input (the ``shallow`` fixture's depths), encoder names as
    the segmentation model's, no weight decay on the head's bias, a bit-exact save / load."""
    for name in sl.list_models():
        config = sl.get_config(name, num_classes=4)
        config = config.with_stages(depth=[2 if s.deformable_blocks else 1 for s in config.stages],
                                    deformable_blocks=[(1,) if s.deformable_blocks else () for s in config.stages])
        model = ImageClassifier(config)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4), name
    names = [k for k in SegmentationModel(config).state_dict() if k.startswith("encoder.")]
    assert list(model.state_dict()) == [*names, "classifier.weight", "classifier.bias"]
    groups = {g["name"]: g["params"] for g in param_groups(model, 1e-3, 0.05)}
    assert any(p is model.classifier.bias for p in groups["encoder_no_decay"])
    assert any(p is model.classifier.weight for p in groups["encoder"])

    model.save_pretrained(tmp_path)
    loaded = sl.load_classifier(tmp_path)
    x = torch.randn(1, 3, 48, 64)
    assert torch.equal(loaded(x), model.eval()(x)) and loaded.config == model.config
    SegmentationModel(config).save_pretrained(tmp_path / "segmentation")
    with pytest.raises(sl.CheckpointError, match="not an image classifier"):
        sl.create_classifier(config=config, pretrained=tmp_path / "segmentation")


class FixedLogits(nn.Module):
    """``model(x)``: the logits of the samples whose indices are ``x[:, 0, 0, 0]``."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.config = logits, SimpleNamespace(num_classes=logits.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0, 0, 0].long()]


@pytest.mark.filterwarnings("ignore:.*self.log")
def test_top1_top5_against_a_hand_count():
    # 7 classes; the true label of sample i sits at rank RANKS[i] (0 = the largest logit)
    ranks, labels = [0, 1, 4, 5, 6, 0], torch.tensor([2, 0, 6, 3, 1, 5])
    logits = torch.empty(6, 7)
    for i, (rank, label) in enumerate(zip(ranks, labels)):
        others = [c for c in torch.randperm(7).tolist() if c != label]
        order = others[:rank] + [int(label)] + others[rank:]  # classes from largest to smallest logit
        logits[i, order] = torch.arange(7, 0, -1, dtype=torch.float)
    # by hand: rank 0 twice -> top-1 2/6; ranks < 5: 0, 1, 4, 0 -> top-5 4/6
    module = ClassificationTask(FixedLogits(logits))
    images = torch.arange(6, dtype=torch.float)[:, None, None, None].expand(6, 3, 1, 1)
    module.validation_step({"pixel_values": images[:4], "label": labels[:4]}, 0)
    module.validation_step({"pixel_values": images[4:], "label": labels[4:]}, 1)
    module.on_validation_epoch_end()
    assert module.val_scores["top1"].item() == pytest.approx(2 / 6)
    assert module.val_scores["top5"].item() == pytest.approx(4 / 6)


def test_task_is_checked():
    assert resolve_config({})["task"] == "segmentation"
    with pytest.raises(ValueError, match="unknown task 'detection'"):
        resolve_config({"task": "detection"})


def test_input_resizer_starts_fresh_under_a_pretrained_encoder(tmp_path):
    config = sl.get_config("segformer_b2_resizer_input", num_classes=4).with_stages(depth=1)
    ImageClassifier(config).save_pretrained(tmp_path)  # a classifier has no input resizer
    report = load_weights(SegmentationModel(config), tmp_path)
    assert any(k.startswith("input_resizer.") for k in report.missing)
    assert any("the decode head and input resizer are freshly initialised" in n for n in report.notes)
