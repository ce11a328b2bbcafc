"""The SystemVerilog backend's building blocks: a kernel's generated module, ROM words, plumbing.

The kernels are Jinja2 templates in ``templates/rtl/``, rendered per node with the node's
constants (weights, thresholds, tables) as ROMs: an op fills its template through
:func:`render`.  Every kernel has AXI-Stream valid/ready channels ``in<i>_t{data,valid,ready}``
and ``out_t{data,valid,ready}``, clock ``clk`` and active-low synchronous reset ``rst_n``, and
the HLS streams' word packing (element e of a word at bits [e*B, e*B+B), :func:`hw.hls.stream`).
The stitched top is :mod:`hw.rtl_top`; Verilator runs kernels in :mod:`hw.rtlsim`, Yosys counts
them in :mod:`hw.yosys`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import templating
from .hls import c_name, stream
from .resources import weight_rom_in_bram

LIBRARY = "rtl"        # templates/rtl


@dataclass
class RtlKernel:
    name: str            # the graph node's name
    module: str          # the SystemVerilog module (unique per node)
    source: str          # the generated SystemVerilog
    inputs: list         # stream() dicts, one per input channel
    out: dict            # stream() dict of the output channel
    rows_out_per_in: tuple = (1, 1)


def popcount_levels(n: int) -> int:
    """Adder levels of :func:`popcount_sv`'s tree over ``n`` bits (after the 6-bit counts)."""
    terms, levels = -(-n // 6), 0
    while terms > 1:
        terms, levels = -(-terms // 3), levels + 1
    return levels


def popcount_stages(n: int, cut: int) -> int:
    """Register stages :func:`popcount_sv` puts in its tree over ``n`` bits with ``cut`` > 0: one
    after the 6-bit counts and one after every ``cut`` adder levels but the last."""
    return 1 + max(0, popcount_levels(n) - 1) // cut if cut else 0


def popcount_sv(src: str, n: int, out: str, prefix: str = "pc", indent: str = "    ", en: str = "",
                cut: int = 0) -> str:
    """SystemVerilog for ``out`` = the number of ones in bits 0..n-1 of ``src``, as an adder
    tree that synthesis keeps: six bits at a time into a 3-bit count (a LUT6 per result bit),
    then three numbers per adder (a ternary adder on the carry chain), every node marked
    (* keep *).  Without those boundaries Yosys folds the whole sum into one multi-operand
    adder of full adders in LUTs: a 128-bit XNOR-popcount took 290 LUTs that way and 214 this
    way (synth_xilinx; 2.0-2.3 against 1.6-1.7 LUTs per bit from 32 to 256 bits; tests/
    test_rtl_sim.py checks the 128-bit case).  ``out`` takes the count truncated or zero-extended
    to its width; names begin with ``prefix``.  Templates call it as ``popcount``.

    With ``cut`` > 0 the tree is pipelined for timing: the 6-bit counts and every ``cut``-th
    adder level but the last are registered (on ``clk``, loaded while ``en``), so ``out`` comes
    :func:`popcount_stages` cycles after ``src``."""
    lines, terms = [], []

    def reg(name, wb, level):
        """The node ``name`` as the next level reads it: registered at the cuts."""
        if not cut or level == popcount_levels(n) - 1 >= 0 or (level >= 0 and (level + 1) % cut):
            return name
        lines.append(f"logic [{wb - 1}:0] {name}_q;")
        lines.append(f"always_ff @(posedge clk) if ({en}) {name}_q <= {name};")
        return f"{name}_q"

    for i in range(0, n, 6):
        m = min(6, n - i)
        wb = m.bit_length()
        name = f"{prefix}_c{i}"
        lines.append(f"(* keep *) logic [{wb - 1}:0] {name};")
        lines.append(f"assign {name} = " + " + ".join(f"{wb}'({src}[{j}])" for j in range(i, i + m)) + ";")
        terms.append((reg(name, wb, -1), m))
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 3):
            grp = terms[k:k + 3]
            if len(grp) == 1:          # carried to the next level: through its register too
                nxt.append((reg(grp[0][0], grp[0][1].bit_length(), level), grp[0][1]))
                continue
            mx = sum(t[1] for t in grp)
            wb = mx.bit_length()
            name = f"{prefix}_s{level}_{k}"
            lines.append(f"(* keep *) logic [{wb - 1}:0] {name};")
            lines.append(f"assign {name} = " + " + ".join(f"{wb}'({t[0]})" for t in grp) + ";")
            nxt.append((reg(name, wb, level), mx))
        terms, level = nxt, level + 1
    lines.append(f"assign {out} = $bits({out})'({terms[0][0]});")
    return "\n".join(indent + ln for ln in lines)


def signed_digits(k: int) -> list:
    """The canonical signed digits of k >= 0: [(sign, shift)] with k = sum sign * 2**shift and no
    two neighbouring digits non-zero (6 = 8 - 2, 5 = 4 + 1, 7 = 8 - 1)."""
    if k < 0:
        raise ValueError(f"signed_digits: negative constant {k}")
    digits, shift = [], 0
    while k:
        if k & 1:
            d = 2 - (k & 3)          # +1 where k = 1 mod 4, -1 where k = 3 mod 4
            digits.append((d, shift))
            k -= d
        k >>= 1
        shift += 1
    return digits


# A constant product of at most this many signed digits is shifts and adds in fabric (at most two
# adders in a row: within a 100 MHz stage); a longer one stays a product (a DSP48).
CONST_PRODUCT_DIGITS = 3


def const_product_in_fabric(k: int) -> bool:
    """Whether const_product_sv makes ``k * x`` of shifts and adds (no DSP48)."""
    return len(signed_digits(k)) <= CONST_PRODUCT_DIGITS


def const_product_sv(k: int, x: str, width: str) -> str:
    """SystemVerilog for ``width'(k) * width'(x)``, k a non-negative constant: as shifts and adds of
    x (signed_digits) where const_product_in_fabric, where Yosys would otherwise map the product to
    a DSP48 (the QD levels' 3 and 5, DEN 6); else the product."""
    if not const_product_in_fabric(k):
        return f"{width}'({k}) * {width}'({x})"
    terms = [(sign, f"({width}'({x}) << {shift})" if shift else f"{width}'({x})") for sign, shift in signed_digits(k)]
    if not terms:
        return f"{width}'(0)"
    terms.sort(key=lambda t: -t[0])              # a positive digit first: no leading minus
    out = terms[0][1] if terms[0][0] > 0 else f"-{terms[0][1]}"
    return out + "".join(f" {'+' if sign > 0 else '-'} {t}" for sign, t in terms[1:])


def render(template: str, /, **context) -> str:
    """``templates/rtl/<template>`` with ``context`` (and ``popcount``, :func:`popcount_sv`;
    ``const_product``, :func:`const_product_sv`)."""
    return templating.render(f"{LIBRARY}/{template}", popcount=popcount_sv, const_product=const_product_sv,
                             **context)


def module_name(prefix: str, name: str) -> str:
    """The SystemVerilog module of a node: ``<prefix>_<its C name>``."""
    return prefix + "_" + c_name(name)[len("node_"):]


def word_hex(vals, bits: int) -> str:
    """Values (element e at bits [e*bits, e*bits+bits)), two's complement, as hex."""
    w = 0
    mask = (1 << bits) - 1
    for e, v in enumerate(vals):
        w |= (int(v) & mask) << (e * bits)
    return format(w, "x")


def word_bits(s: dict) -> int:
    return s["elems"] * s["bits"]


def lanes_rom(v, pe: int, bits: int) -> list:
    """(C,) per-channel constants -> [(cf, hex word of PE lanes of ``bits`` bits)], channel c = cf * PE + p."""
    v = np.asarray(v, dtype=np.int64).reshape(-1)
    return [(f, word_hex(v[f * pe:(f + 1) * pe], bits)) for f in range(v.size // pe)]


def style_attr(in_bram: bool) -> str:
    """The synthesis attribute of a constant ROM: block RAM, or LUTs (Yosys' logic_block; Vivado
    picks a small ROM's memory itself)."""
    return '(* rom_style = "block" *)' if in_bram else "(* logic_block *)"


def weight_rom_attr(depth: int, width: int) -> str:
    """The synthesis attribute of a weight ROM, as hw.resources.weight_rom_in_bram decides."""
    return style_attr(weight_rom_in_bram(depth, width))


def wrapper_source(module: str, library: str, in_bits: int, out_bits: int, instance: str, n_out: int = 1,
                   body: str = "") -> str:
    """``library`` (templates/rtl/fifo.sv or stream.sv) plus a module ``module`` with the kernel
    ports (``in0_t*``, ``out_t*``; ``n_out`` > 1: one valid / ready bit per reader) around one
    ``instance`` of a parameterised plumbing module, connected by name (``body``: declarations
    before it)."""
    return render("wrapper.sv.j2", library=library, module=module, in_bits=in_bits, out_bits=out_bits,
                  instance=instance, n_out=n_out, body=body)


def fifo_rtl(name: str, s: dict, depth: int) -> RtlKernel:
    """``templates/rtl/fifo.sv`` (the stitched top's FIFO) of ``depth`` words of stream ``s``,
    as a kernel: a wrapper module fixes its parameters (its occupancy port stays internal)."""
    module = module_name("fifo", name)
    w = word_bits(s)
    src = wrapper_source(module, templating.read(f"{LIBRARY}/fifo.sv"), w, w,
                         f"bhvit_fifo #(.WIDTH({w}), .DEPTH({depth})) fifo",
                         body=f"""    /* verilator lint_off UNUSEDSIGNAL */
    logic [$clog2({depth} + 1)-1:0] count;
    /* verilator lint_on UNUSEDSIGNAL */
""")
    return RtlKernel(name, module, src, [dict(s)], dict(s))


def refold_rtl(name: str, c: int, ib: int, ob: int, signed: bool, in_pe: int, out_pe: int) -> RtlKernel:
    """``bhvit_refold`` alone, as a kernel (rows of ``c`` values), for tests and synthesis counts."""
    module = module_name("refold", name)
    src = wrapper_source(module, templating.read(f"{LIBRARY}/stream.sv"), in_pe * ib, out_pe * ob,
                         f"bhvit_refold #(.IB({ib}), .OB({ob}), .SIGNED(1'b{int(signed)}), .IN_PE({in_pe}), "
                         f".OUT_PE({out_pe})) g")
    return RtlKernel(name, module, src, [stream(c, in_pe, ib, signed)], stream(c, out_pe, ob, signed))


def fork_rtl(name: str, bits: int, n: int) -> RtlKernel:
    """``bhvit_fork`` of ``bits``-bit words to ``n`` readers alone, for synthesis counts (its
    output port is the ``n`` copies side by side with one valid / ready bit each, which the
    single-output simulation harness does not drive)."""
    module = module_name("fork", name)
    src = wrapper_source(module, templating.read(f"{LIBRARY}/stream.sv"), bits, n * bits,
                         f"bhvit_fork #(.WIDTH({bits}), .N({n})) g", n_out=n)
    return RtlKernel(name, module, src, [stream(1, 1, bits)], stream(n, n, bits))
