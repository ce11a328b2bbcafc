"""Brevitas export_qonnx of the hardware-exact network (hw.qonnx_export).

The exported file is executed by qonnx's execute_onnx: qonnx's numpy code for
Quant / BipolarQuant and ONNX Runtime for the standard ops, i.e. code nobody
here wrote, except the one IntLayerNorm custom op.  Its logits must equal the
golden executor's with np.array_equal.
"""
import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import qonnx_export as Q
from hw.fixedpoint import saturate


@pytest.fixture(scope="module")
def exported(shipped_net, shipped, tmp_path_factory):
    images = shipped[2].images[:8].numpy()
    path = tmp_path_factory.mktemp("qonnx") / "model_qonnx.onnx"
    model = Q.export(shipped_net, path, batch=4)
    return model, path, images, shipped_net.forward(images)


def test_qonnx_execution_equals_golden_logits(exported):
    model, _, images, gold = exported
    got = np.concatenate([Q.execute(model, images[i:i + 4]) for i in (0, 4)])
    assert got.dtype == np.int64
    assert np.array_equal(got, gold)


def test_exported_graph_is_brevitas_quantizers_and_standard_ops(exported, shipped_net):
    model, path, _, _ = exported
    ops = Q.op_histogram(model)
    g = shipped_net.graph
    n_thr = sum(n.op == "Thresholding" for n in g.nodes)
    n_bin = sum(n.op in ("MVAU", "XnorConv2d") for n in g.nodes)
    n_req = sum(n.op in ("Affine", "RPReLU") for n in g.nodes)
    n_ln = sum(n.op == "IntLayerNorm" for n in g.nodes)
    # one BipolarQuant per sign and per binary weight tensor; one Quant per requantiser and 8-bit weight
    assert ops.get("qonnx.custom_op.general::BipolarQuant") == n_thr + n_bin
    assert ops.get("qonnx.custom_op.general::Quant") == n_req + 2
    assert ops.get("hw.custom_op::IntLayerNorm") == n_ln
    others = {k for k in ops if "::" in k} - {"qonnx.custom_op.general::BipolarQuant",
                                              "qonnx.custom_op.general::Quant", "hw.custom_op::IntLayerNorm"}
    assert not others, others
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    assert {onnx.helper.get_attribute_value(a) for n in quants for a in n.attribute
            if a.name == "rounding_mode"} == {b"FLOOR"}
    assert all(float(model.get_initializer(n.input[1])) == 1.0 for n in quants)      # integer codes, scale 1
    assert path.exists()


def test_a_changed_threshold_is_caught(exported, tmp_path):
    """The comparison is sensitive: move one sign threshold and the logits differ."""
    model, _, images, gold = exported
    from qonnx.core.modelwrapper import ModelWrapper
    m = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    bq = [n for n in m.graph.node if n.op_type == "BipolarQuant" and m.get_initializer(n.input[0]) is None]
    sub = m.find_producer(bq[0].input[0])
    assert sub.op_type == "Sub"
    t = m.get_initializer(sub.input[1])
    m.set_initializer(sub.input[1], (np.asarray(t) + 40.0).astype(t.dtype))
    assert not np.array_equal(Q.execute(m, images[:4]), gold[:4])


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 20), shift=st.integers(0, 6), data=st.data())
def test_brevitas_floor_quantizer_is_round_half_up_with_saturation(bits, shift, data):
    """int_quant(bits)(acc * 2**-s + 1/2) == sat(floor(acc / 2**s + 1/2)): ties (odd multiples
    of 2**(s-1)) round up, out-of-range values saturate, as hw.fixedpoint defines."""
    span = 2 ** (bits + shift + 1)
    acc = np.array(data.draw(st.lists(st.integers(-span, span), min_size=1, max_size=50)), dtype=np.int64)
    if shift:
        acc = np.concatenate([acc, (2 * acc + 1) << (shift - 1)])          # exact ties
    q = Q.int_quant(bits).to(torch.float64).eval()
    with torch.no_grad():
        got = q(torch.as_tensor(acc, dtype=torch.float64) * 2.0 ** -shift + (0.5 if shift else 0.0)).numpy()
    want = saturate(np.floor(acc / 2.0 ** shift + 0.5).astype(np.int64), bits)
    assert np.array_equal(got, want.astype(np.float64))
