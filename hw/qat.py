"""The hardware-exact PyTorch form of the integer network, and `make qat`.

:class:`TorchIntNet` runs the dataflow graph of :mod:`hw.graph` in PyTorch.
Its forward values are the golden integers exactly (float64 tensors holding
integers below 2**53, with round-half-up and saturation as the kernels
define them; the integer LayerNorm and QD attention run their int64 golden
kernels), so ``TorchIntNet(net)(x)`` equals ``net.forward(x)`` bit for bit.
Its backward makes the integer network trainable: every constant of the
hardware (multipliers, biases, thresholds, RPReLU slopes, 8-bit stem and
classifier weights) is a float ``nn.Parameter`` that the forward rounds with
a straight-through estimator, binary weights are latent floats behind a
clipped-STE sign, and the non-differentiable kernels (compares, tables,
LayerNorm, QD attention) pass gradients through a real-valued surrogate of
themselves.  Ranges never grow past what the folding sized the hardware for:
multipliers stay within their initial magnitude, so accumulators keep the
bound the folding checked.

``python -m hw.qat`` (``make qat``) fine-tunes the folded network of a
checkpoint this way with distillation from the float model, then writes the
rounded parameters back as an integer model (``intnet_qat.npz``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import op_of
from .torch_form import DT, round_ste, sign_ste  # noqa: F401  (round_ste, sign_ste: this module's STEs)


class TorchIntNet(nn.Module):
    """The dataflow graph of an IntNet as a trainable, hardware-exact module: every node runs its
    op's PyTorch form (:meth:`hw.ops.HwOp.torch_forward`)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.graph = net.graph
        self.theta = nn.ParameterDict()
        # Each trainable constant v is stored as v / scale, so one optimiser step
        # size means the same relative change for a 16-bit multiplier, a bias, a
        # threshold (scale: one real unit of its input) and a latent binary weight.
        self.scale: dict = {}
        self.limit: dict = {}          # parameter -> the largest magnitude it may take
        self.binary: set = set()       # parameters that are latent floats behind a sign
        for node in self.graph.nodes:
            op = op_of(node)
            for k, v in node.params.items():
                key = self._key(node.name, k)
                v = np.asarray(v, dtype=np.float64)
                role = op.qat_role(k)
                if role == "table":     # fixed tables, the 2**M of RPReLU
                    self.register_buffer(key, torch.tensor(v, dtype=DT))
                    continue
                if role == "binary":
                    sc = 1.0
                    self.binary.add(key)
                elif role == "threshold":
                    sc = 2.0 ** self.frac_of(node.inputs[0])
                else:
                    sc = float(max(np.abs(v).max(initial=0), 1.0))
                self.scale[key] = sc
                self.theta[key] = nn.Parameter(torch.tensor(v / sc, dtype=DT))
                if role == "int8":
                    self.limit[key] = 127.0
                elif role != "binary":
                    self.limit[key] = float(max(np.abs(v).max(initial=0), 1))
                    if k == "bias":
                        self.limit[key] = 2.0 * self.limit[key] + 1.0

    @staticmethod
    def _key(node, k):
        return (node + "|" + k).replace(".", "__")      # '.' is not allowed; '_' would collide (q.sign / q_sign)

    def frac_of(self, tensor):
        """The binary point of a stream of the integer network (0 where it has none)."""
        f = self.net.fmt.get(tensor)
        return f.frac if f is not None else 0

    def p(self, node, k, rounded=True):
        key = self._key(node.name, k)
        if key in self.theta:
            if key in self.binary:
                return sign_ste(self.theta[key])
            v = self.theta[key] * self.scale[key]
            lim = self.limit.get(key)
            if lim is not None:
                v = v.clamp(-lim, lim)
            return round_ste(v) if rounded else v
        return getattr(self, key)

    @staticmethod
    def _input_nhwc(image_u8):
        return torch.as_tensor(np.asarray(image_u8)).to(DT).permute(0, 2, 3, 1)

    def run_node(self, node, *xs):
        return op_of(node).torch_forward(self, *xs)

    def forward(self, image_u8, trace: dict | None = None):
        """uint8 images (B, C, H, W) -> integer logits as float64 (exact)."""
        env = {self.graph.input: self._input_nhwc(image_u8)}
        for node in self.graph.nodes:
            y = self.run_node(node, *[env[i] for i in node.inputs])
            env[node.outputs[0]] = y
            if trace is not None:
                trace[node.outputs[0]] = y
        return env[self.graph.output]

    # ------------------------------------------------------------------ back to integers
    @torch.no_grad()
    def to_intnet(self):
        """The integer network with the current (rounded) parameters."""
        import copy
        net = copy.deepcopy(self.net)
        for node in self.graph.nodes:
            vals = {k: np.rint(self.p(node, k).detach().numpy()).astype(np.int64) for k in node.params}
            d = net.p.get(node.name)
            upd = op_of(node).intnet_params(vals)
            if upd:
                d.update(upd)
        net._graph = None
        net.trace = None
        return net


# ---------------------------------------------------------------------- make qat
def qat(net, model, train, steps: int, batch: int = 64, lr: float = 1e-3, seed: int = 0, kd: float = 0.8,
        progress: bool = True, log=print):
    """Fine-tune the integer network: (1 - kd) CE + kd KD(float model), Adam on
    the float parameters behind the rounding.  Returns (TorchIntNet, losses)."""
    from tqdm import tqdm
    torch.manual_seed(seed)
    tnet = TorchIntNet(net)
    scale = 2.0 ** -net.fmt["head.logits"].frac
    mean = torch.tensor(net.norm_mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(net.norm_std, dtype=torch.float32).view(1, -1, 1, 1)
    opt = torch.optim.Adam(tnet.theta.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.eval()
    per_epoch = max(1, len(train.images) // batch)
    for step in tqdm(range(steps), desc="qat", unit="step", disable=not progress):
        if step % per_epoch == 0:
            perm = torch.randperm(len(train.images), generator=g)
        idx = perm[(step % per_epoch) * batch:(step % per_epoch + 1) * batch]
        x, y = train.images[idx], train.labels[idx]
        with torch.no_grad():
            soft = F.softmax(model((x.float() / 255.0 - mean) / std).double(), dim=1)
        logits = tnet(x.numpy()) * scale
        loss = (1 - kd) * F.cross_entropy(logits, y) - kd * (soft * F.log_softmax(logits, 1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return tnet, losses


def main(argv=None) -> int:
    from model.checkpoint import atomic_write_bytes

    from .cli import HwInputError, add_common_args, load_inputs
    from .golden import evaluate_int

    p = argparse.ArgumentParser(prog="python -m hw.qat", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        inp = load_inputs(a, "qat")
    except HwInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model, net, train, test, out, name = inp.model, inp.net, inp.train, inp.test, inp.out, inp.name
    n = a.limit or len(test.images)
    before = evaluate_int(net, model, test.images[:n], test.labels[:n])
    tnet, losses = qat(net, model, train, a.steps, a.batch, a.lr)
    tuned = tnet.to_intnet()
    tuned.save(out / "intnet_qat.npz")
    after = evaluate_int(tuned, model, test.images[:n], test.labels[:n])
    res = dict(model=name, checkpoint=str(a.ckpt), steps=a.steps, batch=a.batch, lr=a.lr, spec=net.spec.__dict__,
               before=before, after=after, loss_first=losses[:10], loss_last=losses[-10:],
               seconds=round(time.time() - t0, 1),
               command="python -m hw.qat " + " ".join(argv if argv is not None else sys.argv[1:]))
    atomic_write_bytes(out / "report.json", lambda fh: fh.write(json.dumps(res, indent=2).encode()))
    print(f"{name}: float {after['float_top1']:.2f}%, integer before QAT {before['int_top1']:.2f}%, "
          f"after {a.steps} QAT steps {after['int_top1']:.2f}% ({n} test images)")
    print(f"[qat] wrote {out}/intnet_qat.npz and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
