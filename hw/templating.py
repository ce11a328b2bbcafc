"""The one Jinja2 environment that renders every generated source of the project.

Every generated file comes from a template under ``templates/``: the HLS C++ of each node and
the dataflow top (``templates/hls/``), the SystemVerilog kernels, the stitched top and the
Verilator harness (``templates/rtl/``), the AXI wrapper of the RTL IP (``templates/rtl_ip/``)
and the vendor Tcl scripts (``templates/tcl/``).  Templates are named by their path below
``templates/`` (``render("rtl/fixed.sv.j2", ...)``).  Undefined variables are errors, so a
template and the code that fills it cannot drift apart silently.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"

_PLAIN_TCL = re.compile(r"[A-Za-z0-9_.,:/+=@%-]+")


def tcl_word(value) -> str:
    """``value`` as one literal Tcl word (the ``tcl`` filter): as is when plain, else
    double-quoted with ``\\ $ [ ] "`` escaped, so paths with spaces stay one word."""
    s = str(value)
    if _PLAIN_TCL.fullmatch(s):
        return s
    return '"' + re.sub(r'([\\$\[\]"])', r"\\\1", s) + '"'


@lru_cache(maxsize=1)
def environment():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["tcl"] = tcl_word
    return env


def render(template: str, /, **context) -> str:
    """Render ``templates/<template>`` with ``context``."""
    return environment().get_template(template).render(**context)


def read(name: str) -> str:
    """A template-library file used as is (``rtl/fifo.sv``, the HLS headers)."""
    return (TEMPLATES / name).read_text()
