"""The generated scene-parsing dataset: layout, loading, determinism, cache, sizes, classes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage")

from segformer_lab.cli import main  # noqa: E402
from segformer_lab.data import (  # noqa: E402
    IGNORE_INDEX,
    SCENE_AMBIGUOUS_PAIRS,
    SCENE_CLASSES,
    SCENE_PALETTE,
    build_dataset,
    decode_mask,
    generate_scenes,
    render_scene,
    scenes_ready,
)

SMALL = dict(train=12, val=4, seed=0, size=(64, 64))


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_scenes(tmp_path_factory.mktemp("scenes") / "small", **SMALL)


def test_layout_and_metadata(small):
    for folder, ext in (("images", ".jpg"), ("annotations", ".png")):
        for split, count in (("training", 12), ("validation", 4)):
            files = sorted((small / folder / split).iterdir())
            assert len(files) == count and all(f.suffix == ext for f in files)
    assert (small / "classes.txt").read_text().splitlines() == list(SCENE_CLASSES)
    meta = json.loads((small / "dataset.json").read_text())
    assert meta["params"]["seed"] == 0 and meta["params"]["size"] == [64, 64]
    assert meta["counts"] == {"train": 12, "val": 4} and meta["classes"] == list(SCENE_CLASSES)
    assert len(SCENE_CLASSES) >= 8 and len(SCENE_PALETTE) == len(SCENE_CLASSES)
    assert not [p for p in small.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_loads_through_the_data_layer(small):
    k = len(SCENE_CLASSES)
    ignored = 0
    for split, count in (("train", 12), ("val", 4)):
        dataset = build_dataset("ade20k", small, split, num_classes=k)
        assert len(dataset) == count and dataset.classes == SCENE_CLASSES
        for sample in dataset:
            labels = sample["labels"]
            assert sample["pixel_values"].shape[1:] == labels.shape
            valid = labels[labels != IGNORE_INDEX]
            assert valid.min() >= 0 and valid.max() < k
            ignored += int((labels == IGNORE_INDEX).sum())
    assert ignored > 0  # unlabelled pixels (0 in the files) become 255
    # the class names come from the dataset's classes.txt, not ADE20K's 150
    assert build_dataset("ade20k", small, "val").classes == tuple(SCENE_CLASSES)
    raw = decode_mask(small / "annotations" / "training" / "scene_000000.png", "mask")
    assert raw.max() <= k and (raw == 0).any()


def test_deterministic(small, tmp_path):
    again = generate_scenes(tmp_path / "again", **SMALL, workers=2)
    assert digest(again) == digest(small)
    other = generate_scenes(tmp_path / "other", **{**SMALL, "seed": 1})
    a, b = digest(small), digest(other)
    assert a.keys() == b.keys() and sum(a[f] != b[f] for f in a if f.startswith("images")) == 16


def test_cache_reuse_and_regeneration(tmp_path):
    out = tmp_path / "cache"
    params = dict(train=3, val=1, seed=0, size=(48, 48))
    generate_scenes(out, **params)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert scenes_ready(out, **params)
    assert generate_scenes(out, **params) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps  # nothing rewritten

    assert not scenes_ready(out, **{**params, "val": 2})
    generate_scenes(out, **{**params, "val": 2})  # other parameters: regenerated in place
    assert len(list((out / "images" / "validation").iterdir())) == 2
    assert json.loads((out / "dataset.json").read_text())["params"]["val"] == 2

    victim = out / "annotations" / "training" / "scene_000001.png"
    victim.unlink()  # incomplete: regenerated
    assert not scenes_ready(out, **{**params, "val": 2})
    generate_scenes(out, **{**params, "val": 2})
    assert victim.is_file() and scenes_ready(out, **{**params, "val": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # temporary directories are gone

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_scenes(foreign, **params)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_validation_sizes(small):
    train = {Image.open(p).size for p in (small / "images" / "training").iterdir()}
    assert train == {(64, 64)}
    sizes = [Image.open(p).size for p in sorted((small / "images" / "validation").iterdir())]
    assert len(set(sizes)) > 1 and len({w / h for w, h in sizes}) > 1
    assert all(w % 32 or h % 32 for w, h in sizes)
    assert min(sizes[0]) >= 128  # every fourth is at least twice the training size
    for image, mask in zip(sorted((small / "images" / "validation").iterdir()),
                           sorted((small / "annotations" / "validation").iterdir())):
        assert Image.open(image).size == Image.open(mask).size


@pytest.fixture(scope="module")
def sample():
    """64 scenes in memory: images, raw annotations."""
    return [render_scene((5, 0, i), (64, 64)) for i in range(64)]


def test_every_class_appears(sample, small):
    present = set()
    for _, label in sample:
        present |= set(np.unique(label).tolist())
    assert present == set(range(len(SCENE_CLASSES) + 1))  # 0 (unlabelled) and every class
    in_files = set()
    for path in (small / "annotations").rglob("*.png"):
        in_files |= set(np.unique(decode_mask(path, str(path))).tolist())
    assert len(in_files) >= len(SCENE_CLASSES) - 2  # 16 small images already show nearly all


def test_same_appearance_different_class(sample):
    """Each ambiguous pair: the per-image mean colours of the two classes are not told apart
    by a two-sample test (|z| < 4 in every channel), while their vertical positions are far
    apart; the same test does tell different-looking classes apart (class c is raw c + 1)."""
    index = {name: i + 1 for i, name in enumerate(SCENE_CLASSES)}
    colours: dict[int, list[np.ndarray]] = {i: [] for i in index.values()}
    heights: dict[int, list[float]] = {i: [] for i in index.values()}
    for image, label in sample:
        rows = np.broadcast_to(np.arange(label.shape[0])[:, None] / label.shape[0], label.shape)
        for raw in colours:
            where = label == raw
            if where.sum() >= 4:
                colours[raw].append(image[where].mean(axis=0))
                heights[raw].append(float(rows[where].mean()))

    def z(a: int, b: int) -> np.ndarray:
        x, y = np.asarray(colours[a]), np.asarray(colours[b])
        return (x.mean(0) - y.mean(0)) / np.sqrt(x.var(0) / len(x) + y.var(0) / len(y))

    for upper, lower in SCENE_AMBIGUOUS_PAIRS:
        a, b = index[upper], index[lower]
        assert len(colours[a]) >= 10 and len(colours[b]) >= 10, (upper, lower)
        assert np.abs(z(a, b)).max() < 4, (upper, lower, z(a, b))
        assert np.mean(heights[b]) - np.mean(heights[a]) > 0.2, (upper, lower)
    assert np.abs(z(index["sky"], index["grass"])).max() > 10
    assert np.abs(z(index["wall"], index["grass"])).max() > 5


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "scenes", "--out", str(out), "--train", "4", "--val", "2", "--size", "64", "64"]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == str(out) and "4 train" in first[1] and "generated" in first[1]
    assert main(args) == 0
    assert "reused cache" in capsys.readouterr().out
    assert len(list((out / "images" / "training").iterdir())) == 4


def test_position_free_scenes_turn_half_of_the_scenes_upside_down(small, tmp_path):
    """The control dataset of ``study rope``: the same scenes, each upside down (image and
    mask together) with probability 1/2, so the sky is as likely at the bottom as at the top."""
    free = generate_scenes(tmp_path / "free", **SMALL, position_free=True)
    assert scenes_ready(free, **SMALL, position_free=True) and not scenes_ready(free, **SMALL)
    assert json.loads((free / "dataset.json").read_text())["params"]["position_free"] is True
    flipped = kept = 0
    for split, count in (("training", SMALL["train"]), ("validation", SMALL["val"])):
        for i in range(count):
            name = f"annotations/{split}/scene_{i:06d}.png"
            natural, turned = decode_mask(small / name, name), decode_mask(free / name, name)
            if np.array_equal(turned, natural):
                kept += 1
            else:
                assert np.array_equal(turned, natural[::-1]), name  # the same scene, upside down
                flipped += 1
    assert flipped >= 4 and kept >= 4  # 16 fair coins: both sides well represented
    sky = SCENE_CLASSES.index("sky") + 1  # raw value of class c is c + 1
    rows_with_sky = [np.flatnonzero((decode_mask(free / f"annotations/training/scene_{i:06d}.png", "m") == sky)
                                    .any(axis=1)) for i in range(SMALL["train"])]
    assert any(r.size and r.mean() > 32 for r in rows_with_sky)  # sky found in the lower half somewhere
