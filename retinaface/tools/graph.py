"""Graph surgery on ONNX bytes (workstation only): simplify, fix the input size, constant
Resize scales for OpenCV. Used by the export, the optimizer and the quantizer."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError


def simplify(onnx_bytes: bytes) -> bytes:
    """Constant-fold and simplify with onnxslim (pure Python wheel, no native build needed)."""
    import onnx
    import onnxslim

    model = onnxslim.slim(onnx.load_from_string(onnx_bytes))
    return model.SerializeToString()


def constant_resize_scales(onnx_bytes: bytes) -> bytes:
    """Give every Resize of a static-shape graph constant `scales` instead of computed `sizes`.

    OpenCV 4.5's ONNX importer rejects Resize nodes whose optional inputs are empty names and
    whose sizes come from a Concat; with a static input the scales are known (2x here).
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load_from_string(onnx_bytes))
    infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in infos}
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        before, after = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not before or not after or 0 in before + after:
            raise ModelError("static export: Resize shapes are not static; cannot fix its scales")
        roi = numpy_helper.from_array(np.zeros(0, np.float32), node.name + "_roi")
        scales = numpy_helper.from_array(
            np.array([a / b for a, b in zip(after, before)], np.float32), node.name + "_scales"
        )
        model.graph.initializer.extend([roi, scales])
        data = node.input[0]
        del node.input[:]
        node.input.extend([data, roi.name, scales.name])
    return model.SerializeToString()


def fix_input_size(onnx_bytes: bytes, static_size) -> bytes:
    """The dynamic graph with its input fixed to 1x3xHxW, shapes folded by onnxslim."""
    import onnx

    width, height = static_size
    model = onnx.load_from_string(onnx_bytes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, height, width)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    return simplify(model.SerializeToString())
