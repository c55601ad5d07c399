"""Deployment: ONNX export (CLI and API), opset lowering, bench --onnx, Hub-style sharing.

Exports are the slow part (the dynamo exporter reasons about symbolic shapes): the
models are shallow (one block per stage) and each export checks as much as it can.
"""

import json
import sys
import types

import numpy as np
import pytest
import torch

import segformer_lab as sl
from segformer_lab.cli import main
from segformer_lab import export
from segformer_lab.models.hub import push_to_hub

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def shallow(name: str, num_classes: int = 4) -> sl.ModelConfig:
    return sl.get_config(name, num_classes=num_classes).with_stages(depth=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    sl.create_model(config=shallow("segformer_b0")).save_pretrained(directory)
    return directory


def graph_ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def default_opset(path) -> int:
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


def test_cli_exports_a_checkpoint_at_opset_16_with_dynamic_axes(tmp_path, capsys):
    """A shallow BoostFormer with mixed RoPE, saved and exported for old TensorRT: dynamic
    batch/height/width, no LayerNormalization, checked in onnxruntime at two sizes."""
    checkpoint = tmp_path / "ckpt"
    model = sl.create_model(config=shallow("boostformer_b0_rope_mixed"))
    assert any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    model.save_pretrained(checkpoint)
    out = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--opset", "16"]) == 0
    text = capsys.readouterr().out
    assert "opset 16" in text and "dynamic batch/height/width" in text and "LayerNormalization ops: 0" in text
    assert "1x3x97x130: max abs diff" in text and "2x3x160x75: max abs diff" in text and ": OK" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "model.onnx"]  # no temporary file left
    assert "LayerNormalization" not in graph_ops(out) and {"ReduceMean", "Sqrt"} <= graph_ops(out)
    assert default_opset(out) == 16
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and all(dims[i].dim_param for i in (0, 2, 3))
    out_dims = onnx.load(str(out)).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out_dims] == ["batch", 4, "logits_height", "logits_width"]
    # a third size and batch, beyond the two the export checked
    session = export.onnx_session(out)
    x = torch.randn(3, 3, 64, 200)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x)
    assert np.abs(got - expected.numpy()).max() < 1e-4


def test_lower_opset_rewrites_the_ops_that_changed():
    """ReduceMean's axes input -> attribute, Shape(start, end) -> Shape + Slice,
    Reshape's allowzero dropped: same results in onnxruntime at opset 13."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=1, noop_with_empty_axes=0),
        helper.make_node("Shape", ["x"], ["first"], start=0, end=1),
        helper.make_node("Reshape", ["mean", "shape"], ["flat"], allowzero=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 4])],
        [helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("first", TensorProto.INT64, [1])],
        initializer=[numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes"),
                     numpy_helper.from_array(np.array([-1], dtype=np.int64), "shape")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    lowered = export.lower_opset(model, 13)
    assert default_opset_of(lowered) == 13
    reduce = next(n for n in lowered.graph.node if n.op_type == "ReduceMean")
    assert list(reduce.input) == ["x"] and {a.name for a in reduce.attribute} == {"axes", "keepdims"}
    assert not any(a.name == "allowzero" for n in lowered.graph.node for a in n.attribute)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    outputs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
               for m in (model, lowered)]  # fmt: skip
    for a, b in zip(*outputs):
        np.testing.assert_array_equal(a, b)
    # an op that does not exist at the target opset is refused by name
    grid = helper.make_model(
        helper.make_graph([helper.make_node("GridSample", ["x", "g"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4]),
                           helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 4, 4, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])]),
        opset_imports=[helper.make_opsetid("", 18)],
    )  # fmt: skip
    with pytest.raises(export.ExportError, match="GridSample.*opset 16"):
        export.lower_opset(grid, 13)


def default_opset_of(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_static_fp16_export(checkpoint, tmp_path, capsys):
    out = tmp_path / "b0.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--static", "64", "96", "--fp16"]) == 0
    text = capsys.readouterr().out
    assert "input [1, 3, 64, 96] (static)" in text and "float16" in text and "1x3x64x96: max abs diff" in text
    assert "not checked" not in text and "INT8" not in text
    model = onnx.load(str(out))
    weights = [t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 100]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_a_failed_check_writes_nothing_and_exits_non_zero(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export.check, "TOLERANCE", 0.0)
    out = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--static", "64", "64"]) == 1
    assert "onnxruntime does not match PyTorch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_export_packages_are_named_with_the_extra(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "pip install 'segformer-lab[export]'" in capsys.readouterr().err


def test_unknown_source_is_a_clear_error(tmp_path, capsys):
    assert main(["export", "no_such_model", "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "not a registered model name" in capsys.readouterr().err


def test_bench_onnx_smoke(capsys):
    argv = ["bench", "segformer_b0", "--size", "64", "64", "--warmup", "0", "--repeats", "1", "--onnx", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["onnxruntime"]["median_ms"] > 0 and result["ours"]["median_ms"] > 0
    assert result["onnx_speedup"] == pytest.approx(result["ours"]["median_ms"] / result["onnxruntime"]["median_ms"])
    assert result["onnx_max_abs_diff"] < 1e-4


# --- Hub-style sharing ----------------------------------------------------------------
def test_save_pretrained_with_a_model_card(tmp_path):
    from segformer_lab.analysis.profiling import profile_model

    config = shallow("segformer_b0")
    model = sl.create_model(config=config)
    card = {"profile": profile_model(config, (64, 64)), "metrics": {"mIoU": 12.5}, "dataset": "ade20k",
            "license": "apache-2.0"}  # fmt: skip
    model.save_pretrained(tmp_path, model_card=True, model_card_kwargs=card)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("---\nlibrary_name: segformer-lab\n")
    params = sum(p.numel() for p in model.parameters())
    assert f"| parameters | {params:,}" in text and "GMACs at 64x64" in text
    assert "| mIoU | 12.50 |" in text and "model-index:" in text and 'license: "apache-2.0"' in text
    loaded = sl.load_model(tmp_path)  # the card does not get in the way of loading
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    (tmp_path / "README.md").write_text("edited by hand")
    model.save_pretrained(tmp_path, model_card=True)
    assert (tmp_path / "README.md").read_text() == "edited by hand"  # as ModelHubMixin: an existing card is kept


def test_push_to_hub_uploads_the_hub_layout(tmp_path, monkeypatch):
    """huggingface_hub replaced by a stand-in that 'uploads' into a local directory."""
    import shutil

    remote = tmp_path / "remote"
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None):
            calls["create_repo"] = (repo_id, private, exist_ok)
            return types.SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, repo_id, folder_path, commit_message, repo_type=None, revision=None, create_pr=None):
            calls["upload"] = (repo_id, commit_message, revision)
            shutil.copytree(folder_path, remote)
            return "commit-info"

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi))
    model = sl.create_model(config=shallow("segformer_b0"))
    assert push_to_hub(model, "me/tiny", token="t", private=True, model_card_kwargs={"dataset": "ade20k"}) == (
        "commit-info"
    )
    assert calls["create_repo"] == ("me/tiny", True, True) and calls["token"] == "t"
    assert sorted(p.name for p in remote.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "# me/tiny" in (remote / "README.md").read_text()
    loaded = sl.load_model(remote)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_push_to_hub_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'segformer-lab\[hub\]'"):
        push_to_hub(sl.create_model(config=shallow("segformer_b0")), "me/tiny")


def test_one_runner_for_every_onnx_file(exported_b0):
    """``OnnxRunner`` is the project's one way to run a file: its session spins neither kind
    of worker thread (timed in turns, spinning would take PyTorch's cores), and it is called
    like the model; ``logit_agreement`` is the one comparison of two logit maps."""
    checkpoint, path = exported_b0
    runner = export.OnnxRunner(path, threads=1)
    options = runner.session.get_session_options()
    for kind in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{kind}.allow_spinning") == "0"
    model = sl.load_model(checkpoint).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        diff, agreement = export.logit_agreement(runner(x), model(x))
    assert diff < 1e-4 and agreement == 1.0
    a = torch.zeros(1, 3, 1, 2)
    b = a.clone()
    b[0, 1, 0, 1] = 1.0  # the second position's argmax moves from class 0 to class 1
    assert export.logit_agreement(a, b) == (1.0, 0.5)
    assert export.logit_agreement(a, b[..., :1]) == (float("inf"), 0.0)
