"""Float16 exports that do not overflow: LayerNorm and Softmax in float32 inside the
float16 graph, RoPE angles in float32, checked with activations whose squares pass
float16's maximum (65504)."""

import numpy as np
import pytest
import torch

import segformer_lab as sl
from segformer_lab import export

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FLOAT16_MAX = 65504.0


def value_types(path) -> tuple[object, dict[str, int]]:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    values = (*model.graph.value_info, *model.graph.input, *model.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return model, types


def test_fp16_export_keeps_layer_norm_softmax_and_rope_in_float32(tmp_path):
    """A shallow RoPE SegFormer whose first patch embedding is scaled by 1e3: the first
    LayerNorm sees activations whose squares overflow float16 (a naive float16 variance
    is inf). The exported float16 graph runs every LayerNormalization and Softmax on
    float32 inputs, RoPE's Sin/Cos on float32 angles, and its logits stay finite and
    within the fp16 tolerance of the float32 PyTorch model."""
    config = sl.get_config("segformer_b0_rope_axial", num_classes=4).with_stages(depth=1)
    model = sl.create_model(config=config).eval()
    with torch.no_grad():
        model.encoder.patch_embeddings[0].proj.weight.mul_(1e3)
        model.encoder.patch_embeddings[0].proj.bias.normal_(0, 1e3)
    seen = {}
    hook = model.encoder.patch_embeddings[0].layer_norm.register_forward_hook(
        lambda module, inputs, output: seen.setdefault("x", inputs[0]))
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
    hook.remove()
    before_norm = seen["x"].half()
    assert before_norm.abs().max() > FLOAT16_MAX**0.5  # squares past float16's range ...
    assert not torch.isfinite((before_norm * before_norm).mean(-1)).all()  # ... so a naive fp16 variance overflows

    out = tmp_path / "fp16.onnx"
    result = export.export_onnx(model, out, fp16=True)  # dynamic: the RoPE tables are computed in the graph
    assert result.passed
    graph, types = value_types(out)
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert any(t.data_type == float16 for t in graph.graph.initializer)  # a float16 model ...
    islands = [n for n in graph.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert {n.op_type for n in islands} == {"LayerNormalization", "Softmax"}
    for node in islands:  # ... whose LayerNorm and Softmax compute in float32
        assert [types[name] for name in node.input if name] == [float32] * len([n for n in node.input if n]), node.name
    trig = [n for n in graph.graph.node if n.op_type in ("Sin", "Cos")]
    assert trig and all(types[n.input[0]] == float32 for n in trig)

    session = export.onnx_session(out)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert np.isfinite(got).all()
    scale = max(1.0, expected.abs().max().item())
    assert np.abs(got - expected.numpy()).max() <= export.FP16_RTOL * scale


def test_float32_islands_wraps_only_float16_nodes():
    """The pass casts float16 inputs of LayerNorm/Softmax to float32 and the outputs back,
    and leaves float32 nodes alone; the result computes the same in onnxruntime."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["h"], ["hs"], axis=-1, name="soft16"),
         helper.make_node("Softmax", ["f"], ["fs"], axis=-1, name="soft32")],
        "g",
        [helper.make_tensor_value_info("h", TensorProto.FLOAT16, [2, 5]),
         helper.make_tensor_value_info("f", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("hs", TensorProto.FLOAT16, [2, 5]),
         helper.make_tensor_value_info("fs", TensorProto.FLOAT, [2, 5])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert export.surgery.float32_islands(model) == 1
    ops = [(n.op_type, n.name) for n in model.graph.node]
    assert [op for op, _ in ops] == ["Cast", "Softmax", "Cast", "Softmax"] and ops[3][1] == "soft32"
    onnx.checker.check_model(model, full_check=True)
    import onnxruntime as ort

    h = np.array([[0.0, 1.0, 2.0, 3.0, 11.0]] * 2, dtype=np.float16)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    hs, _ = session.run(None, {"h": h, "f": h.astype(np.float32)})
    assert hs.dtype == np.float16
    np.testing.assert_allclose(hs.astype(np.float32), torch.softmax(torch.tensor(h, dtype=torch.float32), -1),
                               atol=1e-3)
