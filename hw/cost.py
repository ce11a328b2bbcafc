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
from .kernels.shift import CROSS_TAPS
from .onnx_graph import stream_shapes

BRAM36_BITS = 36 * 1024
LUTRAM_MAX_BITS = 16 * 1024      # smaller memories go to LUTRAM (64 bits per LUT)
CONTROL_LUTS = 40                # stream handshakes and counters of one kernel


WEIGHT_BITS = {"MVAU": 1, "XnorConv2d": 1, "IntConv2d": 8, "IntLinear": 8}


class FoldingError(ValueError):
    """A PE / SIMD value that does not divide the size it folds."""


# 7-series block RAM aspect ratios (depth, width): RAMB18 and RAMB36
RAMB18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
RAMB36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))


def block_ram36(depth: int, width: int, lutram_max_bits: int = LUTRAM_MAX_BITS) -> float:
    """RAMB36 equivalents of a depth x width memory in its cheapest aspect ratio (a RAMB18
    counts one half); 0 for memories below ``lutram_max_bits``, which go to LUTRAM.  (Yosys
    sometimes packs a ROM tighter, two words of a port's width side by side; not counted.)"""
    if depth * width < lutram_max_bits:
        return 0.0
    n18 = min(-(-depth // d) * -(-width // w) for d, w in RAMB18_SHAPES) / 2
    n36 = min(-(-depth // d) * -(-width // w) for d, w in RAMB36_SHAPES)
    return float(min(n18, n36))


ROM_BRAM_FILL = 0.4      # weight_rom_in_bram: the least share of its block RAM a weight ROM fills there


# A ShiftConv coefficient ROM (one word of PE lanes per channel fold and tap) deeper than this is
# block RAM, a shallower one LUTs: up to 256 words a bit is LUT6s under one MUXF7 / MUXF8 tree,
# deeper ones grow further mux levels (Yosys: the shipped stage-2 ROM, 576 x 16 bits, took about
# 430 LUTs against half a RAMB36; stage 1's 144 x 36 bits is cheaper in LUTs).
COEF_LUT_DEPTH = 256


def shift_coef_rom(coef, pe: int) -> tuple:
    """(depth, width) of a ShiftConv's coefficient ROM, coef (C, taps), as templates/rtl/
    map_tokens.sv.j2 stores it: word f * taps + t holds the PE lanes of channel fold f, tap t."""
    c, taps = np.asarray(coef).shape
    return c // pe * taps, pe * _value_bits(coef)


def coef_rom_in_bram(depth: int, width: int) -> bool:
    """Whether a ShiftConv coefficient ROM is block RAM (deeper than COEF_LUT_DEPTH)."""
    return depth > COEF_LUT_DEPTH


def weight_rom_in_bram(depth: int, width: int) -> bool:
    """A weight ROM (MVAU, binary / integer convolution, IntLinear) of LUTRAM_MAX_BITS or more
    that fills at least ROM_BRAM_FILL of the block RAM it takes is block RAM (templates/rtl:
    rom_style "block"), any other LUTs ("logic_block").  A wide, shallow ROM wastes most of its
    block RAM (128 x 128 bits: 4 RAMB18 for about 260 LUTs), which holds Affine / RPReLU
    tables better (fixed_tables: 300-450 LUTs per block RAM)."""
    bits = depth * width
    return bits >= LUTRAM_MAX_BITS and bits >= ROM_BRAM_FILL * block_ram36(depth, width, 0) * BRAM36_BITS


# kernels that buffer a map (or its windows) before emitting it; in RTL each has BANKS = 1 or 2
# image buffers (templates/rtl: ping-pong with 2).  With one, the next image waits until the
# buffered one is emitted: the node reads at its producer's pace, then emits (graph_cost adds
# the two); with two, reading and emitting overlap.  One bank halves the buffer's block RAM.
BANKED_OPS = ("ShiftBranch", "ShiftConv", "TokenPool", "XnorConv2d", "IntConv2d", "AttentionTokens",
              "WindowReverse", "PooledUpsample")


FIFO_LUTRAM_DEPTH = 128     # templates/rtl/fifo.sv: FIFOs up to this depth, or up to FIFO_LUTRAM_BITS, are LUT RAM
# A LUT-RAM FIFO costs more than its bits / 64 (Yosys, 10-bit words: 1,538 deep 601 slice LUTs, 1,282
# deep 507, with the read multiplexer and pointers) where block RAM takes one RAMB36 or RAMB18 and
# about 60 LUTs: from 8 kbit on, a FIFO goes to block RAM (templates/rtl/fifo.sv's LUTRAM_BITS).
FIFO_LUTRAM_BITS = 8 * 1024


# The per-channel tables of an Affine / RPReLU kernel (templates/rtl/fixed.sv.j2): from this size on a
# table group is a block-RAM ROM.  Yosys maps a table of LUT ROM at about 4 LUTs per bit of word
# width per 256 words (a 256 x 36-bit group: 144 LUTs); one RAMB18 holds up to 512 x 36.
FIXED_TABLE_BRAM_BITS = 8 * 1024


# Node attribute: TABLE_BRAM = 0 keeps an Affine / RPReLU kernel's tables in LUTs whatever their size
# (flows.common.fold_for_board sets it where the block RAM runs short); absent or 1: by size.
TABLE_BRAM = "TABLE_BRAM"


def table_bram(node) -> bool:
    return bool(int(node.attrs.get(TABLE_BRAM, 1)))


def varying_bits(v) -> int:
    """The bit columns of a constant table (its values at the smallest signed width, _value_bits)
    that are not the same in every word: synthesis keeps only those (Yosys: a 256-channel Affine
    with m0 (16 bits, always positive), m1 (2^14 on every channel) and a 21-bit bias has 53-bit
    words of which 36 vary, and took half a RAMB36, not the whole one 53 bits need)."""
    v = np.asarray(v, dtype=np.int64).reshape(-1)
    if v.size == 0:
        return 0
    mask = (1 << _value_bits(v)) - 1
    return bin(int(np.bitwise_or.reduce((v ^ v[0]) & mask))).count("1")


def fixed_tables(mult_bits: list, bias_bits: int, channels: int, pe: int, rows: int, bram: bool = True) -> list:
    """The ROMs of an Affine / RPReLU kernel, [(name, depth, width, style)], style "block" (block
    RAM) or "logic" (LUTs): "tab" holds, per channel fold, the PE lanes of every multiplier table
    (``mult_bits``: their widths) and of the bias where it does not change with the row; "btab"
    the bias of each of ``rows`` rows (T x CF words) where it does.  A group of at least
    FIXED_TABLE_BRAM_BITS is "block" unless ``bram`` is False."""
    cf = channels // pe
    width = pe * (sum(mult_bits) + (bias_bits if rows == 1 else 0))
    groups = ([("tab", cf, width)] if width else []) + ([("btab", rows * cf, pe * bias_bits)] if rows > 1 else [])
    return [(n, d, w, "block" if bram and d * w >= FIXED_TABLE_BRAM_BITS else "logic") for n, d, w in groups]


def fifo_parts(depth: int, width: int) -> tuple:
    """A channel FIFO of ``depth`` words as the chain the RTL top builds (templates/rtl/top.sv.j2):
    (block-RAM part's depth, LUT-RAM part's depth).  An image-sized FIFO is a few words deeper
    than a block-RAM shape (an image plus a row of slack: 8,226 x 10 bits would take 4.5 RAMB36
    instead of 2.5 for 8,192), so up to FIFO_LUTRAM_DEPTH words go to a LUT-RAM FIFO behind it."""
    if depth <= FIFO_LUTRAM_DEPTH or depth * width <= FIFO_LUTRAM_BITS:
        return 0, depth
    best = (block_ram36(depth, width, 0), 0, depth)
    for g in (512, 1024, 2048, 4096, 8192, 16384):
        tail = depth % g
        if 2 <= tail <= FIFO_LUTRAM_DEPTH and (depth - tail) * width > FIFO_LUTRAM_BITS:
            best = min(best, (block_ram36(depth - tail, width, 0), tail, depth - tail))
    return best[2], best[1]


def lutram_luts(depth: int, width: int) -> int:
    """LUTs of a depth x width simple dual-port LUT RAM as Yosys maps it: RAM32M (32 words x 6
    bits) up to 32 words, RAM64M (64 x 3) beyond, four LUTs each.  A shallow memory costs by its
    width (a two-word 64-bit FIFO: 11 RAM32M), not by its bits."""
    if depth <= 0 or width <= 0:
        return 0
    cells = -(-width // 6) * -(-depth // 32) if depth <= 32 else -(-width // 3) * -(-depth // 64)
    return 4 * cells


def fifo_luts(depth: int, width: int) -> int:
    """Slice LUTs of a channel FIFO of templates/rtl/fifo.sv (0 for a direct link), as its
    fifo_parts: the LUT RAM (lutram_luts) with its pointers, occupancy and read multiplexer, and a
    block-RAM part's pointers and skid register.  Fitted to Yosys' counts of the shipped PYNQ-Z2
    top's FIFOs (`make sim` at 7a334de): 7,195 LUTs against 7,421 for its 128 LUT-RAM FIFO parts,
    1,610 against 1,590 for its 22 block-RAM ones; tests/test_rtl_sim.py checks seven shapes."""
    big, small = fifo_parts(depth, width) if depth else (0, 0)
    luts = 0
    if big:
        # pointers and counts (a wrap below a power of two costs compares), skid register
        luts += 4 * counter_bits(big + 1) + width + (0 if big & (big - 1) == 0 else 20)
    if small:
        logic = 8 if small <= 2 else 4 * counter_bits(small + 1) + 4 + (-(-small // 64) - 1) * width // 2
        luts += lutram_luts(small, width) + logic
    return luts


def counter_bits(n: int) -> int:
    """Counter bits for values 0 .. n-1 (at least 1); hw/rtlsim.py sizes its counters by it."""
    return max(1, (n - 1).bit_length())


def rom_luts(depth: int, width: int) -> int:
    """LUTs of a constant ROM in logic: a LUT6 per bit and 64 words (MUXF7 / MUXF8 join them),
    so a shallow ROM costs by its width."""
    return width * -(-depth // 64) if depth > 0 else 0


def popcount_luts(n: int) -> int:
    """LUTs of an n-bit XNOR-popcount as hw.rtlsim.popcount_sv builds it: Yosys counts 1.6 to
    1.7 per bit from 32 to 256 bits (128 bits: 214)."""
    return (5 * n + 2) // 3


def fifo_block_ram36(depth: int, width: int) -> float:
    """RAMB36 equivalents of a channel FIFO (its block-RAM part, fifo_parts; 0 for LUT RAM)."""
    big, _ = fifo_parts(depth, width)
    return block_ram36(big, width, 0) if big else 0.0


def banks_of(node) -> int:
    """BANKS of a map-buffering node (2 where unset); 1 for every other node."""
    return int(node.attrs.get("BANKS", 2)) if node.op in BANKED_OPS else 1


def map_band(op: str, a: dict) -> int:
    """Rows of the map that a ShiftBranch / ShiftConv / TokenPool kernel buffers at a time
    (templates/rtl/map_tokens.sv.j2 handles the map band by band): k rows for k x k pooling,
    the whole map for the shift unit.  (Its sums along W could work on one row, but every
    shift branch meets the others at one join, so a shorter delay there only moves an image
    of buffering from the kernel into that join's FIFO, in wider words.)"""
    return a["k"] if op == "TokenPool" else a["H"]


def map_taps(op: str, a: dict) -> int:
    """Buffer reads per output word of a map kernel (templates/rtl/map_tokens.sv.j2): k x k for
    pooling, 2 reach + 1 for a box sum, 1 for a channel mix, the 9-tap cross for ShiftConv."""
    if op == "TokenPool":
        return a["k"] ** 2
    if op == "ShiftConv":
        return len(CROSS_TAPS)
    return 2 * a["reach"] + 1 if a["kind"] == "box" else 1


def _value_bits(v) -> int:
    """The smallest signed width that holds every value of v."""
    v = np.asarray(v, dtype=np.int64)
    m = int(max(v.max(initial=0), -v.min(initial=0) - 1))
    return max(m.bit_length() + 1, 2)


def _table_bits(v) -> int:
    """Bits of a constant table stored at the smallest signed width that holds its values."""
    return int(np.asarray(v).size * _value_bits(v))


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
        if "BANKS" in n.attrs and (n.op not in BANKED_OPS or int(n.attrs["BANKS"]) not in (1, 2)):
            bad.append(f"{n.name} ({n.op}): BANKS={n.attrs['BANKS']}; only the map buffers of "
                       f"{', '.join(BANKED_OPS)} take BANKS, 1 or 2")
    if bad:
        raise FoldingError("folding cannot be applied:\n  " + "\n  ".join(bad))


def node_cost(node, shapes, in_bits=None) -> dict:
    """Cycles per image and resources of one node; ``in_bits`` are its inputs' value bits
    (the output's when not given)."""
    a = node.attrs
    pe = int(a.get("PE", 1))
    simd = int(a.get("SIMD", 1))
    out = shapes[node.outputs[0]]
    ins = [shapes[i] for i in node.inputs]
    out_bits = dtype_bits(node.dtype)
    in_bits = list(in_bits) if in_bits else [out_bits] * len(node.inputs)
    banks = banks_of(node)
    # shapes are for a batch of one image (attention streams lead with windows)
    in_elems = max((_prod(s) for s in ins), default=0)
    out_elems = _prod(out)
    mem = 0
    shape = None        # (depth, width) of the kernel's largest memory (other than weights), where known
    weight_rom = None   # (depth, width) of a weight ROM: block RAM or LUTs by weight_rom_in_bram
    coef_rom = None     # (depth, width) of a ShiftConv coefficient ROM: block RAM or LUTs by coef_rom_in_bram
    lut_mem = None      # LUTs of the memories by their shape (lutram_luts), where known; else bits / 64
    luts = CONTROL_LUTS
    dsps = 0
    if node.op in ("MVAU", "XnorConv2d", "IntConv2d", "IntLinear"):
        dims = fold_dims(node, shapes)
        if node.op == "XnorConv2d":                               # no SIMD folding: all C/G * k * k terms
            dims["SIMD"] = _prod(node.params["w"].shape[1:])
            simd = dims["SIMD"]
        vectors = _prod(out[:-1])                                 # output tokens of one image
        cycles = vectors * (dims["SIMD"] // simd) * (dims["PE"] // pe)
        if node.op in ("XnorConv2d", "IntConv2d"):   # templates/rtl map_conv: one bank read while the other's
            taps = node.params["w"].shape[-1] ** 2    # output tokens gather their k*k taps (one RAM read each),
            read, emit = a["H"] * a["W"], vectors * (taps + (dims["SIMD"] // simd) * (dims["PE"] // pe))  # then fold
            cycles = max(read, emit)
        # integer weights at the width the RTL stores them (hw/rtlsim.py: the signed width they need)
        wbits = _value_bits(node.params["w"]) if node.op in ("IntConv2d", "IntLinear") else WEIGHT_BITS[node.op]
        weight_rom = ((dims["SIMD"] // simd) * (dims["PE"] // pe), simd * pe * wbits)    # one ROM word per step
        acc = out_bits
        if node.op in ("IntConv2d", "IntLinear"):
            dsps = pe * simd                                    # 8-bit weight products
            luts += pe * acc * 2
            if node.op == "IntConv2d":                          # image banks of 8-bit pixels
                mem = banks * a["H"] * a["W"] * ins[0][-1] * 8
                shape = (banks * a["H"] * a["W"], ins[0][-1] * 8)
        else:                                                   # XNOR-popcount tree + accumulator
            luts += pe * (popcount_luts(simd) + 2 * acc)
        if node.op == "MVAU" and dims["SIMD"] // simd > 1:      # the vector buffer's 2:1 choice
            luts += simd
        if node.op == "XnorConv2d":                             # image banks, a C-bit word per token
            mem = banks * a["H"] * a["W"] * ins[0][-1]
            shape = (banks * a["H"] * a["W"], ins[0][-1])
            if int(a.get("groups", 1)) > 1:                     # each lane picks its group's channels
                luts += pe * simd
            luts += 60                                          # tap addresses (row, column, padding)
    elif node.op == "QDAttention":
        windows, n, c = ins[0]
        m = ins[1][-2]
        # load the window's q, k, v (lock step), then per (query, head) scores, then level x V
        cycles = windows * (max(n, m) + a["heads"] * n * 2 * math.ceil(m / pe))
        mem = node.params["table"].size * 17 + (n + 2 * m) * c    # exp table + Q, K and V of one window
        # Q, K and V in LUT RAM, a head's channels picked from them, per key lane the popcount,
        # the levels and the context accumulators (fitted to Yosys: 1,167 / 843 LUTs for the
        # shipped stage-3 / stage-2 units against 1,302 / 858)
        dv = c // a["heads"]
        lut_mem = 3 * lutram_luts(max(n, m), c)
        luts += 3 * c // 2 + pe * (popcount_luts(dv) + dv * out_bits + 150)
    elif node.op == "IntLayerNorm":
        tokens, c = out[-2], out[-1]
        # statistics pass, 1 + (R+1) + (R+1) cycles of variance, bit-serial root and divider, normalise pass
        cycles = _prod(out[:-2]) * tokens * (2 * math.ceil(c / pe) + 2 * a["r_bits"] + 3)
        mem = c * (16 + out_bits) + c * out_bits                     # parameters + the buffered token
        dsps = 2 * pe
        luts += pe * 64 + 400                                       # isqrt + divider per token
    elif node.op in ("Affine", "RPReLU"):
        cycles = math.ceil(out_elems / pe)
        # per-channel multiplier and (per-row) bias tables at the widths the kernels store them; a
        # term whose multiplier is 1 on every channel (hw/passes.py's fused shift unit) is added as
        # is: no table, no product
        if node.op == "Affine":
            mults = [np.asarray(node.params[f"m{i}"]) for i in range(len(node.inputs))]
            mults = [m for m in mults if not np.all(m == 1)]
            dsps = pe * len(mults)
        else:
            mults = [np.asarray(node.params["m_pos"]), np.asarray(node.params["m_neg"])]
            dsps = pe
        c = out[-1]
        bias = np.asarray(node.params["bias"])
        tables = fixed_tables([varying_bits(m) for m in mults], varying_bits(bias), c, pe,
                              1 if bias.size in (1, c) else bias.size // c, table_bram(node))
        mem = sum(d * w for _, d, w, _ in tables)
        fixed_bram = sum(block_ram36(d, w, 0) for _, d, w, style in tables if style == "block")
        fixed_lut = sum(rom_luts(d, w) for _, d, w, style in tables if style == "logic")
        luts += pe * (out_bits + 8)
    elif node.op in ("Lut", "Thresholding"):
        cycles = math.ceil(out_elems / pe)
        mem = sum(_table_bits(v) for v in node.params.values())
        dsps = pe if node.op == "RPReLU" else 0
        luts += pe * (out_bits + 4)
    elif node.op in ("ShiftBranch", "ShiftConv", "TokenPool", "WindowReverse", "AttentionTokens", "PooledUpsample"):
        # data movement through two image banks (circular shifts, pooling and window reordering
        # need the whole map before the first output; ping-pong: one image written while the
        # previous one is read out)
        read, emit = math.ceil(in_elems / pe), math.ceil(out_elems / pe)
        if node.op in ("ShiftBranch", "ShiftConv", "TokenPool"):
            emit *= map_taps(node.op, a)       # templates/rtl map_tokens: each output word reads its taps
        cycles = max(read, emit)
        mem = banks * sum(_prod(s) * b for s, b in zip(ins, in_bits))
        if node.op in ("ShiftBranch", "ShiftConv", "TokenPool"):
            mem = mem * map_band(node.op, a) // a["H"]         # BANKS bands of rows
        shape = (mem // (pe * in_bits[0]), pe * in_bits[0])
        luts += pe * out_bits * 2
        if node.op == "ShiftConv":      # a multiply-accumulate per lane, coefficients per (channel, tap)
            coef_rom = shift_coef_rom(node.params["coef"], pe)
            dsps = pe
    else:   # RepeatChannels, GroupSumChannels, TokenSum
        cycles = math.ceil(max(in_elems, out_elems) / pe)
        luts += pe * out_bits
    if node.op in ("Affine", "RPReLU"):     # fixed_tables: each group in block RAM or LUTs by its size
        bram, lutram = fixed_bram, fixed_lut
        return dict(cycles=int(cycles), mem_bits=int(mem), bram36=bram, luts=int(luts + lutram), dsps=int(dsps))
    if shape is None:
        bram = math.ceil(mem / BRAM36_BITS) if mem >= LUTRAM_MAX_BITS else 0
    else:       # the largest memory packed in its aspect ratio, the rest by bits
        rest = mem - shape[0] * shape[1]
        bram = block_ram36(*shape) + (math.ceil(rest / BRAM36_BITS) if rest >= LUTRAM_MAX_BITS else 0)
    lutram = 0 if bram else (lut_mem if lut_mem is not None else math.ceil(mem / 64))
    for rom, in_bram in ((weight_rom, weight_rom_in_bram), (coef_rom, coef_rom_in_bram)):
        if rom is not None:
            if in_bram(*rom):
                bram += block_ram36(*rom, 0)
            else:
                lutram += rom_luts(*rom)
            mem += rom[0] * rom[1]
    out = dict(cycles=int(cycles), mem_bits=int(mem), bram36=bram, luts=int(luts + lutram), dsps=int(dsps))
    if node.op in BANKED_OPS and banks == 1:      # read and emit alternate: at the producer's pace (node_period)
        out.update(cycles=int(read + emit), read=int(read), emit=int(emit))
    return out


def graph_cost(graph: Graph, image_shape, clock_mhz: float = 100.0) -> dict:
    """Per-node cost rows plus the pipeline's totals and its bottleneck."""
    shapes = stream_shapes(graph, 1, image_shape)
    check_folding(graph, shapes)
    rows = []
    costs = [node_cost(n, shapes, [dtype_bits(graph.dtype_of(i)) for i in n.inputs]) for n in graph.nodes]
    own = {n.name: c["cycles"] for n, c in zip(graph.nodes, costs)}
    for n, c in zip(graph.nodes, costs):
        if "emit" in c:             # only a one-bank buffer's period depends on its neighbours
            c["cycles"] = node_period(c, *neighbour_cycles(graph, n, own))
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


def node_period(c: dict, producers: list, consumers: list) -> int:
    """Cycles per image of a node in the pipeline: its own (node_cost ``c``), or, for a map
    buffer with one bank, a read phase at the pace of its producers and then an emit phase at
    the pace of its consumers (their cycles per image: the ``producers`` / ``consumers`` lists)."""
    if "emit" in c:
        return int(max([c["read"], *producers]) + max([c["emit"], *consumers]))
    return int(c["cycles"])


def neighbour_cycles(graph: Graph, node, cycles: dict) -> tuple:
    """(producers', consumers') cycles per image of ``node``, from {node name: cycles}."""
    by_out = {n.outputs[0]: n.name for n in graph.nodes}
    prod = [cycles[by_out[t]] for t in node.inputs if t in by_out]
    cons = [cycles[n.name] for n in graph.nodes if node.outputs[0] in n.inputs]
    return prod, cons


def fold_for_target(graph: Graph, image_shape, target_cycles: int) -> None:
    """Smallest PE (then SIMD) per node that brings it to <= target cycles per image, where
    the sizes allow (sets the attributes in place); map buffers get two banks (BANKS = 2;
    flows.common.fold_for_board trades them for block RAM where a board needs it)."""
    shapes = stream_shapes(graph, 1, image_shape)
    for n in graph.nodes:
        if n.op in BANKED_OPS:
            n.attrs["BANKS"] = 2
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
