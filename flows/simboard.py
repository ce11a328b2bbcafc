"""A simulated PYNQ board: the Verilator model of the design behind PYNQ's driver API.

The deploy bundle's driver (templates/driver/bhvit_driver) talks to ``pynq.Overlay``,
``pynq.allocate``, the AXI DMA's two channels and the accelerator's control registers.
:class:`SimBoard` offers the same objects (``board.Overlay``, ``board.allocate``: pass the board
as the driver's ``platform``), so the driver runs unchanged, end to end:

* ``allocate`` gives numpy arrays with PYNQ's buffer methods (``flush``, ``invalidate``,
  ``physical_address``, ``freebuffer``);
* the accelerator IP has the Vitis HLS control map of ``bhvit_top`` (0x00 ap_ctrl: bit 0
  ap_start, bit 1 ap_done, bit 2 ap_idle; 0x10 ``images``);
* when ap_start is set with both DMA channels armed, the MM2S buffer's 64-bit beats go through
  the DMA-side adapter of the real top (``bhvit::axis_to_stream``: 64 / in_bits pixels per
  beat, each image starting on a fresh beat) into the stitched RTL top (hw/rtl_top.py) in
  Verilator (hw/rtlsim.py, the same cached build as ``make sim``), and its logits come back
  as the S2MM beats ``bhvit::stream_to_axis`` writes (one value per out_axis_bits-bit beat,
  sign-extended, TLAST on the batch's last beat);
* what would hang the real board hangs here too (a channel that never becomes idle: too few
  or too many input beats, a deadlocked design), so the driver's timeouts are exercised; an
  S2MM buffer shorter than the output is a DMA error, as on the board.

The conversion here is written from the hardware's side (hw/hls_top.py's design: in_bits,
in_values, out_bits) and does not use the driver's packing code, so a packing bug in the
driver shows up as a mismatch.

    python -m flows.simboard --bundle build/bhvit_pynq_fmnist/deploy_pynq-z2 -- validate --json r.json

runs the bundle's driver CLI on the simulated board (the design is rebuilt from the checkpoint
and the bundle's folding.json; exit codes those of the driver, 2 for bad input here).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

AP_CTRL, IMAGES = 0x00, 0x10          # Vitis HLS s_axilite map of bhvit_top (bundle control=...)
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4


class SimBuffer(np.ndarray):
    """A numpy array with the methods of PYNQ's contiguous buffers."""
    _next_address = 0x1000_0000

    def __array_finalize__(self, obj):
        self.physical_address = getattr(obj, "physical_address", 0)

    @property
    def device_address(self):
        return self.physical_address

    coherent = False

    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        pass

    close = freebuffer


def allocate(shape, dtype=np.uint32, **_kw) -> SimBuffer:
    buf = np.zeros(shape, dtype=dtype).view(SimBuffer)
    buf.physical_address = SimBuffer._next_address
    SimBuffer._next_address += (buf.nbytes + 4095) // 4096 * 4096
    return buf


class DmaError(RuntimeError):
    """What PYNQ's DMA channel raises from wait() when the channel reports an error."""


class _Channel:
    def __init__(self, name):
        self.name = name
        self.buffer = None
        self.nbytes = 0
        self.done = True
        self.error = None

    def transfer(self, array, start=0, nbytes=0):
        if not self.done and self.buffer is not None:
            raise RuntimeError(f"DMA {self.name} channel is already running")
        if not isinstance(array, np.ndarray) or not array.flags["C_CONTIGUOUS"]:
            raise ValueError(f"DMA {self.name}: the buffer must come from allocate()")
        self.buffer, self.start, self.nbytes = array, start, nbytes or array.nbytes - start
        self.done, self.error = False, None

    @property
    def idle(self):
        return self.done

    @property
    def running(self):
        return not self.done

    def wait(self):
        if self.error:
            raise DmaError(f"DMA {self.name}: {self.error}")
        if not self.done:
            raise RuntimeError(f"DMA {self.name}: wait() would block for ever (the transfer cannot finish)")


class _Dma:
    def __init__(self):
        self.sendchannel = _Channel("MM2S (send)")
        self.recvchannel = _Channel("S2MM (receive)")


class _Ip:
    def __init__(self, board):
        self.board = board
        self.regs = {AP_CTRL: AP_IDLE, IMAGES: 0}

    def write(self, offset, value):
        if offset == AP_CTRL:
            if value & AP_START:
                self.regs[AP_CTRL] = AP_START
                self.board._start()
        elif offset in self.regs:
            self.regs[offset] = int(value) & 0xFFFF_FFFF
        else:
            raise ValueError(f"no register at offset {offset:#x} of the accelerator (ap_ctrl 0x00, images 0x10)")

    def read(self, offset):
        v = self.regs.get(offset, 0)
        if offset == AP_CTRL:
            self.regs[AP_CTRL] &= ~AP_DONE          # ap_done clears on read
        return v


class SimOverlay:
    def __init__(self, board, bitfile):
        self.bitfile = str(bitfile)
        setattr(self, board.ip_name, board.ip)
        setattr(self, board.dma_name, board.dma)
        self.ip_dict = {board.ip_name: {}, board.dma_name: {}}


class SimBoard:
    """``SimBoard(top, design, clock_mhz=100.0, seed=0, p_gap=0.0, p_stall=0.0, idle=200_000)``.

    ``top``: the RTL top (hw.rtl_top.rtl_top), ``design``: its hw.rtl_top.rtl_design (the DMA
    side's widths).  ``p_gap`` / ``p_stall``: random input gaps and output back-pressure of the
    simulation.  Every accelerator run is appended to ``runs`` (images, cycles, latency, cycles
    per image, simulated images/s)."""
    simulated = True

    def __init__(self, top, design, clock_mhz: float = 100.0, seed: int = 0, p_gap: float = 0.0,
                 p_stall: float = 0.0, idle: int = 200_000, ip_name: str = "bhvit_top", dma_name: str = "axi_dma"):
        from hw.hls_top import IN_AXIS_BITS
        self.top, self.d = top, design
        self.in_axis_bits = IN_AXIS_BITS
        self.clock_mhz, self.seed, self.p_gap, self.p_stall, self.idle = clock_mhz, seed, p_gap, p_stall, idle
        self.ip_name, self.dma_name = ip_name, dma_name
        self.ip, self.dma = _Ip(self), _Dma()
        self.runs = []
        self.bitfiles = []

    @classmethod
    def from_graph(cls, graph, image_shape, model: str, **kw):
        """The board of a folded graph (builds, or finds cached, the Verilator model)."""
        from hw import rtl_top
        from flows.sim import idle_limit
        d = rtl_top.rtl_design(graph, image_shape, model)
        kw.setdefault("idle", idle_limit(graph, image_shape))
        return cls(rtl_top.rtl_top(graph, image_shape, model, d=d), d, **kw)

    # the pynq module's names
    def Overlay(self, bitfile, download=True):        # noqa: N802  (PYNQ's spelling)
        self.bitfiles.append(str(bitfile))
        return SimOverlay(self, bitfile)

    allocate = staticmethod(allocate)

    # ---------------------------------------------------------------- the DMA-side adapter
    def beats_to_rows(self, raw: bytes, images: int) -> np.ndarray:
        """MM2S bytes -> the RTL top's input rows, as ``bhvit::axis_to_stream`` reads them."""
        d, axw = self.d, self.in_axis_bits
        per_beat = axw // d.in_bits
        beats = -(-d.in_values // per_beat)
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
        lanes = bits.reshape(images, beats * per_beat, d.in_bits)[:, :d.in_values].astype(np.int64)
        vals = (lanes << np.arange(d.in_bits, dtype=np.int64)).sum(-1)
        if d.in_fmt["signed"]:
            vals = np.where(vals >= 1 << (d.in_bits - 1), vals - (1 << d.in_bits), vals)
        return vals.reshape(-1, d.in_fmt["width"])

    def logits_to_beats(self, logits: np.ndarray) -> bytes:
        """Output values -> S2MM bytes, as ``bhvit::stream_to_axis`` writes them."""
        d = self.d
        v = np.asarray(logits, dtype=np.int64).reshape(-1)
        if not d.out_signed:
            v = v & ((1 << d.out_bits) - 1)
        mask = (1 << d.out_axis_bits) - 1
        return b"".join(int(x & mask).to_bytes(d.out_axis_bits // 8, "little") for x in v)

    def _start(self):
        from hw import rtlsim
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        if send.buffer is None or recv.buffer is None or send.done or recv.done:
            # the real top waits for its input: nothing moves until the DMA sends
            raise RuntimeError("simulated board: arm both DMA channels (transfer) before ap_start; "
                               "the driver does so")
        n = self.ip.regs[IMAGES]
        d = self.d
        beats_per_image = -(-d.in_values // (self.in_axis_bits // d.in_bits))
        beat_bytes = self.in_axis_bits // 8
        sent = send.nbytes // beat_bytes
        need = n * beats_per_image
        if n == 0 or sent != need or send.nbytes % beat_bytes:
            # too few beats: the top waits for the rest for ever; too many: the DMA's stream
            # stalls with beats left.  Either way neither channel becomes idle.
            self.runs.append(dict(images=n, hang=f"{send.nbytes} bytes sent, {n} images need {need} beats of "
                                                 f"{beat_bytes} bytes"))
            return
        raw = send.buffer.view(np.uint8).reshape(-1)[send.start:send.start + send.nbytes].tobytes()
        rows = self.beats_to_rows(raw, n)
        try:
            res = rtlsim.simulate(self.top, rows, seed=self.seed, p_gap=self.p_gap, p_stall=self.p_stall,
                                  idle=self.idle)
        except rtlsim.RtlSimError as exc:          # a deadlocked design: the board hangs
            self.runs.append(dict(images=n, hang=str(exc)))
            send.done = True
            return
        send.done = True
        out = self.logits_to_beats(res.out)
        dst = recv.buffer.view(np.uint8).reshape(-1)
        if len(out) > recv.nbytes:
            recv.error = (f"the stream brought {len(out)} bytes before TLAST, the buffer holds {recv.nbytes} "
                          "(S2MM length too short)")
        else:
            dst[recv.start:recv.start + len(out)] = np.frombuffer(out, dtype=np.uint8)
            recv.done = True
        self.ip.regs[AP_CTRL] = AP_DONE | AP_IDLE
        per_image = res.out_cycles.size // n
        ends = res.out_cycles[per_image - 1::per_image]
        period = float(np.diff(ends).mean()) if n > 1 else float("nan")
        self.runs.append(dict(images=n, cycles=int(res.cycles), latency_cycles=int(ends[0] - res.in_cycles[0][0]),
                              cycles_per_image=period, images_per_s=self.clock_mhz * 1e6 / period if n > 1 else None))


# ---------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    from flows.common import flow_parser, prepare_or_exit
    argv = list(sys.argv[1:] if argv is None else argv)
    driver_argv = argv[argv.index("--") + 1:] if "--" in argv else ["validate"]
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = flow_parser("flows.simboard", __doc__, 0, "unused")
    p.add_argument("--bundle", required=True, help="the deploy bundle (make bitstream), e.g. build/<model>/deploy_<board>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--p-gap", type=float, default=0.0, help="probability of an input gap per cycle in the simulation")
    p.add_argument("--p-stall", type=float, default=0.0, help="probability of output back-pressure per cycle")
    a = p.parse_args(own)
    bundle = Path(a.bundle)
    if not (bundle / "bhvit_driver" / "params.json").exists():
        print(f"error: {bundle} is not a deploy bundle (no bhvit_driver/params.json): run make bitstream "
              "(BITSTREAM_ARGS=--bundle-only where Vivado is missing)", file=sys.stderr)
        return 2
    if a.folding is None and (bundle / "folding.json").exists():
        a.folding = str(bundle / "folding.json")
    from flows.sim import idle_limit
    from hw import rtl_top
    pr = prepare_or_exit(a, "sim", rtl_top.rtl_design)
    if pr is None:
        return 2
    board = SimBoard(rtl_top.rtl_top(pr.graph, pr.image_shape, pr.inp.name, d=pr.design), pr.design,
                     clock_mhz=pr.board.clock_mhz, seed=a.seed, p_gap=a.p_gap, p_stall=a.p_stall,
                     idle=idle_limit(pr.graph, pr.image_shape))
    sys.path.insert(0, str(bundle.resolve()))
    import bhvit_driver.__main__ as drv
    code = drv.main(driver_argv, platform=board)
    for r in board.runs:
        if "cycles" in r and r["images"] > 1:
            print(f"[simboard] {r['images']} images: {r['cycles_per_image']:,.0f} cycles/image in Verilator -> "
                  f"{r['images_per_s']:,.0f} images/s at {board.clock_mhz:.0f} MHz (simulated, not measured on a board)")
    return code


if __name__ == "__main__":
    sys.exit(main())
