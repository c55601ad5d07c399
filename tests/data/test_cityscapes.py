"""The Cityscapes format on a small tree in the official layout."""

import json

import pytest
from datasets_on_disk import H, W, make_cityscapes

from segformer_lab import cli
from segformer_lab.data import DataError, DataWarning, build_dataset
from segformer_lab.data.datasets.cityscapes import CityscapesDataset
from segformer_lab.data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


def test_label_ids_become_train_ids_and_the_rest_is_ignored(tmp_path):
    root = make_cityscapes(tmp_path)
    dataset = build_dataset("cityscapes", root, "validation")  # alias of val
    assert len(dataset) == 2 and dataset.split == "val"
    assert dataset.class_names == list(CITYSCAPES_CLASSES) and dataset.palette == CITYSCAPES_PALETTE
    sample = dataset.load(dataset.samples[0])
    assert sample["path"].endswith("aachen_000000_000019_leftImg8bit.png")
    mask = sample["mask"]
    # ids 7 road, 26 car, 23 sky, then 0 unlabeled, 9 parking, 40 (no such id) across the width
    columns = [mask[0, i * W // 6] for i in range(6)]
    assert columns == [0, 13, 10, 255, 255, 255] and mask.shape == (H, W)
    assert CityscapesDataset.splits(root) == ["train", "val"]


def test_only_label_id_files_are_read(tmp_path):
    root = make_cityscapes(tmp_path)
    dataset = build_dataset("cityscapes", root, "train")
    assert all(str(m).endswith("_gtFine_labelIds.png") for _, m in dataset.samples)
    assert dataset.unpaired_masks == []
    out = dataset[0]
    assert out["labels"].shape == (H, W) and set(out["labels"].unique().tolist()) == {0, 10, 13, 255}


def test_missing_label_file_is_named(tmp_path):
    root = make_cityscapes(tmp_path)
    label = root / "gtFine" / "train" / "bonn" / "bonn_000001_000019_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(DataError, match=r"leftImg8bit/train/bonn/bonn_000001_000019_leftImg8bit\.png: missing "
                                        r"annotation .*gtFine/train/bonn/bonn_000001_000019_gtFine_labelIds\.png"):
        build_dataset("cityscapes", root, "train")
    with pytest.raises(DataError, match=r"cityscapes/leftImg8bit/test: split directory not found"):
        build_dataset("cityscapes", root, "test")
    with pytest.warns(DataWarning, match="missing annotation"):
        kept = build_dataset("cityscapes", root, "train", skip_bad=True)
    assert [image.parent.name for image, _ in kept.samples] == ["aachen"]


def test_a_transformers_cityscapes_checkpoint_evaluates_on_the_official_layout(tmp_path, capsys):
    """What ``segformer-b*-finetuned-cityscapes-1024-1024`` is: transformers' save of a
    19-class SegFormer whose id2label names Cityscapes' classes; it evaluates through the
    recipe's sliding window and names the classes in the table."""
    transformers = pytest.importorskip("transformers")
    names = list(CITYSCAPES_CLASSES)
    config = transformers.SegformerConfig(hidden_sizes=[16, 32, 40, 64], decoder_hidden_size=32, depths=[1, 1, 1, 1],
                                          num_labels=19, id2label=dict(enumerate(names)))  # fmt: skip
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "finetuned-cityscapes")
    root = make_cityscapes(tmp_path)
    argv = ["eval", str(tmp_path / "finetuned-cityscapes"), "--data", f"cityscapes:{root}", "--split", "val",
            "--mode", "slide", "--crop", "32", "--stride", "24", "--json", str(tmp_path / "scores.json")]  # fmt: skip
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "road" in table and "bicycle" in table
    (scores,) = json.loads((tmp_path / "scores.json").read_text())["results"]
    assert list(scores["per_class"]) == names and 0 <= scores["mIoU"] <= 1
