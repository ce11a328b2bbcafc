"""Resource primitives of the cost model: what a memory, a ROM, a FIFO or a popcount takes.

Every op's :meth:`hw.ops.HwOp.cost` builds its estimate from these; :mod:`hw.cost` sums the
ops and the top's FIFOs.  The constants were fitted to Yosys' ``synth_xilinx`` counts of the
generated SystemVerilog (each says against what); ``make sim`` reports both side by side.
"""
from __future__ import annotations

import math

import numpy as np

BRAM36_BITS = 36 * 1024
LUTRAM_MAX_BITS = 16 * 1024      # smaller memories go to LUTRAM (64 bits per LUT)
CONTROL_LUTS = 40                # stream handshakes and counters of one kernel

# 7-series block RAM aspect ratios (depth, width): RAMB18 and RAMB36
RAMB18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
RAMB36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))

ROM_BRAM_FILL = 0.4      # weight_rom_in_bram: the least share of its block RAM a weight ROM fills there

FIFO_LUTRAM_DEPTH = 128     # templates/rtl/fifo.sv: FIFOs up to this depth, or up to FIFO_LUTRAM_BITS, are LUT RAM
# A LUT-RAM FIFO costs more than its bits / 64 (Yosys, 10-bit words: 1,538 deep 601 slice LUTs, 1,282
# deep 507, with the read multiplexer and pointers) where block RAM takes one RAMB36 or RAMB18 and
# about 60 LUTs: from 8 kbit on, a FIFO goes to block RAM (templates/rtl/fifo.sv's LUTRAM_BITS).
FIFO_LUTRAM_BITS = 8 * 1024


def block_ram36(depth: int, width: int, lutram_max_bits: int = LUTRAM_MAX_BITS) -> float:
    """RAMB36 equivalents of a depth x width memory in its cheapest aspect ratio (a RAMB18
    counts one half); 0 for memories below ``lutram_max_bits``, which go to LUTRAM.  (Yosys
    sometimes packs a ROM tighter, two words of a port's width side by side; not counted.)"""
    if depth * width < lutram_max_bits:
        return 0.0
    n18 = min(-(-depth // d) * -(-width // w) for d, w in RAMB18_SHAPES) / 2
    n36 = min(-(-depth // d) * -(-width // w) for d, w in RAMB36_SHAPES)
    return float(min(n18, n36))


def weight_rom_in_bram(depth: int, width: int) -> bool:
    """A weight ROM (MVAU, binary / integer convolution, IntLinear) of LUTRAM_MAX_BITS or more
    that fills at least ROM_BRAM_FILL of the block RAM it takes is block RAM (templates/rtl:
    rom_style "block"), any other LUTs ("logic_block").  A wide, shallow ROM wastes most of its
    block RAM (128 x 128 bits: 4 RAMB18 for about 260 LUTs), which holds Affine / RPReLU
    tables better (300-450 LUTs per block RAM)."""
    bits = depth * width
    return bits >= LUTRAM_MAX_BITS and bits >= ROM_BRAM_FILL * block_ram36(depth, width, 0) * BRAM36_BITS


def value_bits(v) -> int:
    """The smallest signed width that holds every value of v (at least 2)."""
    v = np.asarray(v, dtype=np.int64)
    m = int(max(v.max(initial=0), -v.min(initial=0) - 1))
    return max(m.bit_length() + 1, 2)


def table_bits(v) -> int:
    """Bits of a constant table stored at the smallest signed width that holds its values."""
    return int(np.asarray(v).size * value_bits(v))


def varying_bits(v) -> int:
    """The bit columns of a constant table (its values at the smallest signed width, value_bits)
    that are not the same in every word: synthesis keeps only those (Yosys: a 256-channel Affine
    with m0 (16 bits, always positive), m1 (2^14 on every channel) and a 21-bit bias has 53-bit
    words of which 36 vary, and took half a RAMB36, not the whole one 53 bits need)."""
    v = np.asarray(v, dtype=np.int64).reshape(-1)
    if v.size == 0:
        return 0
    mask = (1 << value_bits(v)) - 1
    return bin(int(np.bitwise_or.reduce((v ^ v[0]) & mask))).count("1")


def counter_bits(n: int) -> int:
    """Counter bits for values 0 .. n-1 (at least 1); the RTL kernels size their counters by it."""
    return max(1, (n - 1).bit_length())


def lutram_luts(depth: int, width: int) -> int:
    """LUTs of a depth x width simple dual-port LUT RAM as Yosys maps it: RAM32M (32 words x 6
    bits) up to 32 words, RAM64M (64 x 3) beyond, four LUTs each.  A shallow memory costs by its
    width (a two-word 64-bit FIFO: 11 RAM32M), not by its bits."""
    if depth <= 0 or width <= 0:
        return 0
    cells = -(-width // 6) * -(-depth // 32) if depth <= 32 else -(-width // 3) * -(-depth // 64)
    return 4 * cells


def rom_luts(depth: int, width: int) -> int:
    """LUTs of a constant ROM in logic: a LUT6 per bit and 64 words (MUXF7 / MUXF8 join them),
    so a shallow ROM costs by its width."""
    return width * -(-depth // 64) if depth > 0 else 0


def popcount_luts(n: int) -> int:
    """LUTs of an n-bit XNOR-popcount as hw.rtl.popcount_sv builds it: Yosys counts 1.6 to
    1.7 per bit from 32 to 256 bits (128 bits: 214)."""
    return (5 * n + 2) // 3


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


def fifo_block_ram36(depth: int, width: int) -> float:
    """RAMB36 equivalents of a channel FIFO (its block-RAM part, fifo_parts; 0 for LUT RAM)."""
    big, _ = fifo_parts(depth, width)
    return block_ram36(big, width, 0) if big else 0.0


def memory_cost(mem: int, shape=None, lut_mem=None, roms=()) -> tuple:
    """(RAMB36, LUTs, bits) of a kernel's memories: ``mem`` bits of buffers and tables, of which
    the largest is ``shape`` (depth, width; packed in its aspect ratio, the rest by bits), in block
    RAM from LUTRAM_MAX_BITS on; otherwise LUT RAM costed by ``lut_mem`` (LUTs by shape, where
    known) or 64 bits per LUT.  ``roms``: [((depth, width), in_block_ram)] constant ROMs on top
    (weights, coefficients), each in block RAM or as LUT ROM (rom_luts)."""
    if shape is None:
        bram = math.ceil(mem / BRAM36_BITS) if mem >= LUTRAM_MAX_BITS else 0
    else:
        rest = mem - shape[0] * shape[1]
        bram = block_ram36(*shape) + (math.ceil(rest / BRAM36_BITS) if rest >= LUTRAM_MAX_BITS else 0)
    luts = 0 if bram else (lut_mem if lut_mem is not None else math.ceil(mem / 64))
    for rom, in_bram in roms:
        if in_bram:
            bram += block_ram36(*rom, 0)
        else:
            luts += rom_luts(*rom)
        mem += rom[0] * rom[1]
    return bram, luts, mem
