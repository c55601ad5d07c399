"""The exported file scored and run by the commands: ``eval FILE.onnx`` (the checkpoint's
preprocessing, inference and metrics), ``predict FILE.onnx``, and ``export --report``."""

import json

import numpy as np
import pytest
from datasets_on_disk import rgb, save
from PIL import Image

from segformer_lab.cli import main
from segformer_lab.export import read_metadata

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 3-class folder dataset, split ``validation``: three images of two sizes >= 64."""
    root = tmp_path_factory.mktemp("data") / "mine"
    for stem, (h, w) in {"a": (64, 96), "b": (72, 80), "c": (64, 96)}.items():
        mask = np.zeros((h, w), np.uint8)
        mask[:, w // 3:], mask[:, 2 * w // 3:], mask[:4] = 1, 2, 255
        save(rgb(h, w), root / "images" / "validation" / f"{stem}.png")
        save(mask, root / "masks" / "validation" / f"{stem}.png")
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    return root


def eval_json(model, data, out, *options):
    args = ["eval", str(model), "--data", f"folder:{data}", "--own-size", "--num-workers", "0",
            "--json", str(out), *options]
    assert main(args) == 0
    return json.loads(out.read_text())["results"][0]


@pytest.mark.parametrize("options", [(), ("--mode", "slide", "--crop", "64", "--stride", "48", "--flip")])
def test_eval_of_the_exported_file_scores_what_the_checkpoint_scores(exported_b0, data, tmp_path, options):
    checkpoint, path = exported_b0
    want = eval_json(checkpoint, data, tmp_path / "ckpt.json", *options)
    got = eval_json(path, data, tmp_path / "onnx.json", *options)
    # onnxruntime's float rounding may flip a pixel whose two best scores tie to 1e-6 (one pixel is 0.005%)
    assert got["aAcc"] == pytest.approx(want["aAcc"], abs=0.05) and got["mIoU"] == pytest.approx(want["mIoU"], abs=0.2)
    assert got["per_class"].keys() == want["per_class"].keys() == {"sky", "road", "car"}
    assert 0 < want["aAcc"] < 100


def test_eval_of_a_file_without_metadata_asks_for_its_classes_and_normalisation(exported_b0, data, tmp_path, capsys):
    proto = onnx.load(str(exported_b0[1]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    args = ["eval", str(bare), "--data", f"folder:{data}", "--own-size", "--num-workers", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bare.onnx carries no segformer-lab metadata" in err
    assert "--num-classes K" in err and "--normalization imagenet|half|unit" in err
    want = eval_json(exported_b0[1], data, tmp_path / "meta.json")
    got = eval_json(bare, data, tmp_path / "bare.json", "--num-classes", "3", "--normalization", "imagenet")
    assert got["mIoU"] == want["mIoU"]
    assert main([*args, "--num-classes", "3", "--mean", "0.5", "0.5", "0.5"]) == 2
    assert "--mean and --std go together" in capsys.readouterr().err
    assert main(["eval", str(exported_b0[0]), "--data", f"folder:{data}", "--normalization", "half"]) == 2
    assert "mean, std are for .onnx files without metadata" in capsys.readouterr().err


def test_eval_refuses_a_file_that_is_not_a_segmentation_model(data, tmp_path, capsys):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "cls.onnx"))
    for path in (tmp_path / "cls.onnx", tmp_path / "missing.onnx"):
        assert main(["eval", str(path), "--data", f"folder:{data}", "--num-classes", "3",
                     "--normalization", "imagenet"]) == 2
    first, second = capsys.readouterr().err.strip().splitlines()
    assert "cls.onnx: its output 'y' has shape [batch, 3] (rank 2): not a segmentation model" in first
    assert "missing.onnx: no such ONNX file" in second


def test_predict_with_the_exported_file_writes_the_checkpoints_label_maps(exported_b0, data, tmp_path, capsys):
    checkpoint, path = exported_b0
    images = str(data / "images" / "validation")
    assert main(["predict", str(checkpoint), images, "--out", str(tmp_path / "ckpt")]) == 0
    assert main(["predict", str(path), images, "--out", str(tmp_path / "onnx"), "--overlay"]) == 0
    assert "3 of 3 inputs written" in capsys.readouterr().out
    for stem in "abc":
        got = Image.open(tmp_path / "onnx" / f"{stem}.png")
        assert np.array_equal(np.array(got), np.array(Image.open(tmp_path / "ckpt" / f"{stem}.png")))
        assert got.getpalette()[:6] == [10, 20, 30, 200, 100, 0]  # the file's colours
        assert (tmp_path / "onnx" / f"{stem}_overlay.png").is_file()
    assert main(["predict", str(path), images, "--out", str(tmp_path / "gpu"), "--device", "cuda"]) == 2
    assert "ONNX files run in onnxruntime on the CPU" in capsys.readouterr().err


def test_export_report_compares_pytorch_with_the_exported_files(exported_b0, data, tmp_path, capsys):
    """float16 exported here, float32 from the fixture: the table and the JSON."""
    checkpoint, float32 = exported_b0
    out, report = tmp_path / "b0-fp16.onnx", tmp_path / "report.json"
    args = ["export", str(checkpoint), "--onnx", str(out), "--fp16", "--no-check", "--report", f"folder:{data}",
            "--compare", str(float32), "--report-json", str(report), "--report-size", "64", "64",
            "--report-repeats", "2", "--report-threads", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| model | precision | mIoU | Δ mIoU | max abs diff | argmax agreement | latency | relative |" in text
    assert "on 3 images" in text and f"relative to {float32}" in text
    result = json.loads(report.read_text())
    pytorch, half, full = result["rows"]
    assert [r["precision"] for r in result["rows"]] == ["float32 (PyTorch eager)", "float16", "float32"]
    assert half["name"] == str(out) and full["name"] == str(float32) and result["latency_reference"] == str(float32)
    assert full["max_abs_diff"] < 1e-4 and full["agreement"] > 0.999 and abs(full["delta_mIoU"]) < 0.1
    assert 0 < half["max_abs_diff"] < 0.1 and half["agreement"] > 0.95
    assert full["relative"] == 1.0 and all(r["median_ms"] > 0 for r in result["rows"]) and result["threads"] == 1
    assert f"| {float32} | float32 |" in text
    session_meta = onnx.load(str(out)).metadata_props
    assert read_metadata({p.key: p.value for p in session_meta}, str(out)).precision == "float16"


def test_export_report_checks_its_inputs_before_exporting(exported_b0, data, tmp_path, capsys):
    checkpoint, _ = exported_b0
    out = tmp_path / "b0.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--report", f"folder:{data}",
                 "--compare", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx: no such ONNX file" in capsys.readouterr().err and not out.exists()
    assert main(["export", str(checkpoint), "--onnx", str(out), "--report", f"folder:{tmp_path / 'none'}"]) == 2
    assert not out.exists() and capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit, match="2"):
        main(["export", str(checkpoint), "--onnx", str(out), "--report", "nocolon"])
    assert "expected FORMAT:ROOT" in capsys.readouterr().err
