"""Changes made for export: to a copy of the model before it (LayerNorm written out for
opsets without ``LayerNormalization``, float16 compute behind float32 inputs and
outputs), and to the float16 graph after it (``float32_islands``: the ops whose float16
arithmetic overflows or loses too much run in float32)."""

from __future__ import annotations

import torch
from torch import nn

FLOAT32_OPS = ("LayerNormalization", "Softmax")  # in a float16 graph, computed in float32 between casts


class DecomposedLayerNorm(nn.Module):
    """``nn.LayerNorm`` as mean, variance and rsqrt, for ONNX opsets without
    ``LayerNormalization``. Shares the original's parameters (same state dict keys);
    statistics are computed in at least float32 (so an fp16 export stays stable)."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-len(self.normalized_shape), 0))
        compute = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(compute)
        centred = xf - xf.mean(dims, keepdim=True)
        variance = (centred * centred).mean(dims, keepdim=True)
        y = (centred / torch.sqrt(variance + self.eps)).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


def decompose_layer_norms(model: nn.Module) -> int:
    """Replace every ``nn.LayerNorm`` in ``model`` (in place) by ``DecomposedLayerNorm``;
    returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, DecomposedLayerNorm(child))
                replaced += 1
    return replaced


class HalfPrecision(nn.Module):
    """The model in float16 behind float32 inputs and outputs (casts at both ends), so
    callers of the exported graph feed and read float32 as with a float32 export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values.half()).float()


def float32_islands(proto, op_types: tuple[str, ...] = FLOAT32_OPS) -> int:
    """In the ONNX model ``proto`` (in place), every node of ``op_types`` with a float16
    input gets its float16 inputs cast to float32 and its outputs cast back: LayerNorm's
    variance (activations of ~1e3 square past float16's 65504, so a float16 runtime such
    as TensorRT returns inf or NaN) and Softmax's sum run in float32 whatever the
    runtime does with float16. RoPE needs no pass: its angles and rotation are float32 in
    the model itself (``layers/rope.py``). Returns how many nodes were wrapped."""
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(proto)
    values = (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in proto.graph.initializer})
    nodes, wrapped = [], 0
    for node in proto.graph.node:
        if node.op_type not in op_types or types.get(node.input[0]) != TensorProto.FLOAT16:
            nodes.append(node)
            continue
        for index, name in enumerate(node.input):
            if name and types.get(name) == TensorProto.FLOAT16:
                cast = f"{name}__float32_for_{node.name}"
                nodes.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT, name=f"{cast}_cast"))
                node.input[index] = cast
        casts_back = []
        for index, name in enumerate(node.output):
            if name:
                node.output[index] = f"{name}__float32"
                casts_back.append(helper.make_node("Cast", [node.output[index]], [name], to=TensorProto.FLOAT16,
                                                   name=f"{name}__float16_cast"))  # fmt: skip
        nodes += [node, *casts_back]
        wrapped += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return wrapped
