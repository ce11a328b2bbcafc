"""The blocks of BHViT and BinaryViT.

Between blocks the state is a map ``(B, C, H, W)``; inside, token mixers and
MLPs work on channel-last tokens ``(B, N, C)``.  Block numbering and formulas
follow ../shared/spec/bhvit-architecture.md.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ViTConfig
from .layers import (BinaryActivation, BinaryConv2d, BinaryLinear, LayerScale, LSQAttentionQuant,
                     QDAttentionQuant, RPReLU, channel_mix_shift, circular_box, make_norm,
                     map_to_tokens, pool_channels, repeat_channels, tokens_to_map)


# --------------------------------------------------------------------------- factories
def make_sign(cfg: ViTConfig, channels: int, channel_dim: int = -1) -> nn.Module:
    """The binariser in front of a binary layer: learnable bias + sign.  In a
    float network (teacher) only the bias remains."""
    if cfg.binary:
        return BinaryActivation(channels, channel_dim, learnable_scale=cfg.act_scale)
    return FloatBias(channels, channel_dim)


def make_linear(cfg: ViTConfig, cin: int, cout: int) -> nn.Module:
    if cfg.binary:
        return BinaryLinear(cin, cout, row_centering=cfg.row_centering)
    return nn.Linear(cin, cout, bias=False)


def make_conv(cfg: ViTConfig, cin: int, cout: int, k: int, stride: int = 1, padding=0,
              dilation: int = 1, groups: int = 1, bias: bool = False) -> nn.Module:
    if cfg.binary:
        return BinaryConv2d(cin, cout, k, stride, padding, dilation, groups, bias=bias,
                            row_centering=cfg.row_centering)
    return nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias=bias)


class FloatBias(nn.Module):
    def __init__(self, channels: int, channel_dim: int = -1):
        super().__init__()
        self.channel_dim = channel_dim
        self.move = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return x + self.move.view(shape)


# --------------------------------------------------------------------------- binary linear unit
class BinaryResidualLinear(nn.Module):
    """RPReLU(BN(BinLinear(x + b)) + shortcut(x)) - the unit Q/K/V, the output
    projection and both MLP layers are made of.  The shortcut repeats channels
    (expansion), averages channel groups (reduction) or is the identity."""

    def __init__(self, cfg: ViTConfig, cin: int, cout: int):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.sign = make_sign(cfg, cin)
        self.linear = make_linear(cfg, cin, cout)
        self.norm = make_norm(cfg.norm, cout)
        self.act = RPReLU(cout)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.cout > self.cin:
            return repeat_channels(x, self.cout // self.cin)
        if self.cout < self.cin:
            return pool_channels(x, self.cin // self.cout)
        return x

    def pre_act(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(self.sign(x))) + self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pre_act(x))


class BinaryMLP(nn.Module):
    """u = unit(C -> rC) with repeat shortcut; out = LS(unit(rC -> C)) with the
    channel-pool shortcut."""

    def __init__(self, cfg: ViTConfig, dim: int, ratio: int):
        super().__init__()
        self.fc1 = BinaryResidualLinear(cfg, dim, dim * ratio)
        self.fc2 = BinaryResidualLinear(cfg, dim * ratio, dim)
        self.ls = LayerScale(dim, cfg.layerscale_init)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.ls(self.fc2(self.fc1(h)))


# --------------------------------------------------------------------------- MSGDC
class MSGDC(nn.Module):
    """Multi-scale grouped dilated convolution token mixer (BHViT stages 1-2)."""

    def __init__(self, cfg: ViTConfig, dim: int):
        super().__init__()
        self.input_in_rprelu = cfg.msgdc_input_in_rprelu
        self.sign = make_sign(cfg, dim, channel_dim=1)
        self.convs = nn.ModuleList(
            make_conv(cfg, dim, dim, 3, 1, padding=d, dilation=d, groups=cfg.conv_groups, bias=True)
            for d in cfg.dilations)
        self.acts = nn.ModuleList(RPReLU(dim) for _ in cfg.dilations)
        self.norm = make_norm(cfg.norm, dim)

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        xb = self.sign(tokens_to_map(t, h, w))
        out = 0
        for conv, act in zip(self.convs, self.acts):
            y = map_to_tokens(conv(xb))
            out = out + act(y + t if self.input_in_rprelu else y)
        return self.norm(out)


# --------------------------------------------------------------------------- MSMHA
def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * H/w * W/w, w*w, C), windows in row-major order."""
    b, c, hh, ww = x.shape
    x = x.permute(0, 2, 3, 1).reshape(b, hh // w, w, ww // w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def window_reverse(win: torch.Tensor, w: int, hh: int, ww: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: -> (B, C, H, W)."""
    c = win.shape[-1]
    x = win.reshape(-1, hh // w, ww // w, w, w, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(-1, c, hh, ww)


class HighScaleTokens(nn.Module):
    """Per-channel blend a*MaxPool + (1-a)*AvgPool with kernel = stride = k."""

    def __init__(self, dim: int, k: int, pad_quirk: bool):
        super().__init__()
        self.k = k
        self.pad = k // 2 if pad_quirk else 0
        self.a = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, P, C)
        mx = F.max_pool2d(x, self.k, self.k, self.pad)
        av = F.avg_pool2d(x, self.k, self.k, self.pad, count_include_pad=True)
        return map_to_tokens(mx) * self.a + map_to_tokens(av) * (1 - self.a)


class MSMHA(nn.Module):
    """Multi-scale multi-head attention (BHViT stages 3-4)."""

    def __init__(self, cfg: ViTConfig, dim: int, heads: int, window: int, pool_k: int):
        super().__init__()
        self.dim, self.heads, self.window = dim, heads, window
        self.head_dim = dim // heads
        self.high = HighScaleTokens(dim, pool_k, cfg.pool_pad_quirk)
        self.token_norm = make_norm(cfg.attn_norm, dim)
        self.q = BinaryResidualLinear(cfg, dim, dim)
        self.k = BinaryResidualLinear(cfg, dim, dim)
        self.v = BinaryResidualLinear(cfg, dim, dim)
        self.q_sign = make_sign(cfg, dim)
        self.k_sign = make_sign(cfg, dim)
        self.v_sign = make_sign(cfg, dim)
        if cfg.attn_quant == "qd":
            self.attn_quant = QDAttentionQuant(cfg.qd_bits)
        elif cfg.attn_quant == "lsq":
            self.attn_quant = LSQAttentionQuant(heads)
        else:
            raise ValueError("BHViT supports attn_quant 'qd' or 'lsq'")
        if not cfg.binary:
            self.attn_quant = nn.Identity()
        self.context_norm = make_norm(cfg.norm, dim)
        self.context_act = RPReLU(dim)
        self.p = nn.Parameter(torch.full((dim,), 0.5))

    def tokens(self, x: torch.Tensor):
        """Window tokens of every window, each followed by all pooled tokens."""
        win = window_partition(x, self.window)                      # (B*nW, w*w, C)
        pooled = self.high(x)                                       # (B, P, C)
        n_win = win.shape[0] // x.shape[0]
        pooled = pooled.repeat_interleave(n_win, dim=0)             # (B*nW, P, C)
        return torch.cat([win, pooled], dim=1), win.shape[1]

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b = t.shape[0]
        x = tokens_to_map(t, h, w)
        tok, n_local = self.tokens(x)
        tok = self.token_norm(tok)
        q, k, v = self.q(tok), self.k(tok), self.v(tok)
        qb = self.split_heads(self.q_sign(q))
        kb = self.split_heads(self.k_sign(k))
        vb = self.split_heads(self.v_sign(v))
        scores = qb @ kb.transpose(-1, -2) / math.sqrt(self.head_dim)
        attn = self.attn_quant(scores.softmax(dim=-1))
        ctx = (attn @ vb).transpose(1, 2).reshape(tok.shape)
        ctx = self.context_act(self.context_norm(ctx) + q + k + v)
        local, high = ctx[:, :n_local], ctx[:, n_local:]
        x_local = window_reverse(local, self.window, h, w)
        n_win = local.shape[0] // b
        hp = high.shape[1]
        side = int(round(math.sqrt(hp)))
        high = high.reshape(b, n_win, side, side, self.dim).mean(1).permute(0, 3, 1, 2)
        x_high = F.interpolate(high, size=(h, w), mode="nearest")
        p = self.p.view(1, -1, 1, 1)
        return map_to_tokens(x_local * p + x_high * (1 - p))


class AttentionMixer(nn.Module):
    """Attention followed by the output projection LS(RPReLU(BN(BinLinear(x+b)) + x))."""

    def __init__(self, attention: nn.Module, cfg: ViTConfig, dim: int):
        super().__init__()
        self.attention = attention
        self.proj = BinaryResidualLinear(cfg, dim, dim)
        self.ls = LayerScale(dim, cfg.layerscale_init)

    def forward(self, t, h, w):
        return self.ls(self.proj(self.attention(t, h, w)))


class ReducedKVAttention(nn.Module):
    """BinaryViT global attention: K/V from average-pooled tokens (reduction r)."""

    def __init__(self, cfg: ViTConfig, dim: int, heads: int, r: int):
        super().__init__()
        self.dim, self.heads, self.r = dim, heads, r
        self.head_dim = dim // heads
        self.reduce = BinaryResidualLinear(cfg, dim, dim) if r > 1 else None
        self.q = BinaryResidualLinear(cfg, dim, dim)
        self.k = BinaryResidualLinear(cfg, dim, dim)
        self.v = BinaryResidualLinear(cfg, dim, dim)
        self.q_sign, self.k_sign, self.v_sign = (make_sign(cfg, dim) for _ in range(3))
        self.clip = nn.Parameter(torch.tensor(0.005)) if cfg.binary else None
        self.context_norm = make_norm(cfg.norm, dim)
        self.context_act = RPReLU(dim)

    def split_heads(self, t):
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, t, h, w):
        q = self.q(t)
        kv_in = t
        if self.reduce is not None:
            pooled = F.avg_pool2d(tokens_to_map(t, h, w), self.r, self.r)
            kv_in = self.reduce(map_to_tokens(pooled))
        k, v = self.k(kv_in), self.v(kv_in)
        qb, kb, vb = self.split_heads(self.q_sign(q)), self.split_heads(self.k_sign(k)), self.split_heads(self.v_sign(v))
        attn = (qb @ kb.transpose(-1, -2) / math.sqrt(self.head_dim)).softmax(-1)
        if self.clip is not None:  # BiT: c * clip(round(P / c), 0, 1), straight-through round
            y = attn / self.clip
            y = (y.round() - y).detach() + y
            attn = y.clamp(0, 1) * self.clip
        ctx = (attn @ vb).transpose(1, 2).reshape(t.shape)
        if self.reduce is not None:
            up = lambda z: map_to_tokens(F.interpolate(tokens_to_map(z, h // self.r, w // self.r),
                                                       size=(h, w), mode="nearest"))
            k, v = up(k), up(v)
        return self.context_act(self.context_norm(ctx) + q + k + v)


# --------------------------------------------------------------------------- shift branches
class ShiftBranches(nn.Module):
    """BHViT's six shift branches (box filters along H and W with reach 1, 2 and
    channel-mix shifts by 1, 2), or BinaryViT's four zero-padded average-pool
    branches (1xk and kx1, k = 3, 5); each with its own LayerScale (init 0)."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        self.kind = kind
        names = (["h1", "w1", "ch1", "h2", "w2", "ch2"] if kind == "bhvit" else ["h3", "w3", "h5", "w5"])
        self.ls = nn.ModuleDict({n: LayerScale(dim, 0.0) for n in names})

    def branch(self, name: str, m: torch.Tensor) -> torch.Tensor:
        if self.kind == "bhvit":
            reach = int(name[-1])
            if name.startswith("ch"):
                return channel_mix_shift(m, reach)
            return circular_box(m, reach, dim=2 if name[0] == "h" else 3)
        k = int(name[-1])
        kernel = (k, 1) if name[0] == "h" else (1, k)
        pad = (k // 2, 0) if name[0] == "h" else (0, k // 2)
        return F.avg_pool2d(m, kernel, 1, pad, count_include_pad=True)

    def forward(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        m = tokens_to_map(t, h, w)
        return sum(ls(map_to_tokens(self.branch(n, m))) for n, ls in self.ls.items())


# --------------------------------------------------------------------------- the block
class Block(nn.Module):
    """y = x + mixer(norm(x)); h = norm(y); out = MLP(h) + y + sum_i LS_i(shift_i(h))."""

    def __init__(self, cfg: ViTConfig, stage: int):
        super().__init__()
        dim = cfg.dims[stage]
        self.norm1 = make_norm(cfg.norm, dim)
        if cfg.arch == "bhvit" and cfg.mixers[stage] == "msgdc":
            self.mixer = MSGDC(cfg, dim)
        elif cfg.arch == "bhvit" and cfg.mixers[stage] == "msmha":
            self.mixer = AttentionMixer(MSMHA(cfg, dim, cfg.heads[stage], cfg.window[stage],
                                              cfg.pool_kernel[stage]), cfg, dim)
        elif cfg.arch == "binaryvit":
            self.mixer = AttentionMixer(ReducedKVAttention(cfg, dim, cfg.heads[stage],
                                                           cfg.kv_reduction[stage]), cfg, dim)
        else:
            raise ValueError(f"unknown mixer '{cfg.mixers[stage]}' for arch '{cfg.arch}'")
        self.norm2 = make_norm(cfg.norm, dim)
        self.mlp = BinaryMLP(cfg, dim, cfg.mlp_ratios[stage])
        self.shifts = ShiftBranches(dim, cfg.arch) if cfg.shift_branches else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        t = map_to_tokens(x)
        y = t + self.mixer(self.norm1(t), h, w)
        hn = self.norm2(y)
        out = self.mlp(hn) + y
        if self.shifts is not None:
            out = out + self.shifts(hn, h, w)
        return tokens_to_map(out, h, w)


# --------------------------------------------------------------------------- stem, downsampling, head
class Stem(nn.Module):
    """Full-precision Conv p x p stride p (bias) -> norm -> GELU -> + position embedding."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        dim, s = cfg.dims[0], cfg.stage_sizes()[0]
        self.proj = nn.Conv2d(cfg.in_chans, dim, cfg.stem_patch, cfg.stem_patch)
        self.norm = make_norm(cfg.norm, dim)
        self.gelu = cfg.stem_gelu
        self.pos = nn.Parameter(torch.zeros(1, dim, s, s))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, img):
        m = self.proj(img)
        _, _, h, w = m.shape
        t = self.norm(map_to_tokens(m))
        if self.gelu:
            t = F.gelu(t)
        return tokens_to_map(t, h, w) + self.pos


class Downsample(nn.Module):
    """2x2 stride-2 patch merging, C -> 2C, + position embedding.

    fp:     norm -> Conv(C, 2C, 2, 2) -> norm
    binary: norm; main = binary Conv on (x + b) -> norm; shortcut = AvgPool 2x2
            with channels repeated x2; add; RPReLU
    """

    def __init__(self, cfg: ViTConfig, stage: int):
        super().__init__()
        cin, cout = cfg.dims[stage], cfg.dims[stage + 1]
        s = cfg.stage_sizes()[stage + 1]
        self.binary = cfg.downsample == "binary"
        self.norm0 = make_norm(cfg.norm, cin)
        if self.binary:
            self.sign = make_sign(cfg, cin, channel_dim=1)
            self.proj = make_conv(cfg, cin, cout, 2, 2)
            self.act = RPReLU(cout)
        else:
            self.proj = nn.Conv2d(cin, cout, 2, 2, bias=False)
        self.norm = make_norm(cfg.norm, cout)
        self.ratio = cout // cin
        self.pos = nn.Parameter(torch.zeros(1, s * s, cout))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x):
        _, _, h, w = x.shape
        xn = tokens_to_map(self.norm0(map_to_tokens(x)), h, w)
        if self.binary:
            y = self.norm(map_to_tokens(self.proj(self.sign(xn))))
            y = y + repeat_channels(map_to_tokens(F.avg_pool2d(xn, 2, 2)), self.ratio)
            y = self.act(y)
        else:
            y = self.norm(map_to_tokens(self.proj(xn)))
        return tokens_to_map(y + self.pos, h // 2, w // 2)


class Head(nn.Module):
    """norm -> mean over tokens -> Linear(C, classes) with bias (full precision)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm = make_norm(cfg.norm, cfg.dims[-1])
        self.fc = nn.Linear(cfg.dims[-1], cfg.num_classes)

    def forward(self, x):
        return self.fc(self.norm(map_to_tokens(x)).mean(1))
