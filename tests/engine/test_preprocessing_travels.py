"""A model carries how to use it (issue 20): a briefly trained run, its model files copied
out, its float32 ONNX export and its transformers export are all scored and run with the
run's one preprocessing, and changing the stored preprocessing changes every consumer."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets_on_disk import make_blocky_ade
from PIL import Image

import segformer_lab as sl
from segformer_lab import cli
from segformer_lab.data import Preprocessing
from segformer_lab.engine import resolve_config, train
from segformer_lab.engine.recipe import recipe_preprocessing
from segformer_lab.inference import open_segmenter
from segformer_lab.models import mit_stages

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("sky", "water", "grass", "road")  # the blocky dataset's raw labels 1..4
STORED = Preprocessing(scale=(64, 32))  # the run's validation: short side 32 (the default would be 512)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A run of 4 steps of a one-block-per-stage segformer_b0 on the tiny blocky
    ADE20K-layout dataset (4 named classes), its model files copied out, and its float32
    ONNX export."""
    root = make_blocky_ade(tmp_path_factory.mktemp("data"))
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    stages = json.loads(json.dumps([asdict(s) for s in mit_stages((32, 64, 160, 256), (1, 1, 1, 1))]))
    config = {
        "model": {"name": "segformer_b0", "num_classes": len(CLASSES),
                  "overrides": {"drop_path_rate": 0.0, "stages": stages}},
        "data": {"format": "ade20k", "root": str(root), "train_split": "training", "val_split": "validation",
                 "train_transforms": {"name": "rope_seed", "size": [64, 64]},
                 "val_transforms": {"name": "val", "scale": list(STORED.scale)}, "batch_size": 2,
                 "num_workers": 0},
        "optim": {"lr": 2e-3, "warmup": 0.25},
        "trainer": {"max_steps": 4, "max_epochs": 1, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    }
    base = tmp_path_factory.mktemp("scenario")
    (base / "tiny.yaml").write_text(yaml.safe_dump(config))
    run = base / "run"
    assert cli.main(["train", str(base / "tiny.yaml"), "--out", str(run)]) == 0
    files = base / "files"
    files.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run / name, files / name)
    pytest.importorskip("onnxruntime")
    assert cli.main(["export", str(run), "--onnx", str(base / "run.onnx"), "--no-check"]) == 0
    return {"root": root, "run": run, "files": files, "onnx": base / "run.onnx", "base": base}


def miou(capsys, tmp_path: Path, *args: str) -> tuple[float, str]:
    """``eval`` of ``args``: its mIoU (from its JSON) and what it printed."""
    capsys.readouterr()  # earlier output is not this command's
    target = tmp_path / "eval.json"
    assert cli.main(["eval", *args, "--num-workers", "0", "--json", str(target)]) == 0
    return json.loads(target.read_text())["results"][0]["mIoU"], capsys.readouterr().out


def test_training_stores_the_validation_preprocessing_with_every_copy_of_the_weights(trained):
    stored = json.loads((trained["run"] / "config.json").read_text())["preprocessing"]
    assert Preprocessing.from_dict(stored) == STORED.replace(reduce_zero_label=True)  # ADE20K: 0 is "other"
    assert sl.load_model(trained["files"]).config.preprocessing.scale == (64, 32)
    assert sl.load_model(trained["run"] / "checkpoints" / "last.ckpt").config.preprocessing.scale == (64, 32)
    assert sl.OnnxSegmenter(trained["onnx"]).preprocessing.scale == (64, 32)


def test_run_model_files_and_onnx_score_the_same(trained, capsys, tmp_path):
    data = f"ade20k:{trained['root']}"
    run, printed = miou(capsys, tmp_path, str(trained["run"]))
    assert printed.count("preprocessing: ") == 1
    assert "short side <= 32 and long side <= 64 (keep ratio)" in printed and "config.yaml" in printed
    files, printed = miou(capsys, tmp_path, str(trained["files"]), "--data", data)
    assert "stored with" in printed
    onnx, printed = miou(capsys, tmp_path, str(trained["onnx"]), "--data", data)
    assert "stored with" in printed and "short side <= 32" in printed
    assert files == pytest.approx(run, abs=0.1) and onnx == pytest.approx(run, abs=0.1)
    # the default protocol (before: what model files and the export were scored with) gives another number
    default, printed = miou(capsys, tmp_path, str(trained["files"]), "--data", data, "--scale", "2048", "512")
    assert "scale from the options" in printed and default != pytest.approx(run, abs=0.1)


def stored_scale(trained: dict[str, Path], scale: tuple[int, int]) -> tuple[Path, Path]:
    """Copies of the model files and of the ONNX file whose stored preprocessing has ``scale``."""
    import onnx

    files = trained["base"] / f"files-{scale[0]}x{scale[1]}"
    shutil.copytree(trained["files"], files, dirs_exist_ok=True)
    config = json.loads((files / "config.json").read_text())
    config["preprocessing"]["scale"] = list(scale)
    (files / "config.json").write_text(json.dumps(config))
    proto = onnx.load(str(trained["onnx"]))
    (entry,) = [p for p in proto.metadata_props if p.key == "preprocessing"]
    entry.value = json.dumps({**json.loads(entry.value), "scale": list(scale)})
    onnx_path = files.with_suffix(".onnx")
    onnx.save(proto, str(onnx_path))
    return files, onnx_path


def test_changing_the_stored_scale_changes_every_consumer_alike(trained, capsys, tmp_path):
    """One definition: eval (model files and ONNX), predict and Segmenter all follow the
    stored scale exactly as they follow the same scale given as an option."""
    files, onnx_file = stored_scale(trained, (96, 48))
    data = f"ade20k:{trained['root']}"
    given, _ = miou(capsys, tmp_path, str(trained["files"]), "--data", data, "--scale", "96", "48")
    before, _ = miou(capsys, tmp_path, str(trained["files"]), "--data", data)
    changed, printed = miou(capsys, tmp_path, str(files), "--data", data)
    changed_onnx, _ = miou(capsys, tmp_path, str(onnx_file), "--data", data)
    assert "short side <= 48 and long side <= 96" in printed
    assert changed == pytest.approx(given, abs=1e-6) and changed_onnx == pytest.approx(given, abs=0.1)
    assert changed != pytest.approx(before, abs=1e-3)

    image = (np.random.default_rng(1).integers(0, 256, (60, 90, 3))).astype(np.uint8)
    for source in (files, onnx_file):
        segmenter = open_segmenter(source)
        assert segmenter.input_size(60, 90) == (48, 72)  # short side 48, as stored
        np.testing.assert_array_equal(segmenter.predict(image), sl.Segmenter(trained["files"], scale=(96, 48))
                                      .predict(image))
    Image.fromarray(image).save(tmp_path / "a.png")
    assert cli.main(["predict", str(files), str(tmp_path / "a.png"), "--out", str(tmp_path / "stored")]) == 0
    assert "short side <= 48" in capsys.readouterr().out
    assert cli.main(["predict", str(trained["files"]), str(tmp_path / "a.png"), "--out", str(tmp_path / "given"),
                     "--scale", "96", "48"]) == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "stored" / "a.png")),
                          np.array(Image.open(tmp_path / "given" / "a.png")))


def test_predict_and_segmenter_of_a_run_default_to_its_protocol(trained, capsys, tmp_path):
    segmenter = sl.Segmenter(trained["run"])
    assert segmenter.preprocessing.scale == (64, 32) and segmenter.input_size(60, 90) == (32, 48)
    Image.fromarray(np.zeros((60, 90, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli.main(["predict", str(trained["run"]), str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("preprocessing: ") == 1 and "short side <= 32" in printed and "stored with" in printed


def test_transformers_pipeline_opens_the_export_and_agrees_with_segmenter(trained, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "hf"
    assert cli.main(["export", str(trained["run"]), "--transformers", str(out)]) == 0
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"shortest_edge": 32, "longest_edge": 64} and processor["do_reduce_labels"] is True
    pipe = transformers.pipeline("image-segmentation", model=str(out))
    # 64x96 resizes to exactly 32x48 under both rounding rules (transformers truncates, mmcv rounds)
    image = (np.random.default_rng(2).integers(0, 256, (64, 96, 3))).astype(np.uint8)
    image[:32] //= 2
    segments = pipe(Image.fromarray(image), subtask="semantic")
    names = list(CLASSES)
    labels = np.full(image.shape[:2], -1)
    for segment in segments:
        labels[np.array(segment["mask"]) > 0] = names.index(segment["label"])
    expected = sl.Segmenter(trained["run"]).predict(image)
    assert (labels == expected).mean() > 0.98
    assert sl.load_model(out).config.preprocessing.scale == (64, 32)  # ours in full travels too


def test_a_validation_pipeline_that_is_not_a_preprocessing_is_refused_up_front(tmp_path):
    rope_seed = {"name": "rope_seed", "size": [64, 64]}  # a training pipeline (colour jitter, masks resized)
    config = resolve_config({"data": {"root": str(tmp_path), "val_transforms": rope_seed}})
    with pytest.raises(ValueError, match=r"data.val_transforms: 'rope_seed' is not a validation pipeline"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything is written
    config = resolve_config({"data": {"val_transforms": {"name": "val", "size": [64, 64], "multiple_of": 32}},
                             "val": {"mode": "slide", "crop": [64, 96], "stride": 48}})
    assert recipe_preprocessing(config) == Preprocessing(size=(64, 64), multiple_of=32, mode="slide", crop=(64, 96),
                                                         stride=(48, 48))
