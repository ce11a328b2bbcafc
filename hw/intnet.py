"""The hardware-exact integer network of a trained BHViT, and its golden executor.

``IntNet.from_model(model, calib_images)`` folds every non-binary operation of
a trained float model into the integer kernels of :mod:`hw.kernels`
(post-training: formats are chosen from the ranges seen on calibration
images); ``IntNet.forward(images_u8)`` runs the whole network on integers and
returns integer logits.  The definition, tensor by tensor:

* The input is the raw uint8 image; the data set's normalisation, the stem
  conv and its BN fold into one integer conv (8-bit weights, one float scale
  per output channel realised as a 16-bit multiplier), GELU is a table over
  the ``lut_bits`` pre-activation, the position embedding is an added constant.
* Every tensor between kernels is signed fixed point ``Fmt(bits, frac)`` with a
  power-of-two scale: ``act_bits`` (default 10) for the residual stream, norm
  outputs and unit outputs, ``pre_bits`` (default 16) for the RPReLU inputs.
* A sign with learnable bias is an integer threshold ``x >= ceil(-move * 2**f)``.
* alpha * popcount, BN, the shortcut (repeat, channel-group mean, identity),
  LayerScale, the 1/3 and 1/5 of the box filters, token means and residual
  adds all fold into :func:`hw.kernels.affine_sum` (16-bit per-channel
  multipliers, one rounding per kernel, saturation to the output format).
* RPReLU: its shift gamma folds into the producer; the kernel applies the two
  slopes and adds zeta (and a position embedding after a downsampling).
* MSMHA: integer LayerNorm (exact isqrt + one division per token), QD
  attention by an exp table over the 2d+1 scores and integer compares.
* Head: BN, a sum over tokens, an 8-bit classifier with a common power of two
  for all classes, so the integer logits order like the float ones.

The batch axis is the only thing the executor vectorises over, so a chunk of
images runs at once (the whole Fashion-MNIST test set in a few minutes).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import kernels as K
from .fixedpoint import Fmt, frac_for_range, mult_frac


class IntNetError(RuntimeError):
    """An integer model file is missing or unreadable; the message says what to do."""


@dataclass
class QuantSpec:
    act_bits: int = 10     # residual stream, norm outputs, unit outputs (README: why 10)
    pre_bits: int = 16     # RPReLU inputs (internal to a kernel pair)
    mult_bits: int = 16    # per-channel multipliers
    lut_bits: int = 8      # GELU table address width
    prob_bits: int = 16    # exp table of QD attention
    ln_r_bits: int = 16    # LayerNorm reciprocal: significant bits at the largest possible variance
    weight_bits: int = 8   # stem and classifier weights
    acc_bits: int = 48     # widest accumulator of an affine kernel (one DSP48)
    calib_quantile: float = 0.9999   # range of a tensor = this quantile of |x| (1.0: the maximum)


# --------------------------------------------------------------------------- float parameters
def int_fmt(max_abs: int) -> Fmt:
    """The format of an integer count in [-max_abs, max_abs] (popcounts, sums)."""
    return Fmt(int(max_abs).bit_length() + 1, 0)


def _np(t) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def bn_affine(m):
    """Eval-mode TokenBatchNorm as (scale, shift)."""
    s = _np(m.weight) / np.sqrt(_np(m.running_var) + m.eps)
    return s, _np(m.bias) - _np(m.running_mean) * s


def binary_weight(m) -> np.ndarray:
    with torch.no_grad():
        w = m.binary_weight()
    w = w.detach().cpu().numpy()
    if not np.all(np.abs(w) == 1):
        raise ValueError(f"binary layer weights are not +-1 after quantisation ({type(m).__name__})")
    return w.astype(np.int8)


# --------------------------------------------------------------------------- calibration
@torch.no_grad()
def calibrate(model, images: torch.Tensor, batch: int = 256, quantile: float = 1.0) -> dict:
    """The range of every quantisation point, from forward hooks: max |value|
    (``quantile`` = 1), or the largest per-batch ``quantile`` of |value|, which
    lets rare outliers saturate in exchange for finer steps everywhere else."""
    from model.layers import RPReLU
    stats: dict = {}

    def upd(key, v):
        a = v.detach().abs().flatten()
        if quantile >= 1.0 or a.numel() < 2:
            m = float(a.max())
        else:
            # the k-th smallest is the (n - k + 1)-th largest: topk of a few values is ~20x faster
            # than kthvalue over the whole tensor, and the same number
            k = max(1, min(a.numel(), math.ceil(quantile * a.numel())))
            m = float(a.topk(a.numel() - k + 1).values[-1])
        stats[key] = max(stats.get(key, 0.0), m)

    def hook(name):
        def fn(mod, inp, out):
            if isinstance(out, torch.Tensor):
                upd(name + ":out", out)
            if inp and isinstance(inp[0], torch.Tensor):
                upd(name + ":in", inp[0])
            if isinstance(mod, RPReLU):
                upd(name + ":z", inp[0] - mod.move1)
            if name == "stem.norm":
                upd("stem.gelu:out", F.gelu(out))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    model.eval()
    try:
        for i in range(0, len(images), batch):
            model(images[i:i + batch])
    finally:
        for h in handles:
            h.remove()
    return stats


def calibration_stats(model, images_u8: torch.Tensor, mean, std, quantile: float) -> dict:
    """``calibrate`` on uint8 images, normalised as the model was trained."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return calibrate(model, (images_u8.float() / 255.0 - mean_t) / std_t, quantile=quantile)


# The shift branches of a block, in the order the graph emits them (hw.graph), and the divisor of
# each box filter, folded into its LayerScale multiplier: BHViT's circular shifts, BinaryViT's
# zero-padded average pools (1x3, 3x1, 1x5, 5x1; the channel mixes move values, divisor 1).
SHIFT_BRANCHES = {"bhvit": ("h1", "w1", "ch1", "h2", "w2", "ch2"), "binaryvit": ("h3", "w3", "h5", "w5")}
SHIFT_DIVISORS = {"h1": 3, "w1": 3, "ch1": 1, "h2": 5, "w2": 5, "ch2": 1, "h3": 3, "w3": 3, "h5": 5, "w5": 5}


# --------------------------------------------------------------------------- the network
class IntNet:
    """Integer parameters (``self.p``), formats (``self.fmt``) and the executor."""

    def __init__(self, cfg, spec: QuantSpec, params: dict, fmts: dict, norm_mean, norm_std):
        self.cfg, self.spec, self.p, self.fmt = cfg, spec, params, fmts
        self.norm_mean, self.norm_std = norm_mean, norm_std
        self.trace: dict | None = None   # name -> integer output, when set to a dict

    # ------------------------------------------------------------------ folding
    @classmethod
    def from_model(cls, model, calib_images_u8: torch.Tensor, mean, std, spec: QuantSpec | None = None,
                   stats: dict | None = None):
        """Fold ``model``; ``stats``: the ranges ``calibrate`` found on these images at this
        spec's quantile, when the caller has them already (folds at several widths)."""
        from .support import check_supported
        check_supported(model.cfg)
        spec = spec or QuantSpec()
        if stats is None:
            stats = calibration_stats(model, calib_images_u8, mean, std, spec.calib_quantile)
        net = cls(model.cfg, spec, {}, {}, tuple(mean), tuple(std))
        _Folder(net, model, stats).fold()
        return net

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        path = Path(path)
        arrays, meta = {}, {}
        for name, d in self.p.items():
            meta[name] = {}
            for k, v in d.items():
                if isinstance(v, np.ndarray):
                    arrays[f"{name}|{k}"] = v
                    meta[name][k] = "@array"
                elif isinstance(v, list) and v and isinstance(v[0], np.ndarray):
                    for i, a in enumerate(v):
                        arrays[f"{name}|{k}|{i}"] = a
                    meta[name][k] = f"@list{len(v)}"
                else:
                    meta[name][k] = v
        header = dict(cfg=self.cfg.to_dict(), spec=asdict(self.spec), params=meta,
                      fmts={k: f.to_dict() for k, f in self.fmt.items()},
                      norm_mean=self.norm_mean, norm_std=self.norm_std)
        from model.checkpoint import atomic_write_bytes
        import io
        buf = io.BytesIO()
        np.savez_compressed(buf, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
        atomic_write_bytes(path, lambda fh: fh.write(buf.getvalue()))

    @classmethod
    def load(cls, path):
        from model.config import ViTConfig
        path = Path(path)
        if not path.exists():
            raise IntNetError(f"integer model {path} does not exist. Create it with "
                              "'make golden' (python -m hw.golden --ckpt ...).")
        try:
            z = np.load(path)
            header = json.loads(bytes(z["__header__"]).decode())
        except Exception as exc:  # truncated zip, not an npz, no header, bad JSON
            raise IntNetError(f"integer model {path} is corrupted or not an integer model "
                              f"({type(exc).__name__}: {str(exc)[:160]}). Re-create it with 'make golden'.") from None
        params = {}
        for name, d in header["params"].items():
            params[name] = {}
            for k, v in d.items():
                if v == "@array":
                    params[name][k] = z[f"{name}|{k}"]
                elif isinstance(v, str) and v.startswith("@list"):
                    params[name][k] = [z[f"{name}|{k}|{i}"] for i in range(int(v[5:]))]
                else:
                    params[name][k] = v
        return cls(ViTConfig.from_dict(header["cfg"]), QuantSpec(**header["spec"]), params,
                   {k: Fmt(**f) for k, f in header["fmts"].items()},
                   tuple(header["norm_mean"]), tuple(header["norm_std"]))

    # ------------------------------------------------------------------ execution
    @property
    def graph(self):
        """The network as a dataflow graph of kernel nodes (:mod:`hw.graph`)."""
        if getattr(self, "_graph", None) is None:
            from .graph import build_graph
            self._graph = build_graph(self)
        return self._graph

    def forward(self, img_u8) -> np.ndarray:
        """uint8 images (B, C, H, W) -> integer logits (B, classes).

        The images enter the accelerator pixel by pixel, channels last, so the
        graph's input is NHWC; every kernel runs on int64 with its op's golden model (:mod:`hw.ops`)."""
        from .execute import run
        x = np.asarray(img_u8).transpose(0, 2, 3, 1)
        return run(self.graph, x, self.trace)

    # ------------------------------------------------------------------ reporting
    def formats_table(self):
        return {k: str(f) for k, f in sorted(self.fmt.items())}


class _Folder:
    """Builds ``net.p`` / ``net.fmt`` from a float model and calibration ranges."""

    def __init__(self, net: IntNet, model, stats: dict):
        self.net, self.model, self.stats, self.spec = net, model, stats, net.spec
        self.mods = dict(model.named_modules())

    # -- formats
    def fmt(self, key: str, stat: str, bits: int | None = None) -> Fmt:
        bits = bits or self.spec.act_bits
        if stat not in self.stats:
            raise KeyError(f"no calibration range for '{stat}'")
        f = Fmt(bits, frac_for_range(self.stats[stat], bits))
        self.net.fmt[key] = f
        return f

    # -- parameter builders
    def affine(self, name, ins, bias, out: Fmt):
        """ins: list of (input Fmt, real per-channel multiplier)."""
        mb = self.spec.mult_bits
        mults = [np.atleast_1d(np.asarray(mult, dtype=np.float64)) for _, mult in ins]
        Ms = [min(mult_frac(m, mb), 24) for m in mults]
        bias = np.asarray(bias, dtype=np.float64)
        # The accumulator must fit acc_bits (a DSP48 holds 48): give up fraction
        # bits of every multiplier together until the worst case fits.
        for _ in range(64):
            fracs = [fin.frac + M for (fin, _), M in zip(ins, Ms)]
            acc = max(fracs)
            ms = [np.floor(m * 2.0 ** M + 0.5).astype(np.int64) for m, M in zip(mults, Ms)]
            b = np.floor(bias * 2.0 ** acc + 0.5).astype(np.int64)
            worst = sum(float(np.abs(m).max(initial=0)) * 2.0 ** (fin.bits - 1 + acc - f)
                        for (fin, _), m, f in zip(ins, ms, fracs)) + float(np.abs(b).max(initial=0))
            if worst < 2.0 ** (self.spec.acc_bits - 1):
                break
            Ms = [M - 1 for M in Ms]
        else:
            raise ValueError(f"{name}: no multiplier precision keeps the accumulator within "
                             f"{self.spec.acc_bits} bits")
        ls = [acc - f for f in fracs]
        self.net.p[name] = dict(m=ms, l=ls, bias=np.atleast_1d(b), shift=acc - out.frac, bits=out.bits)
        self.net.fmt[name] = out
        return out

    def rprelu(self, name, mod, zf: Fmt, out: Fmt, extra_bias=None):
        slope = _np(mod.prelu.weight).reshape(-1)
        c = _np(mod.move2).shape[0]
        if slope.size == 1:
            slope = np.full(c, slope[0])
        M = min(mult_frac(np.concatenate([slope, [1.0]]), self.spec.mult_bits), 24)
        bias = _np(mod.move2) if extra_bias is None else _np(mod.move2) + extra_bias
        self.net.p[name] = dict(m_pos=np.full(c, 1 << M, dtype=np.int64),
                                m_neg=np.floor(slope * 2.0 ** M + 0.5).astype(np.int64),
                                bias=np.floor(bias * 2.0 ** (zf.frac + M) + 0.5).astype(np.int64),
                                shift=zf.frac + M - out.frac, bits=out.bits)
        self.net.fmt[name] = out
        return out

    def threshold(self, name, mod, fin: Fmt):
        move = _np(mod.move) if getattr(mod, "move", None) is not None else np.zeros(1)
        self.net.p[name] = dict(t=np.ceil(-move * 2.0 ** fin.frac).astype(np.int64))

    def unit(self, name, fin: Fmt, sc_mult: float, sc_frac_extra: int = 0):
        """A BinaryResidualLinear: threshold, weights, pre-activation affine, RPReLU."""
        mod = self.mods[name]
        self.threshold(name + ".sign", mod.sign, fin)
        self.net.p[name + ".linear"] = dict(w=binary_weight(mod.linear))
        s, b = bn_affine(mod.norm)
        alpha = _np(mod.linear.alpha())
        zf = self.fmt(name + ".z", name + ".act:z", self.spec.pre_bits)
        gamma = _np(mod.act.move1)
        self.affine(name + ".pre", [(int_fmt(mod.cin), alpha * s), (fin, np.full(mod.cout, sc_mult))], b - gamma, zf)
        out = self.fmt(name + ".out", name + ".act:out")
        return self.rprelu(name + ".act", mod.act, zf, out)

    # -- the network
    def fold(self):
        m, cfg, spec = self.model, self.model.cfg, self.spec
        mean = np.asarray(self.net.norm_mean, dtype=np.float64)
        std = np.asarray(self.net.norm_std, dtype=np.float64)
        # stem: conv on (p/255 - mean)/std, then BN -> one integer conv + affine
        w = _np(m.stem.proj.weight)                          # (C0, Cin, p, p)
        bconv = _np(m.stem.proj.bias)
        s_bn, b_bn = bn_affine(m.stem.norm)
        w_eff = w / (255.0 * std.reshape(1, -1, 1, 1))
        b_eff = bconv - (w * (mean / std).reshape(1, -1, 1, 1)).sum(axis=(1, 2, 3))
        qmax = (1 << (spec.weight_bits - 1)) - 1
        wscale = np.abs(w_eff).max(axis=(1, 2, 3)) / qmax
        wscale[wscale == 0] = 1.0
        w_int = np.floor(w_eff / wscale.reshape(-1, 1, 1, 1) + 0.5).astype(np.int64)
        self.net.p["stem.conv"] = dict(w=w_int)
        # with GELU the affine feeds the GELU table (lut_bits of address); without, the position add
        zf = self.fmt("stem.z", "stem.norm:out", spec.lut_bits if cfg.stem_gelu else None)
        self.affine("stem.affine", [(int_fmt(int(np.abs(w_int).sum(axis=(1, 2, 3)).max()) * 255), s_bn * wscale)], s_bn * b_eff + b_bn, zf)
        gf = zf
        if cfg.stem_gelu:
            gf = self.fmt("stem.gelu", "stem.gelu:out")
            codes = np.arange(-(1 << (spec.lut_bits - 1)), 1 << (spec.lut_bits - 1), dtype=np.float64)
            real = codes * 2.0 ** -zf.frac
            gelu = 0.5 * real * (1.0 + np.vectorize(math.erf)(real / math.sqrt(2.0)))
            table = np.clip(np.floor(gelu * 2.0 ** gf.frac + 0.5), gf.lo, gf.hi).astype(np.int64)
            self.net.p["stem.gelu"] = dict(table=table)
        tf = self.fmt("stem.out", "stem:out")
        pos = _np(m.stem.pos)[0]                             # (C, H, W) -> tokens (N, C)
        pos = pos.reshape(pos.shape[0], -1).T
        self.affine("stem.pos", [(gf, 1.0)], pos, tf)
        for s in range(len(cfg.dims)):
            for i in range(cfg.depths[s]):
                tf = self.block(f"stages.{s}.{i}", s, tf)
            if s < len(cfg.dims) - 1:
                tf = self.downsample(f"downsamples.{s}", tf)
        # head
        s_bn, b_bn = bn_affine(m.head.norm)
        hf = self.fmt("head.norm", "head.norm:out")
        self.affine("head.norm", [(tf, s_bn)], b_bn, hf)
        n_tok = cfg.stage_sizes()[-1] ** 2
        wf = _np(m.head.fc.weight) / n_tok                   # the mean over tokens
        fw = frac_for_range(float(np.abs(wf).max()), spec.weight_bits)
        self.net.p["head.fc"] = dict(
            w=np.floor(wf * 2.0 ** fw + 0.5).astype(np.int64),
            bias=np.floor(_np(m.head.fc.bias) * 2.0 ** (fw + hf.frac) + 0.5).astype(np.int64))
        self.net.fmt["head.logits"] = Fmt(64, fw + hf.frac)

    def block(self, pre, s, tf: Fmt) -> Fmt:
        cfg, blk = self.model.cfg, self.mods[pre]
        s1, b1 = bn_affine(blk.norm1)
        n1 = self.affine(pre + ".norm1", [(tf, s1)], b1, self.fmt(pre + ".norm1", pre + ".norm1:out"))
        yf = self.fmt(pre + ".y", pre + ".norm2:in")
        if cfg.arch == "binaryvit":
            self.global_attention(pre, s, tf, n1, yf)
        elif cfg.mixers[s] == "msgdc":
            mx = self.mods[pre + ".mixer"]
            self.threshold(pre + ".mixer.sign", mx.sign, n1)
            outs = []
            for j, conv in enumerate(mx.convs):
                name = f"{pre}.mixer.convs.{j}"
                self.net.p[name] = dict(w=binary_weight(conv))
                act = mx.acts[j]
                zf = self.fmt(name + ".z", f"{pre}.mixer.acts.{j}:z", self.spec.pre_bits)
                ins = [(int_fmt(conv.weight[0].numel()), _np(conv.alpha()))]
                ins.append((n1, np.ones(cfg.dims[s])))
                bias = (_np(conv.out_bias) if conv.out_bias is not None else 0) - _np(act.move1)
                self.affine(name + ".pre", ins, bias, zf)
                of = self.fmt(f"{pre}.mixer.acts.{j}", f"{pre}.mixer.acts.{j}:out")
                outs.append(self.rprelu(f"{pre}.mixer.acts.{j}", act, zf, of))
            sn, bn = bn_affine(mx.norm)
            self.affine(pre + ".y", [(tf, 1.0)] + [(o, sn) for o in outs], bn, yf)
        else:
            self.msmha(pre, s, tf, n1, yf)
        s2, b2 = bn_affine(blk.norm2)
        n2 = self.affine(pre + ".norm2", [(yf, s2)], b2, self.fmt(pre + ".norm2", pre + ".norm2:out"))
        r = cfg.mlp_ratios[s]
        u = self.unit(pre + ".mlp.fc1", n2, 1.0)
        v = self.unit(pre + ".mlp.fc2", u, 1.0 / r)
        ls = blk.mlp.ls
        ins = [(yf, np.ones(cfg.dims[s])), (v, _np(ls.alpha))]
        bias = _np(ls.move).copy()
        if blk.shifts is not None:
            sh = blk.shifts.ls
            for name in SHIFT_BRANCHES[cfg.arch]:
                ins.append((n2, _np(sh[name].alpha) / SHIFT_DIVISORS[name]))
                bias = bias + _np(sh[name].move)
        return self.affine(pre + ".out", ins, bias, self.fmt(pre + ".out", pre + ":out"))

    def keys_values(self, at, att, q: Fmt, src: Fmt) -> tuple:
        """The k and v units on ``src`` and the signs of q, k and v (an attention mixer's)."""
        kf = self.unit(at + ".k", src, 1.0)
        v = self.unit(at + ".v", src, 1.0)
        self.threshold(at + ".q_sign", att.q_sign, q)
        self.threshold(at + ".k_sign", att.k_sign, kf)
        self.threshold(at + ".v_sign", att.v_sign, v)
        return kf, v

    def context(self, at, att, ctx: Fmt, ctx_mult, q: Fmt, kf: Fmt, v: Fmt) -> Fmt:
        """RPReLU(BN(A V) + q + k + v): the attention's integer context (format ``ctx``; its
        multiplier ``ctx_mult(bn_scale)``, the BN scale over QD's levels or times BinaryViT's c)
        with the full-precision q, k and v."""
        sc, bc = bn_affine(att.context_norm)
        zf = self.fmt(at + ".context.z", at + ".context_act:z", self.spec.pre_bits)
        ones = np.ones(sc.shape[0])
        self.affine(at + ".context", [(ctx, ctx_mult(sc)), (q, ones), (kf, ones), (v, ones)],
                    bc - _np(att.context_act.move1), zf)
        return self.rprelu(at + ".context_act", att.context_act, zf, self.fmt(at + ".context_act", at + ".context_act:out"))

    def global_attention(self, pre, s, tf, n1, yf):
        """BinaryViT's mixer: queries from every token, keys and values from r x r average-pooled
        tokens (r = kv_reduction), its attention quantiser c clip(round(A / c), 0, 1) as one QD
        level at A >= c / 2, context RPReLU(BN(A V) + q + up(k) + up(v)), output projection."""
        cfg = self.model.cfg
        at = pre + ".mixer.attention"
        att = self.mods[at]
        r, C = cfg.kv_reduction[s], cfg.dims[s]
        q = self.unit(at + ".q", n1, 1.0)
        src = n1
        if r > 1:
            # the r x r sum of n1 (TokenPool) / r^2, in the reduce unit's input format
            pf = self.affine(at + ".pool", [(n1, np.full(C, 1.0 / (r * r)))], np.zeros(C),
                             self.fmt(at + ".pool", at + ".reduce:in"))
            src = self.unit(at + ".reduce", pf, 1.0)
        kf, v = self.keys_values(at, att, q, src)
        c = float(att.clip.detach()) if att.clip is not None else 0.0
        den = 1 << (self.spec.prob_bits + 4)
        # level = [A >= c / 2]; a clip c <= 0 keeps no key (round(A / c) <= 0), i.e. num1 > den
        num1 = max(int(round(c / 2 * den)), 1) if c > 0 else den + 1
        self.net.p[at + ".qd"] = dict(table=K.exp_table(C // cfg.heads[s], self.spec.prob_bits), levels=1,
                                      num1=num1, step=0, den=den)
        n_keys = (cfg.stage_sizes()[s] // r) ** 2
        cf = self.context(at, att, int_fmt(n_keys), lambda sc: sc * max(c, 0.0), q, kf, v)
        ones = np.ones(C)
        pr = self.unit(pre + ".mixer.proj", cf, 1.0)
        ls = self.mods[pre + ".mixer.ls"]
        self.affine(pre + ".y", [(tf, ones), (pr, _np(ls.alpha))], _np(ls.move), yf)

    def msmha(self, pre, s, tf, n1, yf):
        cfg = self.model.cfg
        at = pre + ".mixer.attention"
        att = self.mods[at]
        k = cfg.pool_kernel[s]
        a = _np(att.high.a)
        # pooled tokens share n1's format so that they concatenate with the window tokens
        self.affine(at + ".high", [(n1, a), (n1, (1 - a) / (k * k))], np.zeros(cfg.dims[s]), n1)
        ln = att.token_norm
        C = cfg.dims[s]
        tnf = self.fmt(at + ".token_norm", at + ".token_norm:out")
        gamma = _np(ln.weight) * math.sqrt(C)
        M = min(mult_frac(gamma, self.spec.mult_bits), 24)
        # inv = 2**R // isqrt(V) keeps ln_r_bits significant bits even at the
        # largest V the input format allows (C**3 * 2**(2 * bits)); smaller
        # variances get more.  |D * inv| <= 2**R, so the product with the
        # multiplier must stay inside int64.
        v_max_bits = math.ceil(1.5 * math.log2(C)) + n1.bits
        R = min(self.spec.ln_r_bits + v_max_bits, 62 - self.spec.mult_bits)
        self.net.p[at + ".token_norm"] = dict(
            gmul=np.floor(gamma * 2.0 ** M + 0.5).astype(np.int64),
            bias=np.floor(_np(ln.bias) * 2.0 ** (R + M) + 0.5).astype(np.int64),
            eps=int(round(ln.eps * C ** 3 * 2.0 ** (2 * n1.frac))), r_bits=R, shift=R + M - tnf.frac,
            bits=tnf.bits)
        q = self.unit(at + ".q", tnf, 1.0)
        kf, v = self.keys_values(at, att, q, tnf)
        levels = att.attn_quant.levels
        self.net.p[at + ".qd"] = dict(table=K.exp_table(att.head_dim, self.spec.prob_bits), levels=levels)
        ones = np.ones(C)
        n_tok = cfg.window[s] ** 2 + (cfg.stage_sizes()[s] // k) ** 2
        cf = self.context(at, att, int_fmt(levels * n_tok), lambda sc: sc / levels, q, kf, v)
        n_win = (cfg.stage_sizes()[s] // cfg.window[s]) ** 2
        p = _np(att.p)
        xa = self.fmt(at + ".blend", at + ":out")
        self.affine(at + ".blend", [(cf, p), (cf, (1 - p) / n_win)], np.zeros(C), xa)
        pr = self.unit(pre + ".mixer.proj", xa, 1.0)
        ls = self.mods[pre + ".mixer.ls"]
        self.affine(pre + ".y", [(tf, ones), (pr, _np(ls.alpha))], _np(ls.move), yf)

    def downsample(self, pre, tf) -> Fmt:
        ds = self.mods[pre]
        s0, b0 = bn_affine(ds.norm0)
        xn = self.affine(pre + ".norm0", [(tf, s0)], b0, self.fmt(pre + ".norm0", pre + ".norm0:out"))
        if not ds.binary:
            return self.fp_downsample(pre, ds, xn)
        self.threshold(pre + ".sign", ds.sign, xn)
        self.net.p[pre + ".proj"] = dict(w=binary_weight(ds.proj))
        s, b = bn_affine(ds.norm)
        zf = self.fmt(pre + ".z", pre + ".act:z", self.spec.pre_bits)
        cout = s.shape[0]
        self.affine(pre + ".pre", [(int_fmt(ds.proj.weight[0].numel()), _np(ds.proj.alpha()) * s), (xn, np.full(cout, 0.25))],
                    b - _np(ds.act.move1), zf)
        out = self.fmt(pre + ".out", pre + ":out")
        return self.rprelu(pre + ".act", ds.act, zf, out, extra_bias=_np(ds.pos)[0])

    def fp_downsample(self, pre, ds, xn: Fmt) -> Fmt:
        """The full-precision 2x2 stride-2 convolution as the gather of each 2x2 patch into one
        token (PatchConcat) times an integer matrix (IntLinear, 8-bit weights with one scale per
        output channel, as the stem's), then BN and the position embedding in one affine."""
        w = _np(ds.proj.weight)                                  # (2C, C, 2, 2)
        cout = w.shape[0]
        # PatchConcat orders a patch's channels as (dy * 2 + dx) * C + c
        w2 = w.transpose(0, 2, 3, 1).reshape(cout, -1)
        qmax = (1 << (self.spec.weight_bits - 1)) - 1
        wscale = np.abs(w2).max(axis=1) / qmax
        wscale[wscale == 0] = 1.0
        w_int = np.floor(w2 / wscale[:, None] + 0.5).astype(np.int64)
        self.net.p[pre + ".proj"] = dict(w=w_int, bias=np.zeros(cout, dtype=np.int64))
        s, b = bn_affine(ds.norm)
        acc = Fmt(int_fmt(int(np.abs(w_int).sum(axis=1).max()) << (xn.bits - 1)).bits, xn.frac)
        return self.affine(pre + ".norm", [(acc, s * wscale)], b + _np(ds.pos)[0], self.fmt(pre + ".out", pre + ":out"))
