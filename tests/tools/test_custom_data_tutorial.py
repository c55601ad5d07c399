"""docs/custom-data.md, run: every command of the tutorial, in order, on a folder dataset
written here, with ``nvidia/mit-b0`` (random weights of its shape, saved by transformers)
in an offline Hugging Face cache.
Only the training length and sizes are shortened (``FAST_TRAINING``), so the page cannot
name an option, a file or an output that does not exist."""

from __future__ import annotations

import re
import shlex
import shutil

import huggingface_hub
import numpy as np
import pytest
from datasets_on_disk import save
from helpers import REPO, hub_cache
from PIL import Image

from segformer_lab import cli

transformers = pytest.importorskip("transformers")

TUTORIAL = REPO / "docs" / "custom-data.md"
CLASSES = ("sky", "road", "car")
# appended to the tutorial's `train` command: two steps at 64 px instead of 20k at 512
FAST_TRAINING = [
    "--set", "trainer.max_steps=2", "--set", "trainer.val_check_interval=2", "--set", "trainer.accelerator=cpu",
    "--set", "trainer.devices=1", "--set", "trainer.log_every_n_steps=1", "--set", "data.batch_size=2",
    "--set", "data.num_workers=0", "--set", "checkpoint.every_n_train_steps=1",
    "--set", "data.train_transforms={name: segformer_ade, crop_size: [64, 64], scale: [128, 64], ratio_range: [1.0, 1.0]}",
    "--set", "data.val_transforms={name: val, scale: [128, 64], multiple_of: 32}",
]  # fmt: skip


def commands(markdown: str) -> list[list[str]]:
    """The ``segformer-lab`` commands of the page's ```bash blocks, continuation lines joined."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("segformer-lab "):
                found.append(shlex.split(line, comments=True)[1:])
    return found


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def scene_mask(h: int, w: int, shift: int) -> np.ndarray:
    """Sky above, road below, a car on the road: every class present, as in real data."""
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2:] = 1
    mask[h // 2 + 4: h // 2 + 14, 10 + shift: 30 + shift] = 2
    return mask


def picture(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colours = np.array([[120, 170, 230], [90, 90, 90], [200, 30, 30]], np.uint8)
    noise = rng.integers(-20, 21, (*mask.shape, 3))
    return np.clip(colours[mask].astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """The user's directory: ``my-data/`` in the folder layout, ``photo.jpg``, the recipes
    (``configs/``, as in a checkout of this repository), and a Hugging
    Face cache (offline) holding an ``nvidia/mit-b0`` as transformers saves one."""
    rng = np.random.default_rng(0)
    data = tmp_path / "my-data"
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            mask = scene_mask(48, 64, shift=5 * i)
            save(picture(mask, rng), data / "images" / split / f"{split}{i}.jpg")
            save(mask, data / "masks" / split / f"{split}{i}.png")
    (data / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    Image.fromarray(picture(scene_mask(48, 64, 0), rng)).save(tmp_path / "photo.jpg")
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "finetune_folder.yaml", tmp_path / "configs")

    # transformers' default SegformerConfig is MiT-B0's
    transformers.SegformerForImageClassification(transformers.SegformerConfig()).save_pretrained(tmp_path / "mit-b0")
    cache = tmp_path / "hf_home" / "hub"
    hub_cache(cache, "nvidia/mit-b0", tmp_path / "mit-b0")
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_command_of_the_tutorial_runs(workspace, capsys):
    page = TUTORIAL.read_text()
    steps = commands(page)
    assert [argv[0] for argv in steps] == ["data", "data", "train", "eval", "predict", "export"]
    for argv in steps:
        if argv[0] == "train":
            argv = [*argv, *FAST_TRAINING]
        code = cli.main(argv)
        out = capsys.readouterr()
        assert code == 0, f"segformer-lab {shlex.join(argv)} exited {code}:\n{out.err[-2000:]}"
        if argv[:2] == ["data", "check"]:
            assert "num_classes: 3" in out.out
        if argv[0] == "eval":
            assert all(name in out.out for name in CLASSES)

    run = workspace / "runs" / "my-model"
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["confusion.png", "iou.png", "per_class.csv"]
    assert (workspace / "my-data-report.json").is_file() and any((workspace / "my-data-grid").iterdir())
    predictions = workspace / "predictions"
    assert (predictions / "val0.png").is_file() and (predictions / "val0_confidence.png").is_file()
    assert (workspace / "my-model.onnx").is_file()

    for block in python_blocks(page):
        namespace: dict = {}
        exec(compile(block, str(TUTORIAL), "exec"), namespace)
        segmenter = namespace["segmenter"]
        assert segmenter.class_names == list(CLASSES)
        assert namespace["labels"].shape == namespace["confidence"].shape == (48, 64)
        assert {s["label"] for s in namespace["segments"]} <= set(CLASSES)

