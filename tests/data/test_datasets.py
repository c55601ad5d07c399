"""The data layer: sources, transforms, bad data, collate. Tiny datasets made in tmp_path."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from segformer_lab.data import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    IGNORE_INDEX,
    IMAGE_SUFFIXES,
    CatMaxRatioCrop,
    DataError,
    DataWarning,
    PhotoMetricDistortion,
    Pipeline,
    build_dataset,
    build_transforms,
    check_dataset,
    collate,
    fit_size,
)
from datasets_on_disk import (
    RNG, H, W, encode, folder_mask, make_ade, make_folder, make_parquet, make_tiny, raw_ade_mask, reduced, rgb, save,
)


# ----------------------------------------------------------------------------- sources


def test_ade20k_constants():
    assert len(ADE20K_CLASSES) == len(ADE20K_PALETTE) == 150
    assert ADE20K_CLASSES[:3] == ("wall", "building", "sky") and ADE20K_CLASSES[-1] == "flag"
    assert ADE20K_PALETTE[0] == (120, 120, 120) and ADE20K_PALETTE[-1] == (92, 0, 255)


def test_ade20k_reduce_zero_label(tmp_path):
    make_ade(tmp_path)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):  # the directory or its parent
        ds = build_dataset("ade20k", root, "train", num_classes=150)
        assert len(ds) == 2 and ds.num_classes == 150
        sample = ds[0]
        assert sample["pixel_values"].shape == (3, H, W) and sample["pixel_values"].dtype == torch.float32
        assert sample["labels"].dtype == torch.int64
        assert torch.equal(sample["labels"], torch.from_numpy(reduced(raw_ade_mask())))
        assert sample["path"].endswith("a.jpg")
    assert set(torch.unique(sample["labels"]).tolist()) == {255, 0, 149, 6}


def test_pixel_values_are_imagenet_normalised(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask()})
    ds = build_dataset("folder", root, "train")
    image = np.asarray(Image.open(root / "images" / "train" / "a.png"), np.float32) / 255
    expected = (image - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(ds[0]["pixel_values"].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_folder_keeps_labels_and_reads_classes(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    ds = build_dataset("folder", root, "train", num_classes=3)
    assert ds.classes == ("sky", "road", "car") and len(ds) == 2
    assert torch.equal(ds[1]["labels"], torch.from_numpy(folder_mask().astype(np.int64)))
    # reduce_zero_label only on request: 0 -> 255, 1 -> 0, 2 -> 1
    ds = build_dataset("folder", root, "train", reduce_zero_label=True)
    assert torch.equal(ds[0]["labels"], torch.from_numpy(reduced(folder_mask())))


def test_folder_reads_every_image_suffix(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask()})
    for n, suffix in enumerate(IMAGE_SUFFIXES):
        save(rgb(), root / "images" / "train" / f"img{n}{suffix.upper() if n % 2 else suffix}")
        save(folder_mask(), root / "masks" / "train" / f"img{n}.png")
    (root / "images" / "train" / "readme.txt").write_text("not an image")
    ds = build_dataset("folder", root, "train")
    assert len(ds) == 1 + len(IMAGE_SUFFIXES)
    assert all(ds[i]["pixel_values"].shape == (3, H, W) for i in range(len(ds)))


def test_importing_the_data_layer_leaves_pyarrow_alone():
    """pyarrow is imported when a parquet dataset is built, not with ``segformer_lab.data``."""
    code = "import sys, segformer_lab.data; assert 'pyarrow' not in sys.modules, 'pyarrow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parquet_reduce_zero_label_and_lazy_reading(tmp_path, monkeypatch):
    rows = [(encode(rgb(), "JPEG"), encode(raw_ade_mask(), "PNG")) for _ in range(5)]
    make_parquet(tmp_path / "data" / "train-00000-of-00002.parquet", rows[:3])
    make_parquet(tmp_path / "data" / "train-00001-of-00002.parquet", rows[3:])
    make_parquet(tmp_path / "data" / "validation-00000-of-00001.parquet", rows[:1])

    reads = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, *a, **k: reads.append(i) or original(self, i, *a, **k))
    ds = build_dataset("parquet", tmp_path, "train", num_classes=150)
    assert len(ds) == 5 and reads == []  # construction reads footers only
    sample = ds[0]
    assert torch.equal(sample["labels"], torch.from_numpy(reduced(raw_ade_mask())))
    assert sample["pixel_values"].shape == (3, H, W)
    assert "train-00000-of-00002.parquet[row 0]" in sample["path"]
    ds[1]  # same row group: cached
    assert len(reads) == 1
    assert "[row 2]" in ds[2]["path"] and "[row 1]" in ds[4]["path"]
    assert len(reads) == 3
    assert len(build_dataset("parquet", tmp_path, "val")) == 1


def test_tiny_imagenet_labels_follow_wnids(tmp_path):
    root = make_tiny(tmp_path)
    train = build_dataset("tiny_imagenet", root, "train", num_classes=3)
    assert train.classes == ("n02", "n01", "n03") and len(train) == 6
    labels = {Path(ref[0]).name.split("_")[0]: ref[1] for ref in train.samples}
    assert labels == {"n02": 0, "n01": 1, "n03": 2}
    sample = train[0]
    assert sample["pixel_values"].shape == (3, 64, 64) and isinstance(sample["label"], int)
    val = build_dataset("tiny_imagenet", root, "val", transforms=build_transforms("classify", size=32))
    assert [val[i]["label"] for i in range(4)] == [2, 0, 1, 2]
    assert val[0]["pixel_values"].shape == (3, 32, 32)
    batch = collate([val[0], val[1]])
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["label"].tolist() == [2, 0]


def test_grayscale_rgba_and_16bit_images_load_as_rgb(tmp_path):
    gray = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    root = make_folder(tmp_path, {"g": folder_mask(), "a": folder_mask(), "s": folder_mask()})
    save(gray, root / "images" / "train" / "g.png")
    save(np.dstack([rgb(), np.full((H, W), 7, np.uint8)]), root / "images" / "train" / "a.png")
    save((gray.astype(np.uint16) * 257), root / "images" / "train" / "s.png")
    ds = build_dataset("folder", root, "train", transforms="none")
    for i in range(3):
        assert ds[i]["pixel_values"].shape == (3, H, W)
    by_name = {Path(s[0]).stem: i for i, s in enumerate(ds.samples)}
    g, s = ds[by_name["g"]]["pixel_values"], ds[by_name["s"]]["pixel_values"]
    assert torch.allclose(g[0] * 0.229 + 0.485, torch.from_numpy(gray / 255.0).float(), atol=1e-5)
    assert torch.allclose(g, s, atol=1e-6)  # 16-bit gray scaled to the same 8-bit values


def test_16bit_and_palette_masks(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    save(folder_mask().astype(np.uint16), root / "masks" / "train" / "a.png")
    palette = Image.fromarray(folder_mask(), "L").convert("P")
    palette.save(root / "masks" / "train" / "b.png")
    ds = build_dataset("folder", root, "train")
    for i in range(2):
        assert torch.equal(ds[i]["labels"], torch.from_numpy(folder_mask().astype(np.int64)))
    big = folder_mask().astype(np.uint16)
    big[0, 0] = 300
    save(big, root / "masks" / "train" / "a.png")
    with pytest.raises(DataError, match=r"a\.png.*300"):
        ds[0]


# ----------------------------------------------------------------------------- transforms


def seg_sample(mask: np.ndarray | None = None):
    mask = folder_mask() if mask is None else mask
    return rgb(*mask.shape), mask


def test_segformer_ade_shapes_and_valid_labels():
    pipeline = build_transforms("segformer_ade", crop_size=(64, 64), scale=(256, 64))
    mask = np.full((H, W), 3, np.uint8)
    mask[:, 15:30], mask[:, 30:45], mask[:4] = 7, 0, 255
    for _ in range(8):
        x, y = pipeline(*seg_sample(mask))
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert y.shape == (64, 64) and y.dtype == torch.int64
        assert set(torch.unique(y).tolist()) <= {0, 3, 7, 255}


def test_segformer_ade_pads_image_with_zero_and_mask_with_255():
    # scale (48, 32) fits 40x60 to 32x48 exactly, so the 64x64 crop needs padding
    pipeline = build_transforms("segformer_ade", crop_size=(64, 64), scale=(48, 32), ratio_range=(1.0, 1.0))
    x, y = pipeline(*seg_sample())
    assert (y[32:] == IGNORE_INDEX).all() and (y[:, 48:] == IGNORE_INDEX).all()
    assert (y[5:32, :48] != IGNORE_INDEX).all()  # the image sits top-left
    assert (x[:, 32:] == 0).all() and (x[:, :, 48:] == 0).all()  # 0 after normalising: the mean


def test_masks_resized_nearest_keep_label_values():
    mask = np.zeros((H, W), np.uint8)
    mask[::2] = 5
    mask[:, ::3] = 9
    mask[0] = 255
    for name, params in [("rope_seed", {"size": (57, 83)}),
                         ("segformer_ade", {"crop_size": (48, 48), "scale": (130, 70)})]:
        _, y = build_transforms(name, **params)(*seg_sample(mask))
        assert set(torch.unique(y).tolist()) <= {0, 5, 9, 255}, name


def test_rope_seed_shapes():
    x, y = build_transforms("rope_seed", size=(32, 48))(*seg_sample())
    assert x.shape == (3, 32, 48) and y.shape == (32, 48)


def test_val_resizes_image_only_and_aligns():
    assert fit_size(512, 683, (2048, 512)) == (512, 683)
    assert fit_size(300, 3000, (2048, 512)) == (205, 2048)  # long side bound
    assert fit_size(40, 60, (100, 50), multiple_of=32) == (64, 96)
    image, mask = seg_sample()
    x, y = build_transforms("val", scale=(100, 50))(image, mask)
    assert x.shape == (3, 50, 75) and torch.equal(y, torch.from_numpy(mask.astype(np.int64)))
    x, y = build_transforms("val", scale=(100, 50), multiple_of=32)(image, mask)
    assert x.shape == (3, 64, 96) and y.shape == (H, W)


def test_cat_max_ratio_is_respected_when_possible():
    """64x256 mask: class 0 on the left half, stripes of 1/2 on the right. About 58% of
    64x64 crops qualify; with 10 tries nearly all should."""
    mask = np.zeros((64, 256), np.uint8)
    mask[:, 128::2], mask[:, 129::2] = 1, 2

    def fraction_ok(ratio: float) -> float:
        pipeline = build_transforms("segformer_ade", crop_size=(64, 64), scale=(256, 64),
                                    ratio_range=(1.0, 1.0), cat_max_ratio=ratio, flip_prob=0.0,
                                    photometric=False)
        ok = 0
        for _ in range(40):
            _, y = pipeline(rgb(64, 256), mask)
            counts = torch.bincount(y.flatten(), minlength=256)[:255]
            ok += int(counts.max() / counts.sum() < 0.75)
        return ok / 40

    assert fraction_ok(0.75) >= 0.95
    assert fraction_ok(1.0) <= 0.85
    crop = CatMaxRatioCrop((16, 16))  # impossible: one class everywhere, still a crop
    out = crop(image=rgb(32, 32), mask=np.ones((32, 32), np.uint8))
    assert out["mask"].shape == (16, 16)


def test_photometric_distortion_matches_mmseg_brightness_step():
    image = rgb()
    out = PhotoMetricDistortion().apply(image, beta=40.0)
    assert np.array_equal(out, np.clip(image.astype(np.float32) + 40, 0, 255).astype(np.uint8))
    out = PhotoMetricDistortion().apply(image, alpha=1.3, hue=5, saturation=0.7, contrast_first=False)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_pipelines_repeat_under_torch_seed_and_unknown_name():
    image, mask = seg_sample()
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        outs.append(build_transforms("segformer_ade", crop_size=(32, 32), scale=(120, 40))(image, mask))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    with pytest.raises(ValueError, match="segformer_ade"):
        build_transforms("nope")


def test_dataloader_workers_draw_different_augmentations(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    (root / "images" / "train" / "b.png").write_bytes((root / "images" / "train" / "a.png").read_bytes())
    ds = build_dataset("folder", root, "train", transforms=build_transforms("rope_seed", size=(32, 32)))
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate)
    first, second = list(loader)
    assert not torch.equal(first["pixel_values"], second["pixel_values"])


# ----------------------------------------------------------------------------- collate


def test_collate_stacks_equal_sizes_and_lists_different_ones(tmp_path):
    a = {"pixel_values": torch.zeros(3, 8, 8), "labels": torch.zeros(8, 8, dtype=torch.long), "path": "a"}
    b = {"pixel_values": torch.zeros(3, 8, 8), "labels": torch.zeros(6, 9, dtype=torch.long), "path": "b"}
    c = {"pixel_values": torch.zeros(3, 8, 12), "labels": torch.zeros(8, 8, dtype=torch.long), "path": "c"}
    batch = collate([a, None, a])
    assert batch["pixel_values"].shape == (2, 3, 8, 8) and batch["labels"].shape == (2, 8, 8)
    assert batch["path"] == ["a", "a"]
    batch = collate([a, b, c])
    assert isinstance(batch["pixel_values"], list) and isinstance(batch["labels"], list)
    assert [t.shape for t in batch["labels"]] == [(8, 8), (6, 9), (8, 8)]
    assert collate([None, None]) is None


# ----------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_raises_or_is_skipped(tmp_path, damage):
    make_ade(tmp_path, stems=("a", "b", "c"))
    path = tmp_path / "ADEChallengeData2016" / "images" / "training" / "b.jpg"
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    ds = build_dataset("ade20k", tmp_path, "train")
    with pytest.raises(DataError, match=r"b\.jpg"):
        ds[1]
    ds = build_dataset("ade20k", tmp_path, "train", skip_bad=True)
    with pytest.warns(DataWarning, match=r"b\.jpg"):
        assert ds[1] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds[1] is None  # warned once per file
    assert list(ds.bad_files) == [str(path)]
    batch = collate([ds[i] for i in range(3)])
    assert batch["pixel_values"].shape[0] == 2 and not any("b.jpg" in p for p in batch["path"])


def test_mask_size_mismatch(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    save(np.zeros((H + 1, W), np.uint8), root / "masks" / "train" / "b.png")
    ds = build_dataset("folder", root, "train")
    with pytest.raises(DataError, match=r"b\.png.*60x41.*60x40"):
        ds[1]
    ds = build_dataset("folder", root, "train", skip_bad=True)
    with pytest.warns(DataWarning, match="differs"):
        assert ds[1] is None
    assert len(ds.bad_files) == 1


def test_label_out_of_range(tmp_path):
    bad = folder_mask()
    bad[10, 10] = 3  # 3 classes: 0..2 valid
    root = make_folder(tmp_path, {"a": folder_mask(), "b": bad})
    ds = build_dataset("folder", root, "train")
    ds[0]
    with pytest.raises(DataError, match=r"b\.png.*values 3 .*3 classes"):
        ds[1]
    ds = build_dataset("folder", root, "train", skip_bad=True)
    with pytest.warns(DataWarning, match="out of range"):
        assert ds[1] is None
    # ADE20K: raw 151 reduces to 150, beyond 150 classes
    make_ade(tmp_path, stems=("x",))
    mask = raw_ade_mask()
    mask[0, 0] = 151
    save(mask, tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "x.png")
    with pytest.raises(DataError, match=r"x\.png.*150"):
        build_dataset("ade20k", tmp_path, "train")[0]


def test_out_of_range_label_is_reported_as_the_file_holds_it(tmp_path):
    """With reduce-zero-label the message gives the file's own value (200, not the 199 it
    reduces to) and the rule that applies to the file's values."""
    make_ade(tmp_path, stems=("x",))
    mask = raw_ade_mask()
    mask[0, 0] = 200
    save(mask, tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "x.png")
    with pytest.raises(DataError, match=r"x\.png: label values 200 out of range for 150 classes "
                                        r"\(with reduce-zero-label, valid values are 0 = ignore, 1\.\.150") as info:
        build_dataset("ade20k", tmp_path, "train")[0]
    assert "199" not in str(info.value)


def test_upper_case_mask_suffix_is_found(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    masks = root / "masks" / "train"
    (masks / "b.png").rename(masks / "b.PNG")
    ds = build_dataset("folder", root, "train")
    assert len(ds) == 2 and ds[1]["labels"].shape == (H, W)
    save(folder_mask(), masks / "b.png")  # now two masks of one stem
    with pytest.raises(DataError, match=r"two masks with the stem 'b'"):
        build_dataset("folder", root, "train")


def test_missing_annotations_are_all_named(tmp_path):
    stems = [f"s{i:02d}" for i in range(14)]
    root = make_folder(tmp_path, {stem: folder_mask() for stem in stems})
    for stem in stems[1:13]:  # 12 missing
        (root / "masks" / "train" / f"{stem}.png").unlink()
    with pytest.raises(DataError) as info:
        build_dataset("folder", root, "train")
    message = str(info.value)
    assert "missing annotation for 12 images" in message and "and 2 more" in message
    assert all(f"{stem}.png" in message for stem in stems[1:11]) and "s11.png" not in message
    with pytest.warns(DataWarning):
        assert len(build_dataset("folder", root, "train", skip_bad=True)) == 2


def test_dataloader_worker_data_error_is_the_same_error(tmp_path):
    """A DataError raised in a DataLoader worker reaches the main process as a DataError
    with the file's one-line message (torch re-raises a worker's error by calling its type
    with the formatted traceback), the worker's traceback kept as a note."""
    make_ade(tmp_path, stems=("a", "b", "c"))
    path = tmp_path / "ADEChallengeData2016" / "images" / "training" / "b.jpg"
    path.write_bytes(b"not an image at all")
    ds = build_dataset("ade20k", tmp_path, "train")
    with pytest.raises(DataError) as direct:
        ds[1]
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate)
    with pytest.raises(DataError) as info:
        list(loader)
    assert str(info.value) == str(direct.value) and "\n" not in str(info.value)
    assert info.value.path == str(path) and info.value.reason.startswith("cannot decode")
    assert "DataLoader worker process" in info.value.__notes__[0]


def test_colour_mask_refused(tmp_path):
    root = make_folder(tmp_path, {"a": folder_mask()})
    save(rgb(), root / "masks" / "train" / "a.png")
    with pytest.raises(DataError, match=r"a\.png.*colour"):
        build_dataset("folder", root, "train")[0]


def test_missing_annotation(tmp_path):
    make_ade(tmp_path, stems=("a", "b", "c"))
    (tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.jpg.*missing annotation"):
        build_dataset("ade20k", tmp_path, "train")
    with pytest.warns(DataWarning) as record:
        ds = build_dataset("ade20k", tmp_path, "train", skip_bad=True)
    assert len(ds) == 2 and len(ds.bad_files) == 1
    assert any("1 bad file(s) left out" in str(w.message) for w in record)  # the summary


def test_missing_annotation_parquet_and_tiny_imagenet(tmp_path):
    good = (encode(rgb(), "JPEG"), encode(raw_ade_mask(), "PNG"))
    make_parquet(tmp_path / "pq" / "train-0.parquet", [good, (good[0], None), good])
    ds = build_dataset("parquet", tmp_path / "pq", "train")
    with pytest.raises(DataError, match=r"train-0\.parquet\[row 1\].*missing annotation"):
        ds[1]
    root = make_tiny(tmp_path)
    save(rgb(64, 64), root / "val" / "images" / "val_9.JPEG")
    with pytest.raises(DataError, match=r"val_9\.JPEG.*missing annotation"):
        build_dataset("tiny_imagenet", root, "val")
    with pytest.warns(DataWarning) as record:
        assert len(build_dataset("tiny_imagenet", root, "val", skip_bad=True)) == 4
    assert "val_9" in str(record[0].message) and "1 bad file(s) left out" in str(record[-1].message)


def test_corrupt_parquet_and_missing_column(tmp_path):
    good = (encode(rgb(), "JPEG"), encode(raw_ade_mask(), "PNG"))
    make_parquet(tmp_path / "pq" / "train-0.parquet", [good])
    (tmp_path / "pq" / "train-1.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match=r"train-1\.parquet"):
        build_dataset("parquet", tmp_path / "pq", "train")
    with pytest.warns(DataWarning) as record:
        assert len(build_dataset("parquet", tmp_path / "pq", "train", skip_bad=True)) == 1
    assert "train-1.parquet" in str(record[0].message)
    pq.write_table(pa.table({"image": [1]}), tmp_path / "pq" / "train-1.parquet")
    with pytest.raises(DataError, match=r"train-1\.parquet.*'annotation' missing"):
        build_dataset("parquet", tmp_path / "pq", "train")


def test_empty_split(tmp_path):
    make_ade(tmp_path)
    with pytest.raises(DataError, match=r"validation.*not found"):
        build_dataset("ade20k", tmp_path, "val")
    (tmp_path / "ADEChallengeData2016" / "images" / "validation").mkdir()
    with pytest.raises(DataError, match=r"validation.*empty split"):
        build_dataset("ade20k", tmp_path, "val")
    make_parquet(tmp_path / "pq" / "train-0.parquet", [])
    with pytest.raises(DataError, match="empty split"):
        build_dataset("parquet", tmp_path / "pq", "train")
    with pytest.raises(DataError, match=r"no parquet files for split 'validation'"):
        build_dataset("parquet", tmp_path / "pq", "validation")


def test_class_count_mismatch(tmp_path):
    make_ade(tmp_path)
    with pytest.raises(DataError, match="150 classes.*num_classes=19"):
        build_dataset("ade20k", tmp_path, "train", num_classes=19)
    root = make_folder(tmp_path, {"a": folder_mask()})
    with pytest.raises(DataError, match=r"mine.*3 classes.*num_classes=4"):
        build_dataset("folder", root, "train", num_classes=4)
    with pytest.raises(DataError, match=r"wnids\.txt.*3 classes.*num_classes=200"):
        build_dataset("tiny_imagenet", make_tiny(tmp_path), "train", num_classes=200)
    (root / "classes.txt").unlink()
    with pytest.raises(DataError, match=r"classes\.txt.*missing"):
        build_dataset("folder", root, "train")
    assert build_dataset("folder", root, "train", num_classes=3).classes[-1] == "class_2"


def test_check_dataset_scans_everything(tmp_path):
    bad = folder_mask()
    bad[0, 0] = 9
    root = make_folder(tmp_path, {"a": folder_mask(), "b": bad, "c": folder_mask()})
    (root / "images" / "train" / "c.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"1/3 samples ok, 2 bad file"):
        check_dataset(build_dataset("folder", root, "train"))
    report = check_dataset(build_dataset("folder", root, "train"), raise_errors=False)
    assert report.ok == 1 and len(report.bad) == 2
    ds = build_dataset("folder", root, "train", skip_bad=True)
    with pytest.warns(DataWarning, match="2 bad sample"):
        check_dataset(ds)
    assert len(ds) == 1 and len(ds.bad_files) == 2 and ds[0] is not None


def test_custom_pipeline_and_unknown_format(tmp_path):
    import albumentations as A

    root = make_folder(tmp_path, {"a": folder_mask()})
    ds = build_dataset("folder", root, "train", transforms=Pipeline([A.VerticalFlip(p=1.0)]))
    assert torch.equal(ds[0]["labels"], torch.from_numpy(folder_mask()[::-1].astype(np.int64)))
    with pytest.raises(ValueError, match="tiny_imagenet"):
        build_dataset("coco", root, "train")
