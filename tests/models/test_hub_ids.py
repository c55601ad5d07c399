"""Hugging Face Hub ids (``owner/name[@revision]``) wherever a checkpoint is accepted.

No network: each test fills a huggingface_hub cache in a temporary directory, laid out as
``snapshot_download`` leaves it (``helpers.hub_cache``), with checkpoints written by
transformers' own ``save_pretrained``, and turns huggingface_hub's offline mode on.
"""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import segformer_lab as sl
from datasets_on_disk import folder_mask, make_folder, save
from helpers import hub_cache, randomised
from segformer_lab.cli import main
from segformer_lab.engine import build_model, resolve_config
from segformer_lab.models import hub, mit_stages
from segformer_lab.models.checkpoint import to_hf_config
from segformer_lab.models.hub import HubError, parse_hub_id

transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

TOLERANCE = 1e-4  # as tests/models/test_parity.py: float32 noise between two implementations


def tiny_config(num_classes: int = 3) -> sl.ModelConfig:
    return sl.ModelConfig(stages=mit_stages((16, 32, 40, 64), (1, 1, 1, 1)), decoder=sl.DecoderConfig(width=32),
                          num_classes=num_classes)  # fmt: skip


def transformers_checkpoint(kind, directory, seed: int = 0):
    """A randomised transformers model of ``kind`` shaped like ``tiny_config``, saved by its
    own ``save_pretrained`` (config.json and model.safetensors)."""
    hf = kind(transformers.SegformerConfig(**to_hf_config(tiny_config())))
    randomised(hf, seed=seed, scale=0.02).eval().save_pretrained(directory)
    return hf


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Two segmentation checkpoints (two revisions of one repository) and an encoder-only
    one, as transformers writes them."""
    root = tmp_path_factory.mktemp("published")
    seg = [transformers_checkpoint(transformers.SegformerForSemanticSegmentation, root / f"seg{i}", seed=i)
           for i in range(2)]  # fmt: skip
    mit = transformers_checkpoint(transformers.SegformerForImageClassification, root / "mit")
    return root, seg, mit


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache, offline. huggingface_hub reads its environment once,
    when imported (maybe by an earlier test), so its constants are set too."""
    home = tmp_path / "hf_home"
    cache = home / "hub"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@torch.no_grad()
def logits(model, x=None):
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1)) if x is None else x
    out = model(pixel_values=x)
    return getattr(out, "logits", out)


def test_hub_ids_are_told_from_paths():
    assert parse_hub_id("nvidia/segformer-b0-finetuned-ade-512-512") == ("nvidia/segformer-b0-finetuned-ade-512-512",
                                                                         None)  # fmt: skip
    assert parse_hub_id("me/model.v2@refs/pr/3") == ("me/model.v2", "refs/pr/3")
    assert parse_hub_id("me/model@0123abc") == ("me/model", "0123abc")
    for path in ("segformer_b0", "runs/b0/model.safetensors", "/abs/dir", "./runs/b0", "../x/y", "a/b@", "me/-x"):
        assert parse_hub_id(path) is None, path
    assert parse_hub_id(Path("me/model")) is None  # a Path is always a path


def test_segmentation_checkpoint_by_hub_id_offline(published, hf_cache, caplog):
    root, (hf, _), _ = published
    hub_cache(hf_cache, "someone/segformer-tiny", root / "seg0")
    with caplog.at_level(logging.INFO, logger="segformer_lab"):
        model = sl.load_model("someone/segformer-tiny")
    assert "someone/segformer-tiny: Hugging Face Hub snapshot" in caplog.text
    assert model.config.num_classes == 3
    assert (logits(model) - logits(hf)).abs().max() < TOLERANCE

    for other in (sl.create_model(config=tiny_config(), pretrained="someone/segformer-tiny"),
                  sl.open_model("someone/segformer-tiny"), sl.Segmenter("someone/segformer-tiny").model):  # fmt: skip
        assert torch.equal(logits(other.eval()), logits(model))


def test_encoder_only_checkpoint_by_hub_id(published, hf_cache, caplog):
    """An ImageNet classifier (``nvidia/mit-b0``-like): its encoder into any segmentation
    model; the Hub's older repositories hold only ``pytorch_model.bin``."""
    root, _, mit = published
    legacy = root.parent / "mit-legacy"
    legacy.mkdir(exist_ok=True)
    (legacy / "config.json").write_bytes((root / "mit" / "config.json").read_bytes())
    torch.save(load_file(str(root / "mit" / "model.safetensors")), legacy / "pytorch_model.bin")
    hub_cache(hf_cache, "someone/mit-tiny", root / "mit")
    hub_cache(hf_cache, "legacy/mit-tiny", legacy)

    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = mit.segformer(pixel_values=x, output_hidden_states=True).hidden_states
    for repo in ("someone/mit-tiny", "legacy/mit-tiny"):
        model = sl.create_model(config=tiny_config(num_classes=7), pretrained=repo).eval()
        with torch.no_grad():
            features = model.encoder(x)
        assert len(features) == len(expected) == 4
        assert all((ours - theirs).abs().max() < TOLERANCE for ours, theirs in zip(features, expected)), repo
        with caplog.at_level(logging.WARNING, logger="segformer_lab"):
            assert sl.load_model(repo).config.num_classes == 150  # a fresh head, ADE20K's count
        assert "encoder-only" in caplog.text


def test_only_config_preprocessor_and_weights_are_fetched(published, hf_cache, monkeypatch):
    """allow_patterns: config.json, preprocessor_config.json (when there is one) and
    model.safetensors, else pytorch_model.bin from the same commit."""
    root, _, _ = published
    bin_only = root.parent / "bin-only"
    bin_only.mkdir(exist_ok=True)
    (bin_only / "config.json").write_bytes((root / "seg0" / "config.json").read_bytes())
    torch.save(load_file(str(root / "seg0" / "model.safetensors")), bin_only / "pytorch_model.bin")
    snapshot = hub_cache(hf_cache, "someone/bin-only", bin_only)
    calls = []
    real = huggingface_hub.snapshot_download

    def recording(**kwargs):
        calls.append((kwargs["revision"], kwargs["allow_patterns"]))
        return real(**kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    assert hub.download("someone/bin-only") == snapshot
    assert calls == [(None, ["config.json", "preprocessor_config.json", "model.safetensors"]),  # then the same commit:
                     (snapshot.name, ["config.json", "preprocessor_config.json", "pytorch_model.bin"])]

    (bin_only / "pytorch_model.bin").unlink()
    hub_cache(hf_cache, "someone/no-weights", bin_only)
    with pytest.raises(HubError, match=r"someone/no-weights: the Hugging Face Hub model has neither model.safetensors "
                                       r"nor pytorch_model.bin at revision main"):  # fmt: skip
        sl.load_model("someone/no-weights")


def test_a_hub_checkpoint_brings_its_preprocessor_config(published, hf_cache, tmp_path):
    """nvidia/segformer-b0-finetuned-ade-512-512 ships transformers' preprocessor_config.json
    (512x512, do_reduce_labels): load_model reads it, and Segmenter and eval use it."""
    root, _, _ = published
    repo = tmp_path / "with-processor"
    repo.mkdir()
    for name in ("config.json", "model.safetensors"):
        (repo / name).write_bytes((root / "seg0" / name).read_bytes())
    (repo / "preprocessor_config.json").write_text(json.dumps({  # nvidia's file, as on the Hub
        "do_normalize": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "SegformerImageProcessor", "image_std": [0.229, 0.224, 0.225],
        "do_reduce_labels": True, "resample": 2, "size": {"height": 512, "width": 512}}))
    hub_cache(hf_cache, "nvidia/segformer-tiny-512", repo)
    preprocessing = sl.load_model("nvidia/segformer-tiny-512").config.preprocessing
    assert preprocessing.size == (512, 512) and preprocessing.scale is None and preprocessing.reduce_zero_label
    segmenter = sl.Segmenter("nvidia/segformer-tiny-512")
    assert segmenter.input_size(100, 300) == (512, 512)
    assert "resize to 512x512" in segmenter.preprocessing_line and "stored with nvidia/segformer-tiny-512" in \
        segmenter.preprocessing_line


def test_revisions(published, hf_cache):
    root, (hf0, hf1), _ = published
    main_snapshot = hub_cache(hf_cache, "someone/segformer-tiny", root / "seg0")
    hub_cache(hf_cache, "someone/segformer-tiny", root / "seg1", revision="v1")
    x = torch.randn(1, 3, 64, 64)
    for spelling, hf in (("someone/segformer-tiny", hf0), ("someone/segformer-tiny@main", hf0),
                         ("someone/segformer-tiny@v1", hf1), (f"someone/segformer-tiny@{main_snapshot.name}", hf0)):
        assert (logits(sl.load_model(spelling), x) - logits(hf, x)).abs().max() < TOLERANCE, spelling
    with pytest.raises(HubError, match="someone/segformer-tiny@v2: no such file or directory, and as a Hugging Face "
                                       "Hub model id it could not be fetched"):  # fmt: skip
        sl.load_model("someone/segformer-tiny@v2")


def test_a_local_path_wins_over_a_hub_id(published, hf_cache, tmp_path, monkeypatch):
    root, (hf, _), _ = published
    hub_cache(hf_cache, "someone/segformer-tiny", root / "seg0")
    monkeypatch.chdir(tmp_path)
    local = randomised(sl.create_model(config=tiny_config()), seed=5).eval()
    local.save_pretrained(tmp_path / "someone" / "segformer-tiny")
    for loaded in (sl.load_model("someone/segformer-tiny"), sl.open_model("someone/segformer-tiny"),
                   sl.create_model(config=tiny_config(), pretrained="someone/segformer-tiny").eval()):  # fmt: skip
        assert torch.equal(logits(loaded), logits(local))


def test_the_offline_miss_says_what_was_tried_and_how_to_fetch(hf_cache, monkeypatch):
    with pytest.raises(HubError) as info:
        sl.load_model("nvidia/segformer-b0-finetuned-ade-512-512")
    message = str(info.value)
    assert isinstance(info.value, sl.CheckpointError) and isinstance(info.value, FileNotFoundError)
    assert "\n" not in message
    assert message.startswith("nvidia/segformer-b0-finetuned-ade-512-512: no such file or directory, and as a "
                              "Hugging Face Hub model id it could not be fetched")  # fmt: skip
    assert f"tried the Hugging Face cache {hf_cache} (HF_HUB_CACHE), without network (HF_HUB_OFFLINE is set)" in message
    assert "'hf download nvidia/segformer-b0-finetuned-ade-512-512 --local-dir DIR' and pass DIR" in message
    assert ("python -c \"from huggingface_hub import snapshot_download; "
            "snapshot_download('nvidia/segformer-b0-finetuned-ade-512-512')\"") in message  # fmt: skip
    with pytest.raises(HubError, match=r"'hf download me/x --revision v1 --local-dir DIR'.*revision='v1'\)"):
        sl.open_model("me/x@v1")

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(HubError, match=r"me/x: no such file or directory, and reading it as a Hugging Face Hub model "
                                       r"id needs huggingface_hub: pip install 'segformer-lab\[hub\]'"):  # fmt: skip
        sl.load_model("me/x")
    with pytest.raises(FileNotFoundError, match="no checkpoint at runs/b0/weights.pth"):
        sl.load_model("runs/b0/weights.pth")  # not spelled as a Hub id: no Hub involved


def test_a_recipe_takes_a_hub_id(hf_cache, tmp_path):
    source = randomised(sl.create_model("segformer_b0", num_classes=3)).eval()
    source.save_pretrained(tmp_path / "b0")
    hub_cache(hf_cache, "someone/b0-three", tmp_path / "b0")
    config = resolve_config({"model": {"name": "segformer_b0", "num_classes": 3, "pretrained": "someone/b0-three"}})
    model = build_model(config["model"]).eval()
    assert torch.equal(logits(model), logits(source))


def test_the_commands_take_a_hub_id(published, hf_cache, tmp_path, capsys, monkeypatch):
    root, _, _ = published
    hub_cache(hf_cache, "someone/segformer-tiny", root / "seg0")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("task: classification\n")  # run from inside a run directory: ignored
    data = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    assert main(["eval", "someone/segformer-tiny", "--data", f"folder:{data}", "--split", "train",
                 "--num-workers", "0"]) == 0  # fmt: skip
    assert "someone/segformer-tiny on folder:" in capsys.readouterr().out

    image = save(np.zeros((40, 60, 3), np.uint8), tmp_path / "images" / "a.png")
    assert main(["predict", "someone/segformer-tiny", str(image), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a.png").is_file()

    assert main(["bench", "someone/segformer-tiny", "--size", "64", "64", "--repeats", "1", "--warmup", "0"]) == 0
    assert "input 1x3x64x64" in capsys.readouterr().out

    assert main(["export", "someone/segformer-tiny", "--transformers", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()

    assert main(["eval", "someone/missing", "--data", f"folder:{data}"]) == 2
    assert "segformer-lab eval: error: someone/missing: no such file or directory" in capsys.readouterr().err


def test_a_classifier_by_hub_id(hf_cache, tmp_path):
    classifier = randomised(sl.ImageClassifier(tiny_config(num_classes=10))).eval()
    classifier.save_pretrained(tmp_path / "cls")
    hub_cache(hf_cache, "someone/tiny-classifier", tmp_path / "cls")
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(logits(sl.load_classifier("someone/tiny-classifier"), x), logits(classifier, x))
    model = sl.create_classifier(config=tiny_config(num_classes=10), pretrained="someone/tiny-classifier").eval()
    assert torch.equal(logits(model, x), logits(classifier, x))
