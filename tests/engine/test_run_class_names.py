"""Names travel from a dataset through training (issue 13, items 1 and 2): the run's
config.json, best weights and checkpoints carry the dataset's class names and palette;
``load_model``, ``Segmenter``, ``predict`` and ``eval`` (its table, JSON and ``--plots``)
use them; the most confused pairs come from the evaluation's confusion matrix."""

from __future__ import annotations

import csv
import json
import sys
from types import SimpleNamespace

import pytest
import torch
from datasets_on_disk import folder_mask, make_folder

import segformer_lab as sl
from segformer_lab import cli
from segformer_lab.engine import SegmentationDataModule, most_confused, resolve_config, train
from segformer_lab.engine.experiment import with_dataset_classes
from segformer_lab.engine.resume import check_checkpoint
from segformer_lab.models.pretrained import MODEL_CONFIG_KEY
from segformer_lab.analysis.eval_plots import shown_classes

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("sky", "road", "car")
PALETTE = ((200, 220, 255), (90, 90, 90), (220, 30, 30))


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """Three training steps on a folder dataset with a classes.txt (and a palette, as the
    datasets that have one expose it), validated on its training split."""
    root = make_folder(tmp_path_factory.mktemp("data"), {"a": folder_mask(), "b": folder_mask()}, classes=NAMES)
    config = resolve_config({
        "model": {"name": "segformer_b0", "num_classes": 3},
        "data": {"format": "folder", "root": str(root), "train_split": "train", "val_split": "train",
                 "train_transforms": {"name": "rope_seed", "size": [32, 32]},
                 "val_transforms": {"name": "val", "scale": [64, 32]}, "batch_size": 2, "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup": 0},
        "trainer": {"max_steps": 3, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    })
    datamodule = SegmentationDataModule.from_config(config["data"], config["seed"], 3)
    datamodule.train.palette = [list(c) for c in PALETTE]
    run_dir = tmp_path_factory.mktemp("runs") / "named"
    torch.set_num_threads(1)
    train(config, run_dir, datamodule=datamodule)
    return run_dir


def test_the_run_stores_the_datasets_names_and_palette(named_run):
    stored = json.loads((named_run / "config.json").read_text())
    assert stored["id2label"] == {"0": "sky", "1": "road", "2": "car"}
    assert stored["palette"] == [list(c) for c in PALETTE]
    last = torch.load(named_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last[MODEL_CONFIG_KEY]["id2label"] == stored["id2label"]
    for source in (named_run, named_run / "checkpoints" / "last.ckpt"):
        config = sl.load_model(source).config
        assert config.class_names == NAMES and config.palette == PALETTE
    segmenter = sl.Segmenter(named_run)
    assert segmenter.class_names == list(NAMES) and segmenter.palette.tolist() == [list(c) for c in PALETTE]


def test_eval_names_the_classes_and_writes_plots_equal_to_its_json(named_run, tmp_path, capsys):
    out, plots = tmp_path / "eval.json", tmp_path / "plots"
    assert cli.main(["eval", str(named_run), "--json", str(out), "--plots", str(plots), "--num-workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "most confused (ground truth -> predicted" in printed or "most confused: none" in printed
    result = json.loads(out.read_text())["results"][0]
    assert list(result["per_class"]) == list(NAMES)
    assert sorted(p.name for p in plots.iterdir()) == ["confusion.png", "iou.png", "per_class.csv"]
    rows = list(csv.DictReader((plots / "per_class.csv").open()))
    assert [r["class"] for r in rows] == list(NAMES)
    for row in rows:
        expected = result["per_class"][row["class"]]
        for key in ("IoU", "Acc"):
            assert (float(row[key]) if row[key] else None) == expected[key]
    counts = torch.tensor([[int(row[f"pred:{n}"]) for n in NAMES] for row in rows])
    assert [int(r["pixels"]) for r in rows] == counts.sum(1).tolist()
    diagonal = counts.diag().sum() / counts.sum()
    assert 100 * float(diagonal) == pytest.approx(result["aAcc"], abs=1e-3)  # the matrix the scores came from


def test_predict_legend_names_come_from_the_run(named_run, tmp_path, capsys, monkeypatch):
    from segformer_lab.inference import segmenter as segmenter_module

    shown = []
    original = segmenter_module.overlay_image
    monkeypatch.setattr(segmenter_module, "overlay_image",
                        lambda *a, **k: shown.append(list(a[3])) or original(*a, **k))
    image = make_folder(tmp_path, {"x": folder_mask()}) / "images" / "train" / "x.png"
    assert cli.main(["predict", str(named_run), str(image), "--out", str(tmp_path / "out"), "--overlay"]) == 0
    assert shown == [list(NAMES)]


def test_eval_plots_without_matplotlib_is_one_line_before_any_work(named_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["eval", str(named_run), "--plots", str(tmp_path / "p")]) == 2
    assert capsys.readouterr().err.strip() == (
        "segformer-lab eval: error: --plots needs matplotlib, which is not installed: pip install matplotlib")
    assert not (tmp_path / "p").exists()


def test_most_confused_pairs_of_a_constructed_confusion():
    confmat = torch.tensor([[50, 10, 0, 3],
                            [2, 40, 7, 0],
                            [0, 10, 30, 0],
                            [0, 0, 0, 0]])
    assert most_confused(confmat, 5) == [(0, 1, 10, 10 / 63), (2, 1, 10, 10 / 40), (1, 2, 7, 7 / 49),
                                         (0, 3, 3, 3 / 63), (1, 0, 2, 2 / 49)]
    assert most_confused(confmat, 2) == [(0, 1, 10, 10 / 63), (2, 1, 10, 10 / 40)]
    assert most_confused(torch.eye(3, dtype=torch.long) * 5) == []


def test_a_large_confusion_matrix_shows_the_most_confused_classes():
    confmat = torch.eye(30, dtype=torch.long) * 100
    confmat[4, 17], confmat[22, 3], confmat[9, 4] = 50, 20, 5
    assert shown_classes(confmat, limit=4) == [3, 4, 17, 22]
    assert shown_classes(confmat[:5, :5], limit=20) == [0, 1, 2, 3, 4]


def test_class_names_alone_do_not_block_a_resume(named_run):
    last = named_run / "checkpoints" / "last.ckpt"
    config = sl.load_model(named_run).pretrained_config()
    check_checkpoint(last, config)
    check_checkpoint(last, {k: v for k, v in config.items() if k not in ("id2label", "palette")})
    with pytest.raises(ValueError, match=r"differing: num_classes"):
        check_checkpoint(last, {**config, "num_classes": 4})


def test_training_takes_the_datasets_names_unless_they_are_placeholders():
    config = sl.get_config("segformer_b0", num_classes=2)
    named = with_dataset_classes(config, SimpleNamespace(classes=("wall", "sky"), palette=[[1, 2, 3], [4, 5, 6]]))
    assert named.class_names == ("wall", "sky") and named.palette == ((1, 2, 3), (4, 5, 6))
    assert with_dataset_classes(config, SimpleNamespace(classes=("class_0", "class_1"))) == config
    assert with_dataset_classes(config, object()) == config  # a dataset of the user's own, without names
    with pytest.raises(ValueError, match=r"training dataset .*: its classes do not fit the model: class_names: 3 names"):
        with_dataset_classes(config, SimpleNamespace(classes=("a", "b", "c")))
