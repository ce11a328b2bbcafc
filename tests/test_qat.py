"""The hardware-exact PyTorch form of the integer network and its fine-tuning.

Forward values must be the golden integers on every stream; gradients must
reach every trainable constant; training must keep the network exactly
representable (the rounded parameters written back give the same integers).
"""
import numpy as np
import pytest
import torch

from hw.qat import TorchIntNet, qat, round_ste, sign_ste



@pytest.fixture(scope="module")
def shipped_all(shipped, shipped_net):
    model, train, test = shipped
    return model, shipped_net, train, test


def test_ste_forward_is_exact_and_backward_is_identity():
    v = torch.tensor([-2.5, -0.5, -0.49, 0.0, 0.3, 0.5, 1e12 + 0.5, 2.0 ** 40 + 0.25], dtype=torch.float64,
                     requires_grad=True)
    r = round_ste(v)
    assert torch.equal(r.detach(), torch.floor(v.detach() + 0.5))
    r.sum().backward()
    assert torch.equal(v.grad, torch.ones_like(v))
    w = torch.tensor([-3.0, -0.2, 0.0, 0.7, 2.0], dtype=torch.float64, requires_grad=True)
    s = sign_ste(w)
    assert s.detach().tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]          # sign(0) = +1
    s.sum().backward()
    assert w.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]                 # clipped STE


def test_torch_forward_equals_golden_on_every_stream(shipped_all):
    _, net, _, test = shipped_all
    x = test.images[:10].numpy()
    tnet = TorchIntNet(net)
    trace = {}
    with torch.no_grad():
        logits = tnet(x, trace)
    net.trace = {}
    try:
        ref = net.forward(x)
        gold = net.trace
    finally:
        net.trace = None
    assert np.array_equal(logits.numpy().astype(np.int64), ref)
    assert set(trace) == set(gold)
    for name, y in trace.items():
        y = y.numpy()
        assert np.array_equal(y, np.rint(y)) and np.array_equal(y.astype(np.int64), gold[name]), name


def test_gradients_reach_every_kind_of_constant(shipped_all):
    model, net, train, _ = shipped_all
    tnet = TorchIntNet(net)
    out = tnet(train.images[:6].numpy())
    torch.nn.functional.cross_entropy(out * 2.0 ** -net.fmt["head.logits"].frac, train.labels[:6]).backward()
    kinds = {}
    for node in net.graph.nodes:
        for k in node.params:
            key = TorchIntNet._key(node.name, k)
            if key in tnet.theta and tnet.theta[key].grad is not None:
                kinds.setdefault(node.op, 0.0)
                kinds[node.op] += float(tnet.theta[key].grad.abs().sum())
    for op in ("Affine", "RPReLU", "Thresholding", "MVAU", "XnorConv2d", "IntLayerNorm", "IntLinear", "IntConv2d"):
        assert kinds.get(op, 0.0) > 0, op


def test_qat_steps_lower_the_loss_and_stay_exactly_representable(shipped_all):
    model, net, train, test = shipped_all
    tnet, losses = qat(net, model, _Subset(train, 16), steps=8, batch=16, lr=1e-3, progress=False)
    assert min(losses[-4:]) < losses[0]                                   # one batch, seeded: it fits
    tuned = tnet.to_intnet()
    x = test.images[:8].numpy()
    with torch.no_grad():
        got = tnet(x).numpy().astype(np.int64)
    assert np.array_equal(tuned.forward(x), got)                         # written back bit-exactly
    assert not np.array_equal(tuned.forward(x), net.forward(x))           # and the training changed it
    for node in tuned.graph.nodes:                                         # constants inside their bounds
        if node.op == "Affine":
            orig = net.graph.node(node.name)
            for i in range(len(node.inputs)):
                assert np.abs(node.params[f"m{i}"]).max() <= max(np.abs(orig.params[f"m{i}"]).max(), 1)


class _Subset:
    def __init__(self, split, n):
        self.images, self.labels = split.images[:n], split.labels[:n]


def test_qat_cli_writes_an_integer_model_and_refuses_bad_input(tmp_path):
    import json
    import subprocess
    import sys

    from hw.intnet import IntNet
    from tests.conftest import CKPT, ROOT
    cmd = [sys.executable, "-m", "hw.qat", "--ckpt", str(CKPT), "--calib", "32", "--steps", "2", "--batch", "8",
           "--limit", "20", "--out", str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["steps"] == 2 and rep["after"]["images"] == 20 and len(rep["loss_first"]) == 2
    assert IntNet.load(tmp_path / "intnet_qat.npz").forward(np.zeros((1, 1, 32, 32), np.uint8)).shape == (1, 10)
    bad = subprocess.run(cmd[:-2] + ["--out", str(tmp_path / "b"), "--intnet", str(tmp_path / "none.npz")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "make golden" in bad.stderr
