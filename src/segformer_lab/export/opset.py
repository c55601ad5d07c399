"""ONNX opsets: the range an export accepts, and ``lower_opset``, our own pass that brings
the exporter's opset 18 graph down to an older opset (onnx's version converter cannot).

Opsets below 17 have no ``LayerNormalization`` op (older TensorRT, e.g. on a Jetson
Nano, cannot parse it). The exporter does not decompose it by itself: it builds every
graph at opset 18 and asks onnx's version converter to go down, which fails on
``LayerNormalization`` (the exporter then only warns and leaves the file at opset 18,
LayerNormalization included). So for opsets below 17 every ``nn.LayerNorm`` is swapped,
in a copy of the model, for ``DecomposedLayerNorm`` (``surgery``), which exports as
``ReduceMean``/``Sub``/``Mul``/``Add``/``Sqrt``/``Div``. onnx's converter fails on that
graph too (``ReduceMean``, ``Shape``), so the opset 18 graph is brought down here, and
the exporter checks the result for the opset and for the absence of
``LayerNormalization``.
"""

from __future__ import annotations

import numpy as np

from .errors import ExportError, first_line

DEFAULT_OPSET = 18
EXPORTER_OPSET = 18  # the lowest opset torch.onnx's dynamo exporter builds; lower ones go through lower_opset
MIN_OPSET = 13  # below, ops such as Softmax change meaning without changing signature
MAX_OPSET = 23
FIRST_OPSET_WITH_LAYER_NORM = 17


def all_nodes(graph):
    """Nodes of a graph and of the subgraphs inside its nodes (If, Loop, Scan)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                yield from all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from all_nodes(sub)


def _ir_version_for(opset: int) -> int:
    """The IR version of the first onnx release with ``opset`` (older runtimes reject newer IR)."""
    from onnx import helper

    releases = [(ir, ops) for _, ir, ops, *_ in helper.VERSION_TABLE if ops >= opset]
    return min(ir for ir, ops in releases if ops == min(o for _, o in releases))


def _drop_unused_initializers(graph) -> None:
    used = {name for node in all_nodes(graph) for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def lower_opset(proto, target: int):
    """The ONNX model ``proto`` (default domain at a higher opset, e.g. the exporter's 18)
    rewritten for opset ``target`` (>= ``MIN_OPSET``). onnx's own version converter fails on
    the exporter's graphs (it keeps opset 18's ``noop_with_empty_axes`` on ``ReduceMean``
    and has no adapter down from ``Shape``-15), so this pass goes node by node, comparing
    the op's schema at both opsets:

    - same schema version: nothing to do (most ops; many later versions only add types);
    - an input that is an attribute at ``target`` (``ReduceMean``'s ``axes`` before 18):
      its constant value becomes the attribute;
    - attributes the older schema lacks are dropped when they hold the newer schema's
      default (``noop_with_empty_axes=0``, ``Resize``'s ``antialias=0`` ...);
    - anything else (an op that does not exist yet, such as ``GridSample`` below 16, or a
      non-default new attribute) raises ``ExportError`` naming the op.

    The result is checked with ``onnx.checker`` (full shape inference) and gets the IR
    version of the onnx release that introduced ``target``; numerics are checked by the
    caller in onnxruntime.
    """
    import onnx
    from onnx import defs, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    source = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if target >= source:
        return model
    initializers = {t.name: t for t in model.graph.initializer}

    def constant(name: str):
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        for node in model.graph.node:
            if node.op_type == "Constant" and node.output[0] == name:
                return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
        return None

    def lower(node) -> None:
        if node.domain not in ("", "ai.onnx"):
            return
        try:
            new = defs.get_schema(node.op_type, source, node.domain)
        except defs.SchemaError:
            return  # not a standard op at this opset (a local function): left as it is
        try:
            old = defs.get_schema(node.op_type, target, node.domain)
        except defs.SchemaError:
            raise ExportError(
                f"{node.op_type} (node {node.name!r}) does not exist before opset {new.since_version}: "
                f"export with --opset {new.since_version} or higher"
            ) from None
        if old.since_version == new.since_version:
            return
        where = f"{node.op_type} (node {node.name!r})"
        old_inputs = [i.name for i in old.inputs]
        for index in reversed(range(len(node.input))):
            if index >= len(new.inputs):
                continue
            name = new.inputs[index].name
            if name in old_inputs or not node.input[index]:
                continue
            if name not in old.attributes:
                raise ExportError(f"{where}: input {name!r} has no counterpart at opset {target}")
            value = constant(node.input[index])
            if value is None:
                raise ExportError(f"{where}: input {name!r} is not a constant, so it cannot become an attribute")
            if index != len(node.input) - 1:
                raise ExportError(f"{where}: input {name!r} is not the last input")
            node.attribute.append(helper.make_attribute(name, [int(v) for v in value.reshape(-1)]))
            del node.input[index]
        while node.input and not node.input[-1]:
            del node.input[-1]
        for attribute in list(node.attribute):
            if attribute.name in old.attributes:
                continue
            declared = new.attributes.get(attribute.name)
            default = declared.default_value if declared is not None else None
            if default is not None and default.type != 0 and helper.get_attribute_value(attribute) == (
                helper.get_attribute_value(default)
            ):
                node.attribute.remove(attribute)
                continue
            if node.op_type == "Reshape" and attribute.name == "allowzero":
                # allowzero=1 keeps a 0 in the target shape literal, allowzero=0 copies the input's
                # dimension: they differ only for a 0 in the shape, i.e. for empty tensors, which
                # these models never see (every side is >= 1). A constant shape is checked.
                shape = constant(node.input[1])
                if shape is None or not (shape == 0).any():
                    node.attribute.remove(attribute)
                    continue
            raise ExportError(
                f"{where}: attribute {attribute.name}={helper.get_attribute_value(attribute)!r} "
                f"does not exist at opset {target}"
            )

    def split_shape_slices(graph) -> None:
        """``Shape(x, start, end)`` (opset 15) -> ``Slice(Shape(x), start, end)``."""
        nodes = [type(n)() for n in graph.node]
        for copy_, node in zip(nodes, graph.node):
            copy_.CopyFrom(node)
        del graph.node[:]
        for original in nodes:
            node = graph.node.add()
            node.CopyFrom(original)  # repeated fields hold copies: edit the one in the graph
            bounds = {a.name: a.i for a in node.attribute if a.name in ("start", "end")}
            if node.op_type != "Shape" or node.domain not in ("", "ai.onnx") or not bounds:
                continue
            del node.attribute[:]
            output = node.output[0]
            node.output[0] = f"{output}__full_shape"
            names = [f"{output}__{part}" for part in ("starts", "ends", "axes")]
            values = [bounds.get("start", 0), bounds.get("end", 2**62), 0]
            for name, value in zip(names, values):
                graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), name))
            graph.node.append(helper.make_node("Slice", [node.output[0], *names], [output], name=f"{node.name}__slice"))

    def visit(nodes) -> None:
        for node in nodes:
            lower(node)
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    visit(attribute.g.node)
                for sub in attribute.graphs:
                    visit(sub.node)

    if target < 15:
        split_shape_slices(model.graph)
    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
        for o in function.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = target
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    _drop_unused_initializers(model.graph)
    model.ir_version = min(model.ir_version, _ir_version_for(target))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:
        raise ExportError(f"the opset {target} graph does not pass onnx.checker: {first_line(err)}") from err
    return model


