"""The vendor Tcl scripts of the HLS backend, and ways to check them without the vendor tools.

* :func:`render_vitis_hls_tcl`: the Vitis HLS script (C simulation, synthesis, co-simulation,
  IP export) from ``templates/tcl/vitis_hls.tcl.j2``;
* :func:`render_vivado_tcl`: the Vivado script that turns the exported IP into a PYNQ overlay
  (block design with the Zynq PS and an AXI DMA, bitstream, .hwh) for one :class:`Board`;
* :func:`tcl_syntax_ok`: asks ``tclsh`` whether a script parses;
* :func:`run_with_stub`: runs a script under ``tclsh`` with every unknown (vendor) command
  replaced by a recorder, so tests see which commands and arguments it issues.

Rendered values are quoted for Tcl (the ``tcl`` filter): paths with spaces or ``$ [ ] "`` stay
one word and are taken literally.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flows.boards import Board
from hw import templating
from hw.templating import tcl_word  # noqa: F401  (the tcl filter, used by the tests too)

ROOT = Path(__file__).resolve().parents[1]
HLS_STEPS = ("csim", "csynth", "cosim", "export")   # the order they run in
DMA_STREAM_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _num(x: float) -> str:
    return f"{x:g}"


def render_vitis_hls_tcl(*, project: str, top: str, sources, part: str, clock_period_ns: float, steps, ip: dict,
                         include_dirs=(), tb_sources=(), tb_data=(), tb_argv: str = "", cosim_argv: str | None = None,
                         solution: str = "solution1",
                         fifo_depth: int = 2, reset: bool | None = None) -> str:
    """The Vitis HLS script.

    ``steps``: any of ``csim csynth cosim export``; they always run in that order.  ``sources`` and
    ``tb_sources`` compile with ``-std=c++14`` and ``-I`` for each of ``include_dirs``;
    ``tb_data`` are files the testbench reads (added with ``add_files -tb``); ``tb_argv`` is the
    testbench's command line for csim and, unless ``cosim_argv`` is given (RTL co-simulation is
    orders of magnitude slower, so it usually gets fewer images), for cosim.  ``ip``: dict with vendor, library, name,
    version of the exported IP.  ``reset`` (default: unless cosim / export run without csynth,
    which need the previous synthesis) starts the project and solution afresh.
    """
    steps = list(steps)
    bad = [s for s in steps if s not in HLS_STEPS]
    if bad or not steps:
        raise ValueError(f"HLS steps must be among {', '.join(HLS_STEPS)}, got {steps}")
    if not sources:
        raise ValueError("no HLS sources")
    if ("csim" in steps or "cosim" in steps) and not tb_sources:
        raise ValueError("csim and cosim need tb_sources")
    missing = {"vendor", "library", "name", "version"} - set(ip)
    if missing:
        raise ValueError(f"ip lacks {', '.join(sorted(missing))}")
    if clock_period_ns <= 0:
        raise ValueError(f"clock period must be positive, got {clock_period_ns}")
    if reset is None:
        reset = "csynth" in steps or not ({"cosim", "export"} & set(steps))
    return templating.render(
        "tcl/vitis_hls.tcl.j2",
        project=project, top=top, sources=list(sources), include_dirs=list(include_dirs),
        tb_sources=list(tb_sources), tb_data=list(tb_data), tb_argv=tb_argv,
        cosim_argv=tb_argv if cosim_argv is None else cosim_argv, solution=solution,
        part=part, clock_period_ns=_num(clock_period_ns), fifo_depth=int(fifo_depth),
        steps=[s for s in HLS_STEPS if s in steps], ip=ip, reset=reset)


def render_vivado_tcl(board: Board, *, ip_repo, ip_vlnv: str, ip_name: str, design: str, in_bits: int,
                      out_bits: int, out_dir, jobs: int = 4, proj_dir=None, length_bits: int = 26,
                      in_port: str = "in_stream", out_port: str = "out_stream", control: str = "s_axi_control") -> str:
    """The Vivado script building ``<out_dir>/<design>.bit`` and ``.hwh`` for ``board``.

    ``ip_repo``: the folder holding the exported HLS IP; ``ip_vlnv`` / ``ip_name``: its VLNV and
    its cell name in the block design (PYNQ exposes it under that name, the DMA as
    ``axi_dma``).  ``in_bits`` / ``out_bits``: widths of its AXI-Stream input ``in_port`` and
    output ``out_port``; ``control``: its AXI-Lite interface.  ``length_bits``: width of the
    DMA's buffer-length register (26: up to 64 MiB per transfer).  The Vivado project goes to
    ``proj_dir`` (default ``<out_dir>/vivado``); ``jobs`` parallel runs.
    """
    for what, value in (("design", design), ("ip_name", ip_name)):
        if not _NAME.fullmatch(value):
            raise ValueError(f"{what} must be an identifier, got {value!r}")
    for what, bits in (("in_bits", in_bits), ("out_bits", out_bits)):
        if bits not in DMA_STREAM_WIDTHS:
            raise ValueError(f"{what}={bits}: the AXI DMA streams are {', '.join(map(str, DMA_STREAM_WIDTHS))} bits")
    if not 8 <= length_bits <= 26:
        raise ValueError(f"the DMA length register has 8 to 26 bits, got {length_bits}")
    out_dir = str(out_dir)
    return templating.render(
        "tcl/vivado_bd.tcl.j2",
        board=board, ps=board.ps_facts, ip_repo=str(ip_repo), ip_vlnv=ip_vlnv, ip_name=ip_name, design=design,
        in_bits=int(in_bits), out_bits=int(out_bits), out_dir=out_dir, jobs=int(jobs),
        proj_dir=str(proj_dir) if proj_dir is not None else f"{out_dir}/vivado", length_bits=int(length_bits),
        in_port=in_port, out_port=out_port, control=control, clock_mhz=_num(board.clock_mhz))


# ---------------------------------------------------------------------------------------------
# checks without the vendor tools

def _tclsh() -> str:
    exe = shutil.which("tclsh")
    if exe is None:
        raise FileNotFoundError("tclsh is not installed")
    return exe


# `info complete` says whether braces, brackets and quotes balance.  Then each top-level
# command is compiled, not run, by Tcl's own bytecode compiler (tcl::unsupported::disassemble,
# as the body of an anonymous proc so that loops compile too): a command that does not parse
# ("extra characters after close-brace", ...) compiles into a `syntax` instruction whose
# literal operand is the parser's message.  Literal bodies of if / foreach / while / dict for
# compile inline, so they are checked as well.
_CHECKER = r"""
proc syntax_error {cmd} {
    set lines [split [::tcl::unsupported::disassemble lambda [list {} $cmd]] \n]
    set i [lsearch -regexp $lines {^\s*\(\d+\) syntax }]
    if {$i < 0} { return "" }
    if {[regexp {# "(.*)"$} [lindex $lines [expr {$i - 2}]] -> msg]} { return $msg }
    return "syntax error"
}
set f [open [lindex $argv 0]]
set text [read $f]
close $f
if {![info complete $text]} {
    puts "unbalanced braces, brackets or quotes"
    exit 1
}
set cmd ""
set n 0
foreach line [split $text \n] {
    incr n
    if {$cmd eq ""} {
        set t [string trim $line]
        if {$t eq "" || [string index $t 0] eq "#"} continue
        set start $n
    }
    append cmd $line \n
    if {![info complete $cmd]} continue
    set msg [syntax_error $cmd]
    if {$msg ne ""} {
        puts "line $start: $msg"
        exit 1
    }
    set cmd ""
}
"""


def tcl_syntax_ok(text: str) -> tuple[bool, str]:
    """(True, "") when tclsh finds ``text`` complete and every command parses, else (False, why)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        script, checker = Path(tmp) / "script.tcl", Path(tmp) / "check.tcl"
        script.write_text(text)
        checker.write_text(_CHECKER)
        r = subprocess.run([_tclsh(), str(checker), str(script)], capture_output=True, text=True, timeout=30)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


# Every command tclsh does not know lands in `unknown`: it appends the command and its words to
# the log (one line per call, words separated by \x1f, backslash and newline escaped) and
# returns the value of the longest matching prefix in `returns`, else "".
_PRELUDE = r"""
set ::stub_log [open [lindex $argv 0] w]
fconfigure $::stub_log -encoding utf-8
set ::stub_returns [lindex $argv 1]
proc unknown {args} {
    set words {}
    foreach w $args { lappend words [string map [list \\ \\\\ \n \\n] $w] }
    puts $::stub_log [join $words \x1f]
    flush $::stub_log
    set call [join $args " "]
    set best ""
    set value ""
    dict for {prefix v} $::stub_returns {
        set match [expr {$call eq $prefix || [string first "$prefix " $call] == 0}]
        if {$match && [string length $prefix] > [string length $best]} {
            set best $prefix
            set value $v
        }
    }
    return $value
}
set argv {}
set argc 0
"""


@dataclass
class StubRun:
    """What a script did under :func:`run_with_stub`."""
    calls: list[tuple[str, ...]]    # each vendor command as (name, arg, arg, ...), in order
    stdout: str
    stderr: str
    returncode: int

    @property
    def commands(self) -> list[str]:
        return [c[0] for c in self.calls]

    def args_of(self, name: str) -> list[tuple[str, ...]]:
        """The arguments of every call to ``name``."""
        return [c[1:] for c in self.calls if c[0] == name]


def _unescape(word: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), word)


def run_with_stub(tcl_text: str, tmpdir, returns: dict[str, str] | None = None, timeout: float = 30) -> StubRun:
    """Run ``tcl_text`` under tclsh (working directory ``tmpdir``) with the vendor commands stubbed.

    ``returns`` maps a command prefix (``"get_board_parts"``, ``"get_property PROGRESS"``) to
    what the stub returns for calls starting with it; everything else returns "".  Plain Tcl
    (``set``, ``if``, ``file``, ``puts``, ``error``, ``exit``) runs for real.
    """
    tmp = Path(tmpdir)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "stub_prelude.tcl").write_text(_PRELUDE)
    (tmp / "script.tcl").write_text(tcl_text)
    (tmp / "stub_main.tcl").write_text("source stub_prelude.tcl\nsource script.tcl\n")
    log = tmp / "stub_calls.log"
    flat = []
    for k, v in (returns or {}).items():
        flat += [k, v]
    ret_dict = " ".join(tcl_word(x) if x else '""' for x in flat)
    r = subprocess.run([_tclsh(), "stub_main.tcl", str(log), ret_dict], cwd=tmp, capture_output=True, text=True,
                       timeout=timeout)
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    calls = [tuple(_unescape(w) for w in line.split("\x1f")) for line in lines]
    return StubRun(calls, r.stdout, r.stderr, r.returncode)
