"""fp32 -> fp16 conversion of an exported ONNX graph, keeping fp32 (and uint8/int64) graph inputs and outputs.

    model16 = to_fp16(onnx.load("wam_full.onnx"))

What changes: every float32 initializer / Constant / ConstantOfShape value becomes float16; every Cast to float32
inside the graph casts to float16 instead; float32 graph inputs get a Cast to float16 right after them and float32
graph outputs a Cast back to float32 right before them. Value infos are re-inferred. Ops that onnxruntime's CPU EP has
no fp16 kernel for get Casts inserted by onnxruntime itself; TensorRT and CUDA run them in fp16.

Written here instead of onnxconverter-common, whose 1.16 release crashes on our graphs (remove_unnecessary_cast_node).
Core module: onnx + numpy only.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16_MAX = 65504.0


def _tensor_to_fp16(t: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(t).astype(np.float32)
    # saturate instead of overflowing to inf (-1e9 attention masks and the like)
    arr = np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)
    out = numpy_helper.from_array(arr, t.name)
    return out


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of `model` with the same graph inputs/outputs (names, dtypes, shapes)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if any(n.op_type in ("If", "Loop", "Scan") for n in g.node):
        raise ValueError("to_fp16 handles flat graphs only (no If/Loop/Scan subgraphs)")
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(_tensor_to_fp16(init))
    for node in g.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_tensor_to_fp16(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    new_nodes: list[onnx.NodeProto] = []
    # float32 inputs -> Cast to fp16; consumers read the cast
    for inp in g.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        cast_name = f"{inp.name}__fp16"
        for node in g.node:
            for j, name in enumerate(node.input):
                if name == inp.name:
                    node.input[j] = cast_name
        new_nodes.append(
            helper.make_node(
                "Cast", [inp.name], [cast_name], name=f"cast_in_{inp.name}", to=TensorProto.FLOAT16
            )
        )
    # float32 outputs: the producer writes <name>__fp16, a Cast writes the original fp32 output name
    tail: list[onnx.NodeProto] = []
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{out.name}__fp16"
        for node in g.node:
            for j, name in enumerate(node.output):
                if name == out.name:
                    node.output[j] = half
            for j, name in enumerate(node.input):  # an output also consumed inside the graph
                if name == out.name:
                    node.input[j] = half
        tail.append(
            helper.make_node("Cast", [half], [out.name], name=f"cast_out_{out.name}", to=TensorProto.FLOAT)
        )
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m)
    return m
