"""Per-node cost model of the dataflow graph: cycles, memory bits, LUT/DSP/BRAM.

Every kernel streams one image at a time.  Its folding says how much of it
works in parallel: ``PE`` output channels (or attention pairs) per cycle and,
for the matrix kernels, ``SIMD`` input terms per cycle.  Expected cycles per
image follow from the shapes (FINN's rule for its MVAU: vectors x MW/SIMD x
MH/PE); the slowest node bounds the throughput of the whole pipeline.

The LUT / DSP / BRAM numbers are a first analytical estimate (constants below,
each with its reason); the cycle-accurate RTL simulation and Yosys counts of
the later backends calibrate them.
"""
from __future__ import annotations

import math

import numpy as np

from .graph import Graph, dtype_bits
from .onnx_graph import stream_shapes

BRAM36_BITS = 36 * 1024
LUTRAM_MAX_BITS = 16 * 1024      # smaller memories go to LUTRAM (64 bits per LUT)
CONTROL_LUTS = 40                # stream handshakes and counters of one kernel


WEIGHT_BITS = {"MVAU": 1, "XnorConv2d": 1, "IntConv2d": 8, "IntLinear": 8}


class FoldingError(ValueError):
    """A PE / SIMD value that does not divide the size it folds."""


def _prod(s) -> int:
    return int(np.prod(s)) if len(s) else 1


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


def fold_dims(node, shapes) -> dict:
    """The sizes PE and SIMD fold, for this node: {'PE': n, 'SIMD': m (optional)}."""
    a = node.attrs
    out = shapes[node.outputs[0]]
    if node.op == "MVAU":
        return {"PE": a["MH"], "SIMD": a["MW"]}
    if node.op == "XnorConv2d":      # templates/hls xnor_conv: every tap of a group per cycle, PE outputs
        return {"PE": node.params["w"].shape[0]}
    if node.op in ("IntConv2d", "IntLinear"):
        w = node.params["w"]
        return {"PE": w.shape[0], "SIMD": _prod(w.shape[1:])}
    if node.op == "QDAttention":
        return {"PE": shapes[node.inputs[1]][-2]}          # keys of a window compared per cycle
    return {"PE": out[-1]}                                 # channels of the output stream


def check_folding(graph: Graph, shapes) -> None:
    """Raise FoldingError naming every node whose PE / SIMD does not divide its size."""
    bad = []
    for n in graph.nodes:
        dims = fold_dims(n, shapes)
        for key, size in dims.items():
            v = int(n.attrs.get(key, 1))
            if v < 1 or size % v:
                bad.append(f"{n.name} ({n.op}): {key}={v} does not divide {size}; legal: "
                           f"{', '.join(map(str, _divisors(size)))}")
    if bad:
        raise FoldingError("folding cannot be applied:\n  " + "\n  ".join(bad))


def node_cost(node, shapes) -> dict:
    a = node.attrs
    pe = int(a.get("PE", 1))
    simd = int(a.get("SIMD", 1))
    out = shapes[node.outputs[0]]
    ins = [shapes[i] for i in node.inputs]
    out_bits = dtype_bits(node.dtype)
    # shapes are for a batch of one image (attention streams lead with windows)
    in_elems = max((_prod(s) for s in ins), default=0)
    out_elems = _prod(out)
    mem = 0
    luts = CONTROL_LUTS
    dsps = 0
    if node.op in ("MVAU", "XnorConv2d", "IntConv2d", "IntLinear"):
        dims = fold_dims(node, shapes)
        if node.op == "XnorConv2d":                               # no SIMD folding: all C/G * k * k terms
            dims["SIMD"] = _prod(node.params["w"].shape[1:])
            simd = dims["SIMD"]
        vectors = _prod(out[:-1])                                 # output tokens of one image
        cycles = vectors * (dims["SIMD"] // simd) * (dims["PE"] // pe)
        if node.op in ("XnorConv2d", "IntConv2d"):   # templates/rtl map_conv: the image read, then per output
            taps = node.params["w"].shape[-1] ** 2    # token its k*k taps gathered (one RAM read each), then the folds
            cycles = a["H"] * a["W"] + vectors * (taps + (dims["SIMD"] // simd) * (dims["PE"] // pe))
        wbits = WEIGHT_BITS[node.op]
        mem = dims["SIMD"] * dims["PE"] * wbits
        acc = out_bits
        if node.op in ("IntConv2d", "IntLinear"):
            dsps = pe * simd                                    # 8-bit weight products
            luts += pe * acc * 2
            if node.op == "IntConv2d":                          # templates/hls int_conv buffers the image
                mem += a["H"] * a["W"] * ins[0][-1] * 8
        else:
            luts += pe * (simd + 2 * acc)                       # XNOR + popcount compressor + accumulator
        if node.op == "XnorConv2d":                             # sliding-window line buffer
            span = (a["kernel"] - 1) * a["dilation"] + 1
            mem += span * (a["W"] + 2 * a["pad"]) * ins[0][-1]
    elif node.op == "QDAttention":
        windows, n, c = ins[0]
        m = ins[1][-2]
        # load the window's q, k, v (lock step), then per (query, head) scores, then level x V
        cycles = windows * (max(n, m) + a["heads"] * n * 2 * math.ceil(m / pe))
        mem = node.params["table"].size * 17 + (n + 2 * m) * c    # exp table + Q, K and V of one window
        luts += pe * (c // a["heads"] + 24) * 2
    elif node.op == "IntLayerNorm":
        tokens, c = out[-2], out[-1]
        # statistics pass, 1 + (R+1) + (R+1) cycles of variance, bit-serial root and divider, normalise pass
        cycles = _prod(out[:-2]) * tokens * (2 * math.ceil(c / pe) + 2 * a["r_bits"] + 3)
        mem = c * (16 + out_bits) + c * out_bits                     # parameters + the buffered token
        dsps = 2 * pe
        luts += pe * 64 + 400                                       # isqrt + divider per token
    elif node.op == "Affine":
        cycles = math.ceil(out_elems / pe)
        n_terms = len(node.inputs)
        mem = sum(node.params[f"m{i}"].size * 16 for i in range(n_terms)) + node.params["bias"].size * 32
        dsps = pe * n_terms
        luts += pe * (out_bits + 8)
    elif node.op in ("RPReLU", "Lut", "Thresholding"):
        cycles = math.ceil(out_elems / pe)
        mem = sum(v.size for v in node.params.values()) * 16
        dsps = pe if node.op == "RPReLU" else 0
        luts += pe * (out_bits + 4)
    elif node.op in ("ShiftBranch", "WindowReverse", "AttentionTokens", "PooledUpsample"):
        # data movement through a map buffer (circular shifts and window
        # reordering need the whole map before the first output)
        cycles = math.ceil(max(in_elems, out_elems) / pe)
        if node.op == "ShiftBranch":   # templates/rtl map_tokens: the map read, then each word's 2R+1 (box) taps read
            taps = 2 * a["reach"] + 1 if a["kind"] == "box" else 1
            cycles = math.ceil(in_elems / pe) + math.ceil(out_elems / pe) * taps
        mem = in_elems * dtype_bits(node.dtype)
        luts += pe * out_bits * 2
    else:   # RepeatChannels, GroupSumChannels, TokenPool, TokenSum
        cycles = math.ceil(max(in_elems, out_elems) / pe)
        if node.op == "TokenPool":     # templates/rtl map_tokens: the map read, then k*k taps read per output word
            cycles = math.ceil(in_elems / pe) + math.ceil(out_elems / pe) * a["k"] ** 2
        luts += pe * out_bits
    bram = math.ceil(mem / BRAM36_BITS) if mem > LUTRAM_MAX_BITS else 0
    lutram = 0 if bram else math.ceil(mem / 64)
    return dict(cycles=int(cycles), mem_bits=int(mem), bram36=bram, luts=int(luts + lutram), dsps=int(dsps))


def graph_cost(graph: Graph, image_shape, clock_mhz: float = 100.0) -> dict:
    """Per-node cost rows plus the pipeline's totals and its bottleneck."""
    shapes = stream_shapes(graph, 1, image_shape)
    check_folding(graph, shapes)
    rows = []
    for n in graph.nodes:
        c = node_cost(n, shapes)
        rows.append(dict(name=n.name, op=n.op, domain=n.domain,
                         out_dtype=n.dtype, out_bits=dtype_bits(n.dtype),
                         in_bits=[dtype_bits(graph.dtype_of(i)) for i in n.inputs],
                         weight_bits=WEIGHT_BITS.get(n.op),
                         in_shape=[list(shapes[i]) for i in n.inputs], out_shape=list(shapes[n.outputs[0]]),
                         PE=int(n.attrs.get("PE", 1)), SIMD=int(n.attrs["SIMD"]) if "SIMD" in n.attrs else None,
                         **c))
    worst = max(rows, key=lambda r: r["cycles"])
    total = {k: sum(r[k] for r in rows) for k in ("mem_bits", "bram36", "luts", "dsps")}
    return dict(nodes=rows, bottleneck=worst["name"], cycles_per_image=worst["cycles"],
                latency_cycles=sum(r["cycles"] for r in rows),
                images_per_s=clock_mhz * 1e6 / worst["cycles"], clock_mhz=clock_mhz, **total)


def fold_for_target(graph: Graph, image_shape, target_cycles: int) -> None:
    """Smallest PE (then SIMD) per node that brings it to <= target cycles per
    image, where the sizes allow (sets the attributes in place)."""
    shapes = stream_shapes(graph, 1, image_shape)
    for n in graph.nodes:
        dims = fold_dims(n, shapes)
        n.attrs["PE"] = 1
        if "SIMD" in dims:
            n.attrs["SIMD"] = 1
        for key in (("SIMD", "PE") if "SIMD" in dims else ("PE",)):
            for v in _divisors(dims[key]):
                n.attrs[key] = v
                if node_cost(n, shapes)["cycles"] <= target_cycles:
                    break
            if node_cost(n, shapes)["cycles"] <= target_cycles:
                break
