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
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import kernels as K

DT = torch.float64


# The straight-through estimators below all have the form  exact + (g - g.detach()):
# the forward value is *exactly* the integer (adding 0.0), the gradient is g's.
def round_ste(v):
    """floor(v + 1/2) forward, identity backward."""
    return torch.floor(v.detach() + 0.5) + (v - v.detach())


def rshift_round(acc, s: int):
    return acc * 2.0 ** -s if s <= 0 else round_ste(acc * 2.0 ** -s)


def saturate(v, bits: int):
    return v.clamp(-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)


def sign_ste(v):
    """+-1 (sign(0) = +1) forward, clipped identity backward."""
    c = v.clamp(-1.0, 1.0)
    return torch.where(v.detach() >= 0, 1.0, -1.0).to(v.dtype) + (c - c.detach())


def exact_with_surrogate(exact, surrogate):
    """The exact integer values, with the surrogate's gradient."""
    return exact + (surrogate - surrogate.detach())


def _map(t, h, w):
    b, n, c = t.shape
    return t.transpose(1, 2).reshape(b, c, h, w)


def _tok(m):
    b, c, h, w = m.shape
    return m.reshape(b, c, h * w).transpose(1, 2)


def split_heads(t, heads: int):
    """(windows, tokens, heads * d) -> (windows, heads, tokens, d)"""
    bw, m, c = t.shape
    return t.reshape(bw, m, heads, c // heads).transpose(1, 2)


class TorchIntNet(nn.Module):
    """The dataflow graph of an IntNet as a trainable, hardware-exact module."""

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
        for node in self.graph.nodes:
            for k, v in node.params.items():
                key = self._key(node.name, k)
                v = np.asarray(v, dtype=np.float64)
                if node.op in ("Lut", "QDAttention") or (node.op == "RPReLU" and k == "m_pos"):
                    self.register_buffer(key, torch.tensor(v, dtype=DT))   # fixed tables / the 2**M of RPReLU
                    continue
                if node.op in ("MVAU", "XnorConv2d"):
                    sc = 1.0
                elif node.op == "Thresholding":
                    sc = 2.0 ** self._frac_of(node.inputs[0])
                else:
                    sc = float(max(np.abs(v).max(initial=0), 1.0))
                self.scale[key] = sc
                self.theta[key] = nn.Parameter(torch.tensor(v / sc, dtype=DT))
                if node.op in ("IntConv2d", "IntLinear") and k == "w":
                    self.limit[key] = 127.0
                elif node.op not in ("MVAU", "XnorConv2d"):
                    self.limit[key] = float(max(np.abs(v).max(initial=0), 1))
                    if k == "bias":
                        self.limit[key] = 2.0 * self.limit[key] + 1.0
        self.in_scale = {n.name: self._frac_of(n.inputs[0]) for n in self.graph.nodes if n.op == "Thresholding"}

    @staticmethod
    def _key(node, k):
        return (node + "|" + k).replace(".", "__")      # '.' is not allowed; '_' would collide (q.sign / q_sign)

    def _frac_of(self, tensor):
        f = self.net.fmt.get(tensor)
        return f.frac if f is not None else 0

    def p(self, node, k, rounded=True):
        key = self._key(node.name, k)
        if key in self.theta:
            if node.op in ("MVAU", "XnorConv2d"):
                return sign_ste(self.theta[key])
            v = self.theta[key] * self.scale[key]
            lim = self.limit.get(key)
            if lim is not None:
                v = v.clamp(-lim, lim)
            return round_ste(v) if rounded else v
        return getattr(self, key)

    # ------------------------------------------------------------------ ops
    @staticmethod
    def _input_nhwc(image_u8):
        return torch.as_tensor(np.asarray(image_u8)).to(DT).permute(0, 2, 3, 1)

    def forward(self, image_u8, trace: dict | None = None):
        """uint8 images (B, C, H, W) -> integer logits as float64 (exact)."""
        env = {self.graph.input: self._input_nhwc(image_u8)}
        for node in self.graph.nodes:
            y = getattr(self, "op_" + node.op)(node, *[env[i] for i in node.inputs])
            env[node.outputs[0]] = y
            if trace is not None:
                trace[node.outputs[0]] = y
        return env[self.graph.output]

    def op_IntConv2d(self, n, x):
        acc = F.conv2d(x.permute(0, 3, 1, 2), self.p(n, "w"), stride=n.attrs["stride"])
        return _tok(acc)

    def op_Affine(self, n, *xs):
        a = n.attrs
        acc = 0
        for i, x in enumerate(xs):
            k = a["pc_k"][i] if a.get("pc_k") else 0
            if k:
                x = 2 * x - k
            acc = acc + x * self.p(n, f"m{i}") * 2.0 ** a["lshifts"][i]
        acc = acc + self.p(n, "bias")
        return saturate(rshift_round(acc, a["shift"]), a["bits"])

    def op_RPReLU(self, n, z):
        a = n.attrs
        y = torch.where(z >= 0, z * self.p(n, "m_pos"), z * self.p(n, "m_neg")) + self.p(n, "bias")
        return saturate(rshift_round(y, a["shift"]), a["bits"])

    def op_Lut(self, n, x):
        table = self.p(n, "table")
        lo = -(1 << (n.attrs["in_bits"] - 1))
        idx = (x.detach() - lo).long()
        exact = table[idx]
        up, down = table[(idx + 1).clamp(max=table.numel() - 1)], table[(idx - 1).clamp(min=0)]
        slope = (up - down) / 2.0
        return exact + (x - x.detach()) * slope

    def op_Thresholding(self, n, x):
        t = self.p(n, "thresholds")[:, 0]
        # one real unit of the input format: the surrogate is a clipped identity there
        u = (x - t + 0.5) * 2.0 ** -self.in_scale[n.name]
        return sign_ste(u)

    def op_MVAU(self, n, x):
        w = self.p(n, "weights")                             # (K, N) +-1
        return (x @ w + n.attrs["MW"]) / 2

    def op_XnorConv2d(self, n, xb):
        a = n.attrs
        acc = F.conv2d(_map(xb, a["H"], a["W"]), self.p(n, "w"), stride=a["stride"], padding=a["pad"],
                       dilation=a["dilation"], groups=a["groups"])
        return _tok(acc)

    def op_RepeatChannels(self, n, x):
        return torch.cat([x] * n.attrs["ratio"], dim=-1)

    def op_GroupSumChannels(self, n, x):
        *lead, c = x.shape
        r = n.attrs["ratio"]
        return x.reshape(*lead, c // r, r).sum(-1)

    def op_ShiftBranch(self, n, x):
        a = n.attrs
        m = _map(x, a["H"], a["W"])
        s = a["reach"]
        if a["kind"] == "box":
            dim = 2 if a["axis"] == "h" else 3
            y = m + sum(torch.roll(m, r, dim) + torch.roll(m, -r, dim) for r in range(1, s + 1))
        else:
            q = m.shape[1] // 4
            y = torch.cat([torch.roll(m[:, :q], s, 2), torch.roll(m[:, q:2 * q], -s, 2),
                           torch.roll(m[:, 2 * q:3 * q], s, 3), torch.roll(m[:, 3 * q:], -s, 3)], dim=1)
        return _tok(y)

    def op_TokenPool(self, n, x):
        a = n.attrs
        m = _map(x, a["H"], a["W"])
        b, c, h, w = m.shape
        k = a["k"]
        blocks = m.reshape(b, c, h // k, k, w // k, k)
        y = blocks.amax(dim=(3, 5)) if a["mode"] == "max" else blocks.sum(dim=(3, 5))
        return _tok(y)

    def op_AttentionTokens(self, n, x, pooled):
        a = n.attrs
        win = a["win"]
        m = _map(x, a["H"], a["W"])
        b, c, h, w = m.shape
        wins = m.permute(0, 2, 3, 1).reshape(b, h // win, win, w // win, win, c)
        wins = wins.permute(0, 1, 3, 2, 4, 5).reshape(-1, win * win, c)
        n_win = wins.shape[0] // b
        return torch.cat([wins, pooled.repeat_interleave(n_win, dim=0)], dim=1)

    def op_IntLayerNorm(self, n, x):
        a = n.attrs
        gmul, bias = self.p(n, "gmul"), self.p(n, "bias")
        exact = K.layernorm_int(x.detach().numpy().astype(np.int64), gmul.detach().numpy().astype(np.int64),
                                bias.detach().numpy().astype(np.int64), a["eps"], a["r_bits"], a["shift"], a["bits"])
        c = x.shape[-1]
        d = c * x - x.sum(-1, keepdim=True)
        v = (d * d).sum(-1, keepdim=True)
        sur = (d * 2.0 ** a["r_bits"] / torch.sqrt(v + a["eps"] + 1.0) * gmul + bias) * 2.0 ** -a["shift"]
        return exact_with_surrogate(torch.as_tensor(exact, dtype=DT), sur)

    def op_QDAttention(self, n, qb, kb, vb):
        a = n.attrs
        heads, levels = a["heads"], a["levels"]

        q, k, v = (split_heads(t, heads) for t in (qb, kb, vb))
        d = q.shape[-1]
        exact = K.qd_attention(*(t.detach().numpy().astype(np.int8) for t in (q, k, v)),
                               self.p(n, "table").numpy().astype(np.int64), levels)
        att = torch.softmax((q @ k.transpose(-1, -2) - d) / math.sqrt(d), dim=-1)
        sur = (levels * att) @ v
        y = exact_with_surrogate(torch.as_tensor(exact, dtype=DT), sur)
        return y.transpose(1, 2).reshape(qb.shape)

    def op_WindowReverse(self, n, c):
        a = n.attrs
        win, h, w = a["win"], a["H"], a["W"]
        loc = c[:, :win * win]
        ch = loc.shape[-1]
        m = loc.reshape(-1, h // win, w // win, win, win, ch).permute(0, 5, 1, 3, 2, 4).reshape(-1, ch, h, w)
        return _tok(m)

    def op_PooledUpsample(self, n, c):
        a = n.attrs
        h, w, win = a["H"], a["W"], a["win"]
        n_win = (h // win) * (w // win)
        high = c[:, win * win:]
        side = int(round(math.sqrt(high.shape[1])))
        b, dim = c.shape[0] // n_win, c.shape[-1]
        high = high.reshape(b, n_win, side, side, dim).sum(1).permute(0, 3, 1, 2)
        f = h // side
        return _tok(high.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3))

    def op_TokenSum(self, n, x):
        return x.sum(1)

    def op_IntLinear(self, n, x):
        return x @ self.p(n, "w").T + self.p(n, "bias")

    # ------------------------------------------------------------------ back to integers
    @torch.no_grad()
    def to_intnet(self):
        """The integer network with the current (rounded) parameters."""
        import copy
        net = copy.deepcopy(self.net)
        for node in self.graph.nodes:
            vals = {k: self.p(node, k).detach().numpy() for k in node.params}
            vals = {k: np.rint(v).astype(np.int64) for k, v in vals.items()}
            d = net.p.get(node.name)
            if node.op == "Affine":
                d["m"] = [vals[f"m{i}"] for i in range(len(d["m"]))]
                d["bias"] = vals["bias"]
            elif node.op == "RPReLU":
                d["m_neg"], d["bias"] = vals["m_neg"], vals["bias"]
            elif node.op == "Thresholding":
                d["t"] = vals["thresholds"][:, 0]
            elif node.op == "MVAU":
                d["w"] = vals["weights"].T.astype(np.int8)
            elif node.op == "XnorConv2d":
                d["w"] = vals["w"].astype(np.int8)
            elif node.op == "IntConv2d":
                d["w"] = vals["w"]
            elif node.op == "IntLayerNorm":
                d["gmul"], d["bias"] = vals["gmul"], vals["bias"]
            elif node.op == "IntLinear":
                d["w"], d["bias"] = vals["w"], vals["bias"]
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
