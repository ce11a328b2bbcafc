"""The dataflow graph, its ONNX form in FINN's style, the cost model and `make export`.

The ONNX graph is executed by qonnx's execute_onnx, which runs FINN's own
Python code for the Thresholding and MVAU nodes: the check against code
nobody here wrote.  Every stream must equal the golden executor's.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from hw.cost import FoldingError, check_folding, fold_for_target, graph_cost, node_cost
from hw.execute import run, stream_shapes
from hw.export import verify_onnx
from hw.onnx_graph import UnsupportedGraphError, execute, to_onnx, validate

from tests.conftest import CKPT, ROOT
IMG = (32, 32, 1)


@pytest.fixture(scope="module")
def net(shipped_net):
    return shipped_net


@pytest.fixture(scope="module")
def images(shipped):
    return shipped[2].images[:12].numpy()


def test_onnx_graph_equals_golden_on_every_stream(net, images):
    res = verify_onnx(net, net.graph, images, batch=6, progress=False)
    assert res["equal"], res
    assert res["images"] == 12 and res["streams_compared"] == len(net.graph.nodes) and res["batches"] == 2
    assert np.array_equal(res["logits"], net.forward(images))


def test_onnx_of_the_lowered_graph_equals_golden_on_every_stream(net, images):
    """The graph the hardware flows build (hw.passes.lower: ShiftConv nodes) through qonnx."""
    from hw.passes import lower
    low = lower(net.graph)
    res = verify_onnx(net, low, images[:6], batch=6, progress=False)
    assert res["equal"] and res["streams_compared"] == len(low.nodes), res
    assert np.array_equal(res["logits"], net.forward(images[:6]))


def test_finn_nodes_run_finns_code_and_ours_run_hw_ops(net):
    from qonnx.custom_op.registry import getCustomOp
    model = to_onnx(net.graph, IMG)
    import finn.custom_op.fpgadataflow  # noqa: F401
    kinds = {}
    for node in model.graph.node:
        kinds.setdefault(node.op_type, type(getCustomOp(node)).__module__)
    assert kinds["MVAU"].startswith("finn.") and kinds["Thresholding"].startswith("finn.")
    assert kinds["Affine"] == "hw.custom_op" and kinds["QDAttention"] == "hw.custom_op"
    validate(model)


def test_qonnx_shape_and_datatype_inference_agree_with_the_export(net, images):
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    model = to_onnx(net.graph, IMG, batch=2)
    before = {vi.name: model.get_tensor_shape(vi.name) for vi in model.graph.value_info}
    dts = {n.outputs[0]: n.dtype for n in net.graph.nodes}
    model = model.transform(InferShapes()).transform(InferDataTypes())
    for name, shape in before.items():
        assert model.get_tensor_shape(name) == shape, name
    for name, dt in dts.items():
        assert model.get_tensor_datatype(name).name == dt, name
    assert np.array_equal(execute(model, images[:2].transpose(0, 2, 3, 1)), net.forward(images[:2]))


def test_unsupported_op_and_non_binary_weights_are_named(net):
    model = to_onnx(net.graph, IMG)
    bad = model.graph.node[5]
    model.graph.node.insert(6, helper.make_node("Softmax", [bad.output[0]], ["sm"], name="my_softmax"))
    with pytest.raises(UnsupportedGraphError, match="my_softmax.*Softmax"):
        validate(model)
    model = to_onnx(net.graph, IMG)
    mv = next(n for n in model.graph.node if n.op_type == "MVAU")
    w = model.get_initializer(mv.input[1]).copy()
    w[0, 0] = 0.5
    model.set_initializer(mv.input[1], w)
    with pytest.raises(UnsupportedGraphError, match=f"{mv.name}.*not all \\+-1"):
        validate(model)


def test_folding_that_does_not_divide_is_rejected_with_legal_values(net):
    g = net.graph
    shapes = stream_shapes(g, 1, IMG)
    node = g.node("stages.0.0.norm1")                     # 32 channels
    old = node.attrs.get("PE", 1)
    node.attrs["PE"] = 3
    try:
        with pytest.raises(FoldingError, match=r"stages\.0\.0\.norm1 \(Affine\): PE=3 does not divide 32; "
                                               r"legal: 1, 2, 4, 8, 16, 32"):
            check_folding(g, shapes)
    finally:
        node.attrs["PE"] = old


def test_cost_model_cycles_follow_the_folding(net):
    g = net.graph
    shapes = stream_shapes(g, 1, IMG)
    mv = g.node("stages.0.0.mlp.fc1.linear")               # 256 tokens, 32 -> 128
    mv.attrs.update(PE=1, SIMD=1)
    assert node_cost(g, mv, shapes)["cycles"] == 256 * 32 * 128
    mv.attrs.update(PE=4, SIMD=8)
    assert node_cost(g, mv, shapes)["cycles"] == 256 * (32 // 8) * (128 // 4)
    fold_for_target(g, IMG, 20000)
    cost = graph_cost(g, IMG)
    assert cost["cycles_per_image"] <= 20000
    assert cost["images_per_s"] == pytest.approx(100e6 / cost["cycles_per_image"])
    assert max(r["cycles"] for r in cost["nodes"]) == cost["cycles_per_image"]
    assert {r["name"] for r in cost["nodes"]} == {n.name for n in g.nodes}


def test_golden_executor_and_graph_run_agree_with_intnet_forward(net, images):
    trace = {}
    logits = run(net.graph, images.transpose(0, 2, 3, 1), trace)
    assert np.array_equal(logits, net.forward(images))
    assert all(v.dtype == np.int64 for v in trace.values())


def test_export_cli(tmp_path):
    """The command line, its report and its error path; the Brevitas QONNX and FINN levels it
    runs by default are tested in tests/test_qonnx_export.py (here --qonnx-verify 0: minutes)."""
    cmd = [sys.executable, "-m", "hw.export", "--ckpt", str(CKPT), "--calib", "64", "--verify", "4",
           "--limit", "40", "--qonnx-verify", "0", "--out", str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["verification"]["equal"] and rep["verification"]["images"] == 4
    assert rep["verification"]["torch_equal"] is True
    assert rep["accuracy"]["images"] == 40
    assert rep["cost"]["cycles_per_image"] <= 10000
    assert all(r["cycles"] > 0 and r["out_bits"] >= 1 for r in rep["cost"]["nodes"])
    assert (tmp_path / "dataflow.onnx").exists() and "| node | op |" in (tmp_path / "report.md").read_text()
    folding = json.loads((tmp_path / "folding.json").read_text())
    folding["stages.0.0.norm1"]["PE"] = 5
    (tmp_path / "bad.json").write_text(json.dumps(folding))
    bad = subprocess.run(cmd[:-2] + ["--out", str(tmp_path / "b"), "--folding", str(tmp_path / "bad.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert bad.returncode == 2 and "stages.0.0.norm1 (Affine): PE=5 does not divide 32" in bad.stderr


def test_another_model_three_channels_and_two_blocks_per_stage_lowers_bit_exactly():
    """Nothing in the flow is specific to the shipped model: an untrained 3-channel CIFAR-sized
    variant with two blocks per stage folds, lowers and runs bit-exactly through ONNX/FINN."""
    import torch

    from hw.intnet import IntNet, QuantSpec
    from hw.qat import TorchIntNet
    from model.registry import create_model
    torch.manual_seed(0)
    model = create_model("bhvit_pynq_cifar10", depths=(2, 1, 2, 1)).eval()
    g = torch.Generator().manual_seed(1)
    calib = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    net = IntNet.from_model(model, calib, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), QuantSpec())
    x = calib[:3].numpy()
    res = verify_onnx(net, net.graph, x, batch=3, progress=False)
    assert res["equal"], res
    assert sum(n.op == "QDAttention" for n in net.graph.nodes) == 3
    with torch.no_grad():
        assert np.array_equal(TorchIntNet(net)(x).numpy().astype(np.int64), res["logits"])
