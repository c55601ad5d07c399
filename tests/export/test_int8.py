"""INT8 exports (static: calibrated on dataset images; dynamic: no data), their checks and
labels, bad calibration data, and ``bench --onnx`` over files of any precision."""

import json

import numpy as np
import pytest
import torch

import segformer_lab as sl
from datasets_on_disk import folder_mask, make_folder
from segformer_lab import export
from segformer_lab.cli import main
from segformer_lab.export.calibration import calibration_indices
from segformer_lab.export.quantize import CalibrationReader, kept_float_nodes

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CLASSES = ("sky", "road", "car")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    config = sl.get_config("segformer_b0", num_classes=len(CLASSES)).with_stages(depth=1)
    torch.manual_seed(0)
    sl.create_model(config=config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data"), {s: folder_mask() for s in ("a", "b", "c")}, CLASSES)


def metadata(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def dequantized_inputs(path) -> set[str]:
    """Names of the nodes that take an input from a DequantizeLinear (i.e. run quantised)."""
    graph = onnx.load(str(path)).graph
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type != "QuantizeLinear" and set(n.input) & dq_outputs}


def test_static_int8_export_calibrated_on_a_dataset(checkpoint, data, tmp_path, capsys):
    """export --int8 --calibrate: QDQ file with dynamic H/W, calibrated on the dataset's
    images through the validation transforms, labelled static in the output and the
    metadata; the weight MatMuls are quantised, the depthwise convolutions, attention
    products, LayerNorm and Softmax are not; onnxruntime agrees with PyTorch at a size
    the export did not check."""
    out = tmp_path / "b0-int8.onnx"
    argv = ["export", str(checkpoint), "--onnx", str(out), "--int8", "--calibrate", f"folder:{data}",
            "--calib-split", "train", "--calib-images", "2"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"INT8 static (recipe static, calibrated on 2 images of folder:{data} [train])" in text
    assert "argmax agreement" in text and ": OK" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b0-int8.onnx"]  # no temporary file left
    assert metadata(out)["precision"] == "int8-static" and metadata(out)["int8_recipe"] == "static"
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert all(dims[i].dim_param for i in (0, 2, 3))
    graph = onnx.load(str(out)).graph
    quantised = dequantized_inputs(out)
    nodes = {n.name: n for n in graph.node}
    assert any(nodes[name].op_type == "MatMul" for name in quantised)
    assert all(nodes[name].op_type == "MatMul" for name in quantised)  # no conv, norm, softmax, resize
    weights = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "DequantizeLinear"
                                                    for o in n.output}  # fmt: skip
    attention = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] not in weights]
    assert attention and not set(attention) & quantised

    model = sl.load_model(checkpoint).eval()
    x = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    session = export.onnx_session(out)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == expected.shape
    assert (got.argmax(1) == expected.argmax(1)).mean() >= export.INT8_MIN_AGREEMENT
    assert 0 < np.abs(got - expected).max() < 0.2 * np.abs(expected).max()  # quantised, not broken


def test_dynamic_int8_is_the_labelled_no_data_fallback(checkpoint, tmp_path, capsys):
    out = tmp_path / "b0-int8-dynamic.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--int8"]) == 0
    text = capsys.readouterr().out
    assert "INT8 DYNAMIC (recipe dynamic: no calibration data, activations quantised at run time)" in text
    # what the CPU can do for INT8, and the file's measured speed against float32 (issue 22, item 4)
    assert text.splitlines()[0].startswith(("this CPU has", "INT8 support of this CPU unknown"))
    speed = next(line for line in text.splitlines() if "the float32 export (onnxruntime" in line)
    assert speed.strip().startswith(f"speed at {torch.get_num_threads()} threads, 512x512: INT8 ")
    assert ("SLOWER" in speed) == (float(speed.split("INT8 ")[1].split("x")[0]) < 1)
    assert metadata(out)["precision"] == "int8-dynamic"
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and "QuantizeLinear" not in ops


@pytest.mark.parametrize("argv, message", [
    (["--int8", "--calibrate", "folder:{data}", "--calib-split", "train"],
     "--calibrate folder:{data} [train]: {data}: dataset has 3 classes, caller expects num_classes=4"),
    (["--int8", "--calibrate", "folder:{data}", "--calib-split", "val"], "--calibrate folder:{data} [val]: "),
    (["--calibrate", "folder:{data}"], "--calibrate applies to --int8 exports only"),
    (["--int8", "--fp16"], "--int8 does not combine with --fp16 or --static"),
    (["--int8", "--int8-recipe", "static"], "--int8-recipe static is static: it needs --calibrate FORMAT:ROOT"),
])  # fmt: skip
def test_bad_int8_options_and_calibration_data_are_refused(data, tmp_path, capsys, argv, message):
    """Wrong class count and an empty or missing split are refused naming --calibrate and
    the split, before anything is exported; options that do not go together, up front."""
    (data / "images" / "val").mkdir(parents=True, exist_ok=True)  # an empty split
    (data / "masks" / "val").mkdir(parents=True, exist_ok=True)
    out = tmp_path / "m.onnx"
    argv = [a.format(data=data) for a in argv]
    assert main(["export", "segformer_b0", "--num-classes", "4", "--onnx", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message.format(data=data) in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_calibration_data_that_is_no_format_and_root_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["export", "segformer_b0", "--onnx", str(tmp_path / "m.onnx"), "--int8", "--calibrate", "nowhere"])
    assert exit.value.code == 2
    assert "argument --calibrate: expected FORMAT:ROOT, e.g. ade20k:/data/ade, got 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_calibration_images_are_spread_over_the_split_and_read_one_at_a_time():
    assert calibration_indices(10, 4) == [0, 2, 5, 7]
    assert calibration_indices(3, 16) == [0, 1, 2]
    with pytest.raises(ValueError, match="calibration split is empty"):
        calibration_indices(0, 4)
    images = [np.full((1, 3, 64, 64), i, np.float32) for i in range(3)]
    reader = CalibrationReader(images)
    assert len(reader) == 3
    reader.set_range(1, 2)  # the quantiser's strided mode: one image, reduced, then the next
    assert reader.get_next()["pixel_values"][0, 0, 0, 0] == 1 and reader.get_next() is None


def test_recipes_keep_depthwise_and_attention_in_float(tmp_path):
    """kept_float_nodes: grouped convolutions and MatMuls of two activations."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w_dw"], ["d"], group=4, name="dw"),
             helper.make_node("Conv", ["d", "w_pw"], ["p"], name="pw"),
             helper.make_node("MatMul", ["p", "w_mm"], ["m"], name="proj"),
             helper.make_node("MatMul", ["m", "m"], ["a"], name="attn")]  # fmt: skip
    inits = [numpy_helper.from_array(np.ones(s, np.float32), n)
             for n, s in (("w_dw", (4, 1, 3, 3)), ("w_pw", (4, 4, 1, 1)), ("w_mm", (4, 4)))]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)], initializer=inits)
    path = tmp_path / "g.onnx"
    onnx.save_model(helper.make_model(graph), str(path))
    assert kept_float_nodes(path, export.RECIPES["static"]) == ["dw", "attn"]
    assert kept_float_nodes(path, export.RECIPES["static-naive"]) == []


def test_bench_times_onnx_files_of_any_precision(checkpoint, tmp_path, capsys):
    """bench --onnx FILE ...: files timed in turns against the first, with agreement; and
    bench MODEL --onnx --onnx-precision int8 exports that on the fly (fp16 takes the same path;
    a one-block B0: the exports are what takes the time)."""
    model = sl.load_model(checkpoint)
    float_path, int8_path = tmp_path / "f32.onnx", tmp_path / "int8.onnx"
    export.export_int8(model, int8_path, check=False, keep_float32=float_path)  # one export, both files
    argv = ["bench", "--onnx", str(float_path), str(int8_path), "--size", "64", "64", "--warmup", "0",
            "--repeats", "3", "--json"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    assert [r["model"] for r in rows] == [str(float_path), str(int8_path)]
    assert rows[0]["speedup"] == 1.0 and rows[0]["argmax_agreement"] == 1.0 and rows[0]["max_abs_diff"] == 0
    assert rows[1]["median_ms"] > 0 and 0 < rows[1]["max_abs_diff"] < 1 and rows[1]["argmax_agreement"] > 0.8
    argv = ["bench", str(checkpoint), "--onnx", "--onnx-precision", "int8", "--size", "64", "64",
            "--warmup", "0", "--repeats", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    variants = json.loads(capsys.readouterr().out)["onnx_variants"]
    assert set(variants) == {"int8"} and variants["int8"]["argmax_agreement"] > 0.8  # fp16: the same path
    assert main(["bench", "segformer_b0", "--onnx-precision", "int8"]) == 2
    assert "--onnx-precision goes with --onnx" in capsys.readouterr().err


def test_dynamic_quantisation_of_gemms_sharing_a_computed_input(tmp_path):
    """Two Gemms reading one computed (not stored) transposed matrix, as BoostFormer's
    folded decoder: onnxruntime's dynamic quantiser alone writes a file that does not load
    (a Transpose output defined twice); with own_gemm_inputs it loads and computes."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Mul", ["w", "two"], ["computed"]),  # w is an input: nothing to fold
             helper.make_node("Gemm", ["x", "computed"], ["y1"], transB=1, name="g1"),
             helper.make_node("Add", ["x", "x"], ["twice_x"]),  # another input: the Gemms stay two
             helper.make_node("Gemm", ["twice_x", "computed"], ["y2"], transB=1, name="g2"),
             helper.make_node("Add", ["y1", "y2"], ["y"])]  # fmt: skip
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4])]  # fmt: skip
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              initializer=inits)
    path, out = tmp_path / "g.onnx", tmp_path / "q.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    export.quantize_onnx(path, out, "dynamic")
    x, w = np.ones((2, 4), np.float32), np.arange(12, dtype=np.float32).reshape(3, 4)
    (y,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x, "w": w})
    np.testing.assert_allclose(y, 3 * x @ (2 * w).T, rtol=0.05)


def conv_onnx(path, classes: int, shape=("batch", 3, "height", "width")):
    """A one-convolution ONNX file (stride 4, ``classes`` outputs) with the input ``shape``
    (names: dynamic axes): what bench needs of a file, without a model export."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(classes, 3, 4, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], strides=[4, 4])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[weight])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bench_refuses_onnx_files_it_cannot_time_in_one_line(tmp_path, capsys):
    """bench --onnx: a file onnxruntime cannot load, files of different class counts, and a
    static-shape file at another --size or --batch are each one line naming the file (and,
    for a fixed input, the options that fit it), exit 2."""
    dynamic, other = conv_onnx(tmp_path / "dynamic.onnx", 3), conv_onnx(tmp_path / "other.onnx", 5)
    static = conv_onnx(tmp_path / "static.onnx", 3, (1, 3, 64, 96))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    cases = [
        ([garbage], "64 64", "1", f"{garbage}: onnxruntime cannot load it: "),
        ([dynamic, other], "64 64", "1", f"{other} has 5 classes and {dynamic} 3: "),
        ([static], "64 64", "1", f"{static} takes a fixed input [1, 3, 64, 96], not [1, 3, 64, 64]: time it with "
                                 "--size 64 96"),
        ([static], "64 96", "4", f"{static} takes a fixed input [1, 3, 64, 96], not [4, 3, 64, 96]: time it with "
                                 "--batch 1 (or"),
    ]
    for files, size, batch, message in cases:
        argv = ["bench", "--onnx", *map(str, files), "--size", *size.split(), "--batch", batch, "--repeats", "1"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"segformer-lab bench: error: {message}"), err
    assert main(["bench", "--onnx", str(dynamic), str(dynamic), "--size", "64", "64", "--repeats", "1"]) == 0
