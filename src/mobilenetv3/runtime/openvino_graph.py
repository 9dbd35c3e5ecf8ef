"""Our int8 ONNX file in the form OpenVINO runs as int8 kernels: hard activations as standard
QDQ ops instead of ONNX Runtime's 8-bit table ops.

`quantize.ort_graph` writes each hard activation as com.microsoft QLinearLeakyRelu (a 256-entry
table: the HardSigmoid) and, for hard-swish, a QLinearMul. OpenVINO reads those as chains of
elementwise ops between u8 tensors that it cannot fold into the convolution before them: on
V3-Small (batch 1, 1 thread) 29 such snippets and the layout reorders around them took 1.4 of
3.7 ms, and the int8 file ran 1.4x slower than OpenVINO's float export (the HardSigmoid
bottleneck of openvinotoolkit/openvino#11898). Worse, OpenVINO 2026.4 reads QLinearLeakyRelu
without saturating: table codes outside 0..255 wrap around (x = -5 gives a gate of 0.675, not
0), so the file's top-1 agreed with ONNX Runtime's on 0.2% of photos. `standard_activations`
writes them back as DequantizeLinear -> HardSigmoid / HardSwish -> QuantizeLinear, which
OpenVINO's low-precision transformations fold into the int8 convolution (an eltwise post-op and
its requantization).

The same function: the table maps x to round(255 a x) + round(255 b) on the scale 1/255, i.e.
QuantizeLinear(HardSigmoid(a, b') x, 1/255) with b' = round(255 b) / 255 exactly (its zero
point is an integer). Hard-swish becomes ONNX HardSwish (b = 1/2, the gate not rounded to
1/255 before the multiply): each within one step of ONNX Runtime's table and multiply.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

TABLE_OP = "QLinearLeakyRelu"
HARD_SWISH_ALPHA = 1 / 6  # ONNX HardSwish: x * clamp(x / 6 + 1/2, 0, 1)


def openvino_source(path: str | os.PathLike) -> str | bytes:
    """What OpenVINO reads for an .onnx file: the path, or, for a file with the table ops, the
    rewritten model's bytes."""
    if TABLE_OP.encode() not in Path(path).read_bytes():
        return str(path)
    import onnx

    model = onnx.load(str(path))
    standard_activations(model)
    return model.SerializeToString()


def standard_activations(model) -> int:
    """Rewrite `model` (an int8 onnx.ModelProto `quantize --format onnx` wrote) in place; the
    number of hard activations rewritten."""
    from onnx import helper, numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes, count = list(model.graph.node), 0
    for table in [n for n in nodes if n.op_type == TABLE_OP]:
        x, x_scale, x_zero, table_scale, table_zero = table.input
        zero = values[table_zero]
        low = int(np.iinfo(zero.dtype).min)
        alpha, beta = 1 / (255 * float(values[table_scale])), (int(zero) - low) / 255
        users = consumers.get(table.output[0], [])
        mul = users[0] if len(users) == 1 and users[0].op_type == "QLinearMul" else None
        stem = table.output[0]
        real, consts = f"{stem}_real", {}
        new = [helper.make_node("DequantizeLinear", [x, x_scale, x_zero], [real])]
        if mul is None:  # the gate, on the scale 1/255 its readers dequantize
            consts = {f"{stem}_q_scale": np.array(1 / 255, np.float32),
                      f"{stem}_q_zero_point": np.array(low, zero.dtype)}  # fmt: skip
            new += [helper.make_node("HardSigmoid", [real], [f"{stem}_hs"], alpha=alpha, beta=beta),
                    helper.make_node("QuantizeLinear", [f"{stem}_hs", *consts], [stem])]
        elif (mul.input[:3] == table.input[:3] and abs(beta - 0.5) <= 1 / 255
              and np.isclose(alpha, HARD_SWISH_ALPHA, rtol=1e-4)):  # fmt: skip
            new += [helper.make_node("HardSwish", [real], [f"{stem}_hswish"]),
                    helper.make_node("QuantizeLinear", [f"{stem}_hswish", *mul.input[6:8]],
                                     [mul.output[0]])]  # fmt: skip
            nodes.remove(mul)
        else:
            continue
        model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        at = nodes.index(table)
        nodes[at : at + 1] = new
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count
