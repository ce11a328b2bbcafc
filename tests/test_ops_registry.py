"""The op registry (hw/ops/): every op implements every hook, is found by its type, takes part
in ONNX and the passes as its class says, and has its tests in tests/ops/."""
from pathlib import Path

import numpy as np
import pytest

from hw.graph import DOMAIN, FINN_DOMAIN, Node
from hw.ops import HOOKS, REGISTRY, HwOp, UnsupportedOpError, op_class, op_of, op_types

OPS_TESTS = Path(__file__).resolve().parent / "ops"


@pytest.mark.parametrize("op_type", sorted(REGISTRY))
def test_every_op_implements_every_hook(op_type):
    cls = op_class(op_type)
    assert cls.op_type == op_type and issubclass(cls, HwOp)
    missing = [h for h in HOOKS if getattr(cls, h) is getattr(HwOp, h)]
    assert not missing, f"{op_type} lacks {missing}"
    assert cls.domain in (DOMAIN, FINN_DOMAIN)
    assert cls.__doc__ or cls.__module__ and __import__(cls.__module__, fromlist=["x"]).__doc__
    assert all(t in ("i", "ints", "s") for t in cls.attr_types.values()), cls.attr_types


@pytest.mark.parametrize("op_type", sorted(REGISTRY))
def test_every_op_has_its_tests_at_every_level(op_type):
    """Some module of tests/ops/ builds cases of the op and runs them through every level."""
    texts = {p.name: p.read_text() for p in OPS_TESTS.glob("test_*.py")}
    mine = [name for name, t in texts.items() if f'"{op_type}"' in t]
    assert mine, f"no test module of tests/ops/ has a case of {op_type}"
    levels = ("check_golden", "check_torch", "check_onnx", "check_csim", "check_rtl")
    assert any(all(lv in texts[name] for lv in levels) for name in mine), (op_type, mine)


def test_the_shipped_graph_has_only_registered_ops(shipped_net, shipped_pynq_graph):
    from hw.passes import passes
    for g in (shipped_net.graph, shipped_pynq_graph):
        assert {type(op_of(n)).__name__ for n in g.nodes} == {n.op for n in g.nodes}
    assert {n.op for n in shipped_pynq_graph.nodes} < set(op_types())        # ShiftBranch is lowered away
    assert [t for t, _ in passes()] == ["ShiftConv", "Affine"]       # fusion, then streamlining


def test_custom_ops_are_made_from_the_registry():
    from hw import custom_op
    ours = {t for t, cls in REGISTRY.items() if cls.domain == DOMAIN}
    assert set(custom_op.custom_op) == ours and {"Thresholding", "MVAU"}.isdisjoint(ours)
    from onnx import helper
    for t in ours:
        inst = custom_op.custom_op[t](helper.make_node(t, ["x"], ["y"], domain=DOMAIN))
        assert set(REGISTRY[t].attr_types) <= set(inst.get_nodeattr_types())


def test_an_unknown_op_is_named_with_the_known_ones():
    with pytest.raises(UnsupportedOpError, match=r"no hardware op 'Softmax'; known: Affine, .*XnorConv2d"):
        op_of(Node("Softmax", "sm", ["x"], ["y"]))


def test_traits_are_what_the_top_relies_on():
    """The dataflow top's FIFO model and the RTL top's direct links read these traits (the ops
    of the shipped model; an op added later sets its own)."""
    banked = {t for t, cls in REGISTRY.items() if cls.banked}
    assert banked >= {"ShiftBranch", "ShiftConv", "TokenPool", "XnorConv2d", "IntConv2d", "AttentionTokens",
                      "WindowReverse", "PooledUpsample"}
    assert not banked & {"MVAU", "Thresholding", "Affine", "RPReLU", "QDAttention", "IntLayerNorm", "TokenSum"}
    registered = {t for t, cls in REGISTRY.items() if cls.ready_registered}
    assert registered >= banked | {"RepeatChannels", "IntLayerNorm"}          # every map buffer's ready is a register
    assert not registered & {"MVAU", "Thresholding", "Affine", "RPReLU", "QDAttention", "IntLinear"}
    assert {t for t, cls in REGISTRY.items() if cls.burst_output} >= {"XnorConv2d", "IntConv2d"}
    assert {t for t, cls in REGISTRY.items() if cls.table_placement} >= {"Affine", "RPReLU"}
    assert {t: REGISTRY[t].weight_bits for t in ("MVAU", "XnorConv2d", "IntConv2d", "IntLinear", "Affine")} == \
        dict(MVAU=1, XnorConv2d=1, IntConv2d=8, IntLinear=8, Affine=None)
    pool = Node("TokenPool", "p", ["x"], ["y"], dict(H=8, W=8, k=2, mode="sum"), {}, "INT12")
    assert op_of(pool).delay() == (0, 2)              # a band of k rows, not the whole map
    whole = Node("TokenPool", "p", ["x"], ["y"], dict(H=2, W=2, k=2, mode="sum"), {}, "INT12")
    assert op_of(whole).delay() == (1, 0)
    mv = Node("MVAU", "m", ["x"], ["y"], dict(MW=64, MH=8, SIMD=32, PE=1), dict(weights=np.ones((64, 8))), "UINT7")
    assert op_of(mv).delay() == (0, 1) and op_of(mv).reads_in_bursts()
    mv.attrs["SIMD"] = 64
    assert not op_of(mv).reads_in_bursts()
