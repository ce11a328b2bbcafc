"""Brevitas export_qonnx of the hardware-exact network (hw.qonnx_export).

The exported file is executed by qonnx's execute_onnx: qonnx's numpy code for
Quant / BipolarQuant and ONNX Runtime for the standard ops, i.e. code nobody
here wrote, except the one IntLayerNorm custom op.  Its logits must equal the
golden executor's with np.array_equal.
"""
import re

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import qonnx_export as Q
from hw.fixedpoint import saturate


@pytest.fixture(scope="session")
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
    from hw.torch_form import int_quant
    q = int_quant(bits).to(torch.float64).eval()
    with torch.no_grad():
        got = q(torch.as_tensor(acc, dtype=torch.float64) * 2.0 ** -shift + (0.5 if shift else 0.0)).numpy()
    want = saturate(np.floor(acc / 2.0 ** shift + 0.5).astype(np.int64), bits)
    assert np.array_equal(got, want.astype(np.float64))


# ---------------------------------------------------------------------- FINN's passes on the export
@pytest.fixture(scope="session")
def lowered(exported, shipped_net):
    from qonnx.core.modelwrapper import ModelWrapper

    from hw import finn_lowering as FL
    from hw.onnx_graph import to_onnx
    _, path, _, _ = exported
    model, regions = FL.lower(ModelWrapper(str(path)))
    cfg = shipped_net.cfg
    dataflow = to_onnx(shipped_net.graph, (cfg.img_size, cfg.img_size, cfg.in_chans), batch=1)
    return model, regions, dataflow


def test_finn_passes_turn_every_binary_matmul_into_an_xnor_mvau(lowered, exported, shipped_net):
    """FINN's ConvertQONNXtoFINN / Streamline / XNOR / InferBinaryMVAU / InferThresholding
    sequence leaves a Thresholding -> MVAU pair for every binary linear layer."""
    from hw import finn_lowering as FL
    model, regions, dataflow = lowered
    n_mvau = sum(n.op == "MVAU" for n in shipped_net.graph.nodes)
    assert len(regions) == n_mvau
    ops = Q.op_histogram(model)
    assert ops["finn.custom_op.fpgadataflow::MVAU"] == n_mvau
    assert ops["finn.custom_op.fpgadataflow::Thresholding"] == n_mvau
    # every binary MatMul became an MVAU; the QD attention's and the head's MatMuls stay
    assert ops.get("MatMul", 0) == Q.op_histogram(exported[0])["MatMul"] - n_mvau
    from qonnx.custom_op.registry import getCustomOp
    import finn.custom_op.fpgadataflow  # noqa: F401
    for n in model.graph.node:
        if n.op_type == "MVAU":
            op = getCustomOp(n)
            assert op.get_nodeattr("binaryXnorMode") == 1 and op.get_nodeattr("inputDataType") == "BINARY"
            w = model.get_initializer(n.input[1])
            assert set(np.unique(w)) <= {0.0, 1.0}
    # every FINN node has a partner in the dataflow graph with the same parameters
    pairs = FL.match_dataflow(regions, dataflow)
    mvau_names = {n.name for n in shipped_net.graph.nodes if n.op == "MVAU"}
    assert {v for k, v in pairs.items() if k.endswith(".MVAU")} == mvau_names
    assert len(set(pairs.values())) == 2 * n_mvau


def test_finn_lowered_export_executes_to_golden_logits(lowered, exported):
    from hw import finn_lowering as FL
    model, _, _ = lowered
    _, _, images, gold = exported
    res = FL.verify(model, images, gold, batch=4)
    assert res == dict(equal=True, images=8)


def test_dataflow_mismatch_with_finn_nodes_is_reported(lowered):
    """The pairing is a real comparison: one flipped weight in the dataflow graph breaks it."""
    from hw import finn_lowering as FL
    _, regions, dataflow = lowered
    m = onnx.ModelProto.FromString(dataflow.model.SerializeToString())
    from qonnx.core.modelwrapper import ModelWrapper
    m = ModelWrapper(m)
    mv = next(n for n in m.graph.node if n.op_type == "MVAU")
    w = np.asarray(m.get_initializer(mv.input[1])).copy()
    w.flat[0] = -w.flat[0]
    m.set_initializer(mv.input[1], w)
    with pytest.raises(FL.LoweringError, match="MVAU"):
        FL.match_dataflow(regions, m)


def test_a_region_finn_cannot_lower_is_named(exported):
    """A sign alone (its +-1 output feeds no XNOR MatMul) is no FINN Thresholding kernel:
    the error names the region's nodes and FINN's pass, it does not pass silently."""
    from qonnx.core.modelwrapper import ModelWrapper

    from hw import finn_lowering as FL
    _, path, _, _ = exported
    m = ModelWrapper(str(path))
    reg = FL.find_regions(m)[0]
    sign_only = FL.Region("mvau", reg.nodes[:2], reg.input, reg.nodes[1].output[0])
    with pytest.raises(FL.LoweringError, match=rf"{re.escape(reg.nodes[0].name)}.*InferThresholdingLayer failed"):
        FL.lower_region(m, sign_only, "broken")


def test_finn_lowers_the_dense_binary_convolutions(exported, lowered):
    """LowerConvsToMatMul / InferConvInpGen / InferShuffle on the patch-merging convs: FINN
    nodes only, equal to the exported regions, parameters equal to the dataflow graph's."""
    from qonnx.core.modelwrapper import ModelWrapper

    from hw import finn_lowering as FL
    _, path, _, _ = exported
    _, _, dataflow = lowered
    res = FL.check_conv_regions(ModelWrapper(str(path)), dataflow)
    assert res["regions"] == 3 and res["equal"]
    assert res["ops"]["ConvolutionInputGenerator"] == 3 and res["ops"]["MVAU"] == 3
    assert sorted(res["pairs"].values()) == [f"downsamples.{i}.proj" for i in range(3)]
