"""Rewrites of ONNX graphs around ONNX Runtime's static quantization, so int8 runs faster
than float on x86 (plain `quantize_static` on our export ran at 0.8x float).

ONNX Runtime fuses DQ -> op -> Q into an int8 kernel only for ops that have a QLinear
kernel; on our export it left the hard-swish, the gate HardSigmoid, the squeeze-excite
ReduceMean and the "SAME" Pads running float between a DQ and a Q (43 pairs, 1.3 ms of 3.7 ms
on V3-Small), and MLAS's int8 depthwise and 3-input-channel kernels were slower than float.

- `prepare_float` (before quantizing; same outputs): ReduceMean -> GlobalAveragePool, Pads
  into the Conv, the gate's constant factor taken out, depthwise channels padded with zeros
  to a multiple of 16;
- `finish_quantized` (after): the input conv in float on its dequantized int8 weights, and
  HardSigmoid as a 256-entry table op (HardSwish: that table plus a QLinearMul), so every op
  after the first conv runs as an 8-bit kernel (2 Q/DQ pairs left of 43).
"""

from __future__ import annotations

import numpy as np

CHANNEL_ALIGN = 16  # MLAS's int8 depthwise kernel takes channel counts in multiples of 16
UNARY = ("Relu", "Clip", "HardSwish", "HardSigmoid", "GlobalAveragePool")


def _attr(node, name: str, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


class _Graph:
    """Producer / consumer / initializer maps of an ONNX graph (rebuilt after each rewrite)."""

    def __init__(self, graph) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.inits = {i.name: i for i in graph.initializer}
        self.constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                          for n in graph.node if n.op_type == "Constant" and n.attribute}
        self.outputs = {o.name for o in graph.output}

    def value(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        return self.constants.get(name)

    def only_weight_use(self, node) -> bool:
        """`node`'s weight (and bias) are initializers read by nothing else."""
        return all(name in self.inits and len(self.consumers[name]) == 1 for name in node.input[1:])


def prepare_float(model) -> dict[str, float]:
    """Rewrite the float export (same outputs) into ops ONNX Runtime fuses into int8 kernels.

    - ReduceMean over H, W (the squeeze-excite pool) becomes GlobalAveragePool, which has a
      QLinear kernel; ReduceMean would run float between a DQ and a Q.
    - A zero Pad in front of a Conv moves into the Conv's pads (the Pad ran float on DQ'd data).
    - The constant factor after each gate HardSigmoid (1.00002) is taken out and returned, by
      gate tensor name, to be folded into that gate's scale by `finish_quantized`.
    - Depthwise convs get zero channels up to a multiple of 16 (with their producer and
      consumers), since MLAS's fast int8 depthwise kernel needs that: 72/88/120 channels ran
      2x slower than the float conv.
    """
    graph = model.graph
    _pools_and_pads(_Graph(graph))
    gates = _split_gate_scales(_Graph(graph))
    _align_depthwise(graph)
    used = {name for node in graph.node for name in node.input}
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)  # ONNX Runtime warns about each one it loads
    del graph.value_info[:]  # channel counts changed; the quantizer infers shapes again
    return gates


def _pools_and_pads(g: _Graph) -> None:
    from onnx import helper

    for node in list(g.graph.node):
        if node.op_type == "ReduceMean" and len(node.input) == 1:
            axes, keep = _attr(node, "axes"), _attr(node, "keepdims", 1)
            if list(axes or []) == [2, 3] and keep == 1:
                node.op_type = "GlobalAveragePool"
                del node.attribute[:]
        elif node.op_type == "Pad" and _attr(node, "mode", b"constant") == b"constant":
            pads, users = g.value(node.input[1]), g.consumers.get(node.output[0], [])
            fill = g.value(node.input[2]) if len(node.input) > 2 and node.input[2] else 0
            if (pads is None or len(pads) != 8 or pads[[0, 1, 4, 5]].any() or (pads < 0).any()
                    or np.any(fill != 0) or len(users) != 1 or users[0].op_type != "Conv"
                    or _attr(users[0], "auto_pad", b"NOTSET") != b"NOTSET"):  # fmt: skip
                continue
            conv = users[0]
            top, left, bottom, right = _attr(conv, "pads", [0, 0, 0, 0])
            merged = [top + pads[2], left + pads[3], bottom + pads[6], right + pads[7]]
            for a in [a for a in conv.attribute if a.name == "pads"]:
                conv.attribute.remove(a)
            conv.attribute.append(helper.make_attribute("pads", [int(p) for p in merged]))
            conv.input[0] = node.input[0]
            g.graph.node.remove(node)


def _split_gate_scales(g: _Graph) -> dict[str, float]:
    gates = {}
    for node in list(g.graph.node):
        users = g.consumers.get(node.output[0], [])
        if node.op_type != "HardSigmoid" or len(users) != 1 or users[0].op_type != "Mul":
            continue
        mul = users[0]
        other = [name for name in mul.input if name != node.output[0]]
        factor = g.value(other[0]) if len(other) == 1 else None
        if factor is None or factor.size != 1 or float(factor) <= 0 or mul.output[0] in g.outputs:
            continue
        gates[node.output[0]] = float(factor)
        for user in g.consumers.get(mul.output[0], []):
            user.input[:] = [node.output[0] if i == mul.output[0] else i for i in user.input]
        g.graph.node.remove(mul)
    return gates


def _align_depthwise(graph) -> None:
    # one set of maps serves the whole pass: padding rewrites initializers in place and
    # `group` attributes, never which node produces or reads a tensor
    g = _Graph(graph)
    for node in list(graph.node):
        weight = g.value(node.input[1]) if node.op_type == "Conv" else None
        channels = 0 if weight is None else weight.shape[0]
        if (weight is None or weight.shape[1] != 1 or _attr(node, "group", 1) != channels
                or channels % CHANNEL_ALIGN == 0):  # fmt: skip
            continue
        plan = _channel_plan(g, node, channels)
        if plan:
            _pad_channels(g, plan, channels, -channels % CHANNEL_ALIGN)


def _channel_plan(g: _Graph, depthwise, channels: int) -> dict[str, set] | None:
    """Which convs gain zero output ('out'), input ('in') or depthwise ('dw') channels so that
    every tensor from the conv feeding `depthwise` to the convs reading its result is wider;
    None where the channels reach anything else (a residual Add, an output)."""
    plan: dict[str, set] = {}
    wide: set[str] = set()
    todo: list[str] = []

    def widen(name: str) -> bool:
        """Make `name` wider at its source: the plain conv behind unary ops."""
        while name not in wide and g.producer.get(name) is not None \
                and g.producer[name].op_type in UNARY:  # fmt: skip
            name = g.producer[name].input[0]
        if name in wide:
            return True
        conv = g.producer.get(name)
        if conv is None or conv.op_type != "Conv" or _attr(conv, "group", 1) != 1 \
                or not g.only_weight_use(conv):  # fmt: skip
            return False
        plan.setdefault(conv.name, set()).add("out")
        wide.add(name)
        todo.append(name)
        return True

    if not widen(depthwise.input[0]):
        return None
    while todo:
        name = todo.pop()
        if name in g.outputs:
            return None
        for user in g.consumers.get(name, []):
            grown = None
            if user.op_type in UNARY and user.input[0] == name:
                grown = user.output[0]
            elif user.op_type == "Conv" and g.only_weight_use(user):
                group = _attr(user, "group", 1)
                if group == 1:
                    plan.setdefault(user.name, set()).add("in")
                elif group == channels and g.value(user.input[1]).shape[1] == 1:
                    plan.setdefault(user.name, set()).add("dw")
                    grown = user.output[0]
                else:
                    return None
            elif user.op_type == "Mul" and len(user.input) == 2:
                if not all(widen(i) for i in user.input):
                    return None
                grown = user.output[0]
            else:
                return None
            if grown is not None and grown not in wide:
                wide.add(grown)
                todo.append(grown)
    return plan


def _pad_channels(g: _Graph, plan: dict[str, set], channels: int, extra: int) -> None:
    from onnx import numpy_helper

    def pad(name: str, axis: int) -> None:
        array = numpy_helper.to_array(g.inits[name])
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, extra)
        g.inits[name].CopyFrom(numpy_helper.from_array(np.pad(array, widths), name))

    for node in g.graph.node:
        actions = plan.get(node.name, set())
        if actions & {"out", "dw"}:
            pad(node.input[1], 0)
            if len(node.input) > 2 and node.input[2]:
                pad(node.input[2], 0)
        if "in" in actions:
            pad(node.input[1], 1)
        if "dw" in actions:
            for a in node.attribute:
                if a.name == "group":
                    a.i = channels + extra


def finish_quantized(model, gates: dict[str, float]) -> None:
    """After `quantize_static`: the input conv in float, hard activations as 8-bit ops;
    `gates` from `prepare_float`."""
    _float_input_conv(model)
    _fuse_hard_activations(model, gates)


def _float_input_conv(model) -> None:
    """Run convs with fewer than 4 input channels (the 3-channel input conv) in float on their
    dequantized int8 weights, reading the float input directly.

    MLAS has no fast int8 kernel for them: 0.30 ms (plus 0.06 ms quantizing and transposing
    the input) against 0.15 ms for the float conv. The output is still quantized as before, so
    the rest of the network sees the same 8-bit tensor (top-1 unchanged; running this conv and
    its hard-swish wholly float, with float weights, cost ~1 point of top-1 on V3-Small).
    """
    from onnx import numpy_helper

    g = _Graph(model.graph)
    drop = []
    for conv in [n for n in model.graph.node if n.op_type == "Conv"]:
        readers = [g.producer.get(name) for name in conv.input[1:]]
        if _attr(conv, "group", 1) != 1 or not readers or any(
                r is None or r.op_type != "DequantizeLinear" or len(g.consumers[r.output[0]]) != 1
                for r in readers):  # fmt: skip
            continue
        weight = g.value(readers[0].input[0])
        if weight is None or weight.shape[1] >= 4:
            continue
        for index, dq in enumerate(readers, 1):
            values, scale = g.value(dq.input[0]), g.value(dq.input[1])
            zero = g.value(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
            shape = [-1] + [1] * (values.ndim - 1) if scale.size > 1 else []
            real = (values.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)
            name = f"{dq.input[0]}_float"
            model.graph.initializer.append(numpy_helper.from_array(real.astype(np.float32), name))
            conv.input[index] = name
            drop.append(dq)
        dq = g.producer.get(conv.input[0])
        q = g.producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" \
            else None  # fmt: skip
        if q is not None and q.op_type == "QuantizeLinear" and len(g.consumers[dq.output[0]]) == 1 \
                and len(g.consumers[q.output[0]]) == 1:  # fmt: skip
            conv.input[0] = q.input[0]
            drop += [dq, q]
    for node in drop:
        model.graph.node.remove(node)


def _fuse_hard_activations(model, gates: dict[str, float]) -> None:
    """Replace each DQ -> HardSwish / HardSigmoid -> Q (float, unfused) by 8-bit ops.

    HardSigmoid is affine between two clamps, so on 8-bit data it is a requantization:
    com.microsoft QLinearLeakyRelu with alpha 1 (a 256-entry table built at load) maps q to
    round(q_real * 255 a) + round(255 b), i.e. clamp(a x + b, 0, 1) on the scale 1/255 (the
    gate factor folded into that scale). HardSwish is x times that, one QLinearMul.
    """
    from onnx import helper, numpy_helper

    g = _Graph(model.graph)
    nodes = list(model.graph.node)
    for node in [n for n in nodes if n.op_type in ("HardSwish", "HardSigmoid")]:
        dq = g.producer.get(node.input[0])
        users = g.consumers.get(node.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1 \
                or users[0].op_type != "QuantizeLinear":  # fmt: skip
            continue
        q = users[0]
        zero = g.value(dq.input[2]) if len(dq.input) > 2 else None
        if zero is None or zero.size != 1 or g.value(dq.input[1]).size != 1:
            continue
        low = int(np.iinfo(zero.dtype).min)
        hard_sigmoid = node.op_type == "HardSigmoid"
        alpha = _attr(node, "alpha", 0.2 if hard_sigmoid else 1 / 6)
        beta = _attr(node, "beta", 0.5)
        scale = gates.get(node.output[0], 1.0) / 255 if hard_sigmoid else 1 / 255
        stem = node.output[0]
        consts = {f"{stem}_table_scale": np.array(1 / (255 * alpha), np.float32),
                  f"{stem}_table_zero_point": np.array(low + round(255 * beta), zero.dtype),
                  f"{stem}_gate_scale": np.array(scale, np.float32),
                  f"{stem}_gate_zero_point": np.array(low, zero.dtype)}  # fmt: skip
        model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        table_s, table_z, gate_s, gate_z = consts
        x = list(dq.input[:3])
        gate = q.output[0] if hard_sigmoid else f"{stem}_gate"
        new = [helper.make_node("QLinearLeakyRelu", [*x, table_s, table_z], [gate],
                                f"{node.name or stem}_table", domain="com.microsoft", alpha=1.0)]
        if hard_sigmoid:  # readers dequantize the gate with its exact scale
            for reader in g.consumers.get(gate, []):
                if reader.op_type != "DequantizeLinear":
                    raise ValueError(f"unexpected reader {reader.op_type} of {gate}")
                reader.input[1:3] = [gate_s, gate_z]
        else:
            new.append(helper.make_node("QLinearMul", [*x, gate, gate_s, gate_z, *q.input[1:3]],
                                        [q.output[0]], f"{node.name or stem}_mul",
                                        domain="com.microsoft"))  # fmt: skip
        at = nodes.index(node)
        nodes[at : at + 1] = new
        nodes.remove(q)
        if len(g.consumers[dq.output[0]]) == 1:
            nodes.remove(dq)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
