"""PyTorch primitives of the hardware-exact form (:mod:`hw.qat`, the ops' ``torch_forward``).

Tensors are float64 holding integers below 2**53, so every forward value is the golden integer
exactly.  The straight-through estimators all have the form ``exact + (g - g.detach())``: the
forward value is the integer (adding 0.0), the gradient is g's.
"""
from __future__ import annotations

import torch

DT = torch.float64


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


def tokens_to_map(t, h, w):
    """(B, H*W, C) tokens -> (B, C, H, W) map."""
    b, n, c = t.shape
    return t.transpose(1, 2).reshape(b, c, h, w)


def map_to_tokens(m):
    """(B, C, H, W) map -> (B, H*W, C) tokens."""
    b, c, h, w = m.shape
    return m.reshape(b, c, h * w).transpose(1, 2)


def split_heads(t, heads: int):
    """(windows, tokens, heads * d) -> (windows, heads, tokens, d)"""
    bw, m, c = t.shape
    return t.reshape(bw, m, heads, c // heads).transpose(1, 2)


# ---------------------------------------------------------------------- Brevitas (QONNX form)
def int_quant(bits: int, name: str = ""):
    """Brevitas signed ``bits``-bit quantizer with scale 1 and FLOOR rounding:
    exported as ``Quant(x, scale=1, zeropt=0, bitwidth=bits, rounding_mode=FLOOR)``."""
    from brevitas.inject.enum import FloatToIntImplType, ScalingImplType
    from brevitas.nn import QuantIdentity
    from brevitas.quant import Int8ActPerTensorFloat
    lim = float(2 ** (bits - 1))
    return QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits, scaling_impl_type=ScalingImplType.CONST,
                         min_val=-lim, max_val=lim, float_to_int_impl_type=FloatToIntImplType.FLOOR,
                         return_quant_tensor=False)


def binary_act():
    from brevitas.nn import QuantIdentity
    from brevitas.quant import SignedBinaryActPerTensorConst
    return QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=False)


def shifted(x, s: int, dim: int, pad: str = "circular"):
    """x moved by s along dim: torch.roll, or with zeros coming in (pad "zero"), as
    hw.kernels.shift.shifted."""
    y = torch.roll(x, s, dim)
    if pad == "zero" and s:
        n = y.shape[dim]
        idx = torch.arange(n)
        keep = (idx >= s) if s > 0 else (idx < n + s)
        shape = [1] * y.dim()
        shape[dim] = n
        y = y * keep.view(shape).to(y.dtype)
    return y
