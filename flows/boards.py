"""The boards the flow can target, as data.

A :class:`Board` names the FPGA part, the Vivado board-files id (``board_part``), the kind of
Zynq processing system and the programmable-logic resources of its device; ``board.ps_facts``
gives the PS names the PYNQ block design needs (ports, pins, configuration properties), which
differ between the Zynq-7000 PS (``ps7``) and the Zynq UltraScale+ PS (``zynq_us``).

Resource counts are those of the device's product table: LUTs and flip-flops of the fabric,
block RAM in RAMB36 equivalents (one RAMB36 = two RAMB18), DSP slices and UltraRAM blocks
(none on 7-series).  Sources:
  * xc7z020: Zynq-7000 SoC data sheet, overview (DS190), Z-7020 column;
  * xczu3eg, xczu7ev: Zynq UltraScale+ MPSoC data sheet, overview (DS891), ZU3EG / ZU7EV columns;
  * xck26: Kria K26 SOM data sheet (DS987), programmable-logic table.

Board-file ids are those the vendors publish (TUL for PYNQ-Z2, Digilent for PYNQ-Z1, Avnet
for Ultra96-V2, AMD's board store for ZCU104 and KV260).  The Vivado script accepts any
installed file version of the same board when the exact one is missing.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BOARD = "pynq-z2"


class UnknownBoardError(ValueError):
    """A board name that is not in :data:`BOARDS`."""


@dataclass(frozen=True)
class PsFacts:
    """What the PYNQ block design needs to know about one kind of Zynq PS.

    ``ip`` is both the IP name in Vivado's catalog (vendor xilinx.com, library ip) and the name
    of its block-automation rule.  ``automation`` holds the rule's options besides
    ``apply_board_preset``; ``enable`` the PS properties that open the ports used here (GP
    master on, HP slave on, others off); ``freq_property`` the property setting the fabric
    clock in MHz.  ``dma_addr_width`` is the AXI DMA's address width: 32 bits cover all of
    the DDR the Zynq-7000 maps, the UltraScale+ HP port sees a 40-bit space (DDR above 4 GB).
    """
    kind: str
    ip: str
    automation: tuple[tuple[str, str], ...]
    enable: tuple[tuple[str, str], ...]
    freq_property: str
    gp_master: str      # PS AXI master for the AXI-Lite control of the DMA and the accelerator
    gp_clock: str       # its clock pin
    hp_slave: str       # PS high-performance slave the DMA reads and writes DDR through
    hp_clock: str       # its clock pin
    fclk: str           # fabric clock output
    fclk_resetn: str    # fabric reset output (active low)
    dma_addr_width: int


PS_FACTS = {
    "ps7": PsFacts(
        kind="ps7", ip="processing_system7",
        automation=(("make_external", "FIXED_IO, DDR"), ("Master", "Disable"), ("Slave", "Disable")),
        enable=(("CONFIG.PCW_USE_M_AXI_GP0", "1"), ("CONFIG.PCW_USE_S_AXI_HP0", "1"),
                ("CONFIG.PCW_EN_CLK0_PORT", "1"), ("CONFIG.PCW_EN_RST0_PORT", "1")),
        freq_property="CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ",
        gp_master="M_AXI_GP0", gp_clock="M_AXI_GP0_ACLK",
        hp_slave="S_AXI_HP0", hp_clock="S_AXI_HP0_ACLK",
        fclk="FCLK_CLK0", fclk_resetn="FCLK_RESET0_N", dma_addr_width=32),
    "zynq_us": PsFacts(
        kind="zynq_us", ip="zynq_ultra_ps_e",
        automation=(),
        # GP0 = M_AXI_HPM0_FPD, GP1 = M_AXI_HPM1_FPD, GP2 = M_AXI_HPM0_LPD; S_AXI_GP2 = S_AXI_HP0_FPD
        enable=(("CONFIG.PSU__USE__M_AXI_GP0", "1"), ("CONFIG.PSU__USE__M_AXI_GP1", "0"),
                ("CONFIG.PSU__USE__M_AXI_GP2", "0"), ("CONFIG.PSU__USE__S_AXI_GP2", "1"),
                ("CONFIG.PSU__FPGA_PL0_ENABLE", "1")),
        freq_property="CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
        gp_master="M_AXI_HPM0_FPD", gp_clock="maxihpm0_fpd_aclk",
        hp_slave="S_AXI_HP0_FPD", hp_clock="saxihp0_fpd_aclk",
        fclk="pl_clk0", fclk_resetn="pl_resetn0", dma_addr_width=64),
}


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    board_part: str
    ps: str             # "ps7" (Zynq-7000) or "zynq_us" (Zynq UltraScale+)
    family: str         # "zynq" or "zynquplus"
    clock_mhz: float
    luts: int
    ffs: int
    bram36: int
    dsps: int
    uram: int = 0

    @property
    def ps_facts(self) -> PsFacts:
        return PS_FACTS[self.ps]

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.clock_mhz

    @property
    def resources(self) -> dict[str, int]:
        return {"luts": self.luts, "ffs": self.ffs, "bram36": self.bram36, "dsps": self.dsps, "uram": self.uram}


_Z7020 = dict(part="xc7z020clg400-1", ps="ps7", family="zynq", clock_mhz=100.0,
              luts=53_200, ffs=106_400, bram36=140, dsps=220, uram=0)

BOARDS: dict[str, Board] = {b.name: b for b in (
    Board(name="pynq-z2", board_part="tul.com.tw:pynq-z2:part0:1.0", **_Z7020),
    Board(name="pynq-z1", board_part="www.digilentinc.com:pynq-z1:part0:1.0", **_Z7020),
    # The Ultra96-V2 carries the industrial grade: Avnet's board files (1.2) name -1-i.
    Board(name="ultra96-v2", part="xczu3eg-sbva484-1-i", board_part="avnet.com:ultra96v2:part0:1.2",
          ps="zynq_us", family="zynquplus", clock_mhz=100.0,
          luts=70_560, ffs=141_120, bram36=216, dsps=360, uram=0),
    Board(name="zcu104", part="xczu7ev-ffvc1156-2-e", board_part="xilinx.com:zcu104:part0:1.1",
          ps="zynq_us", family="zynquplus", clock_mhz=100.0,
          luts=230_400, ffs=460_800, bram36=312, dsps=1_728, uram=96),
    Board(name="kv260", part="xck26-sfvc784-2LV-c", board_part="xilinx.com:kv260_som:part0:1.3",
          ps="zynq_us", family="zynquplus", clock_mhz=100.0,
          luts=117_120, ffs=234_240, bram36=144, dsps=1_248, uram=64),
)}


def get_board(name: str | None = None) -> Board:
    """The board called ``name`` (case and ``_`` / ``-`` do not matter); the default board if None."""
    if name is None:
        return BOARDS[DEFAULT_BOARD]
    key = name.strip().lower().replace("_", "-")
    try:
        return BOARDS[key]
    except KeyError:
        raise UnknownBoardError(f"unknown board {name!r}: known boards are {', '.join(BOARDS)}") from None
