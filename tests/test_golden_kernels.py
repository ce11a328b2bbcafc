"""The golden integer kernels against independent float/torch definitions.

Each kernel in hw/kernels is the definition of what the hardware computes;
these tests tie that definition to the float model's operations (torch conv,
torch.roll, softmax + round) so that a wrong index, shift or rounding shows.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from hw import kernels as K
from hw.fixedpoint import Fmt, frac_for_range, quantize, rshift_round, saturate, to_float
from model.layers import channel_mix_shift, circular_box, pool_channels, repeat_channels

SETTINGS = settings(max_examples=25, deadline=None)


def pm1(rng, *shape):
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)


# --------------------------------------------------------------------------- fixed point
@given(st.integers(-10**12, 10**12), st.integers(1, 40))
def test_rshift_round_is_round_half_up(x, s):
    assert int(rshift_round(np.int64(x), s)) == math.floor(x / 2 ** s + 0.5)


@given(st.integers(-10**6, 10**6), st.integers(-20, 0))
def test_rshift_round_negative_shift_is_exact_left_shift(x, s):
    assert int(rshift_round(np.int64(x), s)) == x * 2 ** -s


def test_saturate_and_quantize_range():
    f = Fmt(8, 3)
    assert (f.lo, f.hi) == (-128, 127)
    assert np.array_equal(saturate([-1000, 5, 1000], 8), [-128, 5, 127])
    assert np.array_equal(quantize([0.0625, -0.0625, 100.0], f), [1, 0, 127])   # half up, saturate
    assert to_float(quantize(1.25, f), f) == 1.25


@given(st.floats(1e-3, 1e4), st.integers(4, 20))
def test_frac_for_range_is_the_tightest_cover(m, bits):
    f = frac_for_range(m, bits, lo=-40, hi=40)
    hi = (1 << (bits - 1)) - 1
    assert m * 2 ** f <= hi < m * 2 ** (f + 1)


# --------------------------------------------------------------------------- binary
@given(st.integers(0, 2**31 - 1), st.integers(1, 70), st.integers(1, 9))
@SETTINGS
def test_xnor_popcount_equals_pm1_product(seed, k, n):
    rng = np.random.default_rng(seed)
    x, w = pm1(rng, 3, k), pm1(rng, n, k)
    want = x.astype(np.int64) @ w.astype(np.int64).T
    assert np.array_equal(K.xnor_matmul(x, w), want)
    assert np.array_equal(K.xnor_popcount_dot(x > 0, w > 0), want)


def test_threshold_matches_sign_of_biased_value_including_zero():
    f = Fmt(8, 3)
    move = np.array([0.3, -0.5, 0.0, 0.125])
    t = np.ceil(-move * 2.0 ** f.frac).astype(np.int64)
    x = np.arange(-20, 21).reshape(-1, 1).repeat(4, 1)
    got = K.threshold(x, t)
    real = to_float(x, f) + move
    want = np.where(real >= 0, 1, -1)                       # sign(0) = +1, as Brevitas
    assert np.array_equal(got, want)
    assert got[np.argmin(np.abs(real[:, 2])), 2] == 1        # exactly zero -> +1


@pytest.mark.parametrize("dilation,groups,size,stride", [(1, 1, 5, 1), (3, 4, 8, 1), (5, 4, 7, 1),
                                                          (1, 2, 6, 2), (3, 1, 9, 1)])
def test_binary_conv_matches_torch_with_zero_padded_taps(dilation, groups, size, stride):
    rng = np.random.default_rng(dilation * 10 + groups)
    c, o, k = 8, 8, 3 if stride == 1 else 2
    pad = dilation if stride == 1 else 0
    x, w = pm1(rng, 2, c, size, size), pm1(rng, o, c // groups, k, k)
    want = F.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                    stride=stride, padding=pad, dilation=dilation, groups=groups).numpy()
    got = K.binary_conv2d(x, w, stride=stride, padding=pad, dilation=dilation, groups=groups)
    assert got.dtype == np.int64
    assert np.array_equal(got, want.astype(np.int64))


def test_int_conv_and_matmul_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 3, 8, 8))
    w = rng.integers(-127, 128, (4, 3, 2, 2))
    want = F.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64), stride=2)
    assert np.array_equal(K.int_conv2d(x, w, stride=2), want.numpy().astype(np.int64))
    a, b = rng.integers(-2**20, 2**20, (5, 7)), rng.integers(-2**10, 2**10, (3, 7))
    assert np.array_equal(K.int_matmul(a, b), a @ b.T)


# --------------------------------------------------------------------------- affine / rprelu / lut
@given(st.integers(0, 2**31 - 1))
@SETTINGS
def test_affine_sum_is_one_rounding_of_the_exact_sum(seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.integers(-128, 128, (4, 6)), rng.integers(-2000, 2000, (4, 6))
    m1, m2 = rng.integers(-2**15, 2**15, 6), rng.integers(-2**15, 2**15, 6)
    l1, l2, bias, shift = 3, 0, rng.integers(-2**20, 2**20, 6), 14
    got = K.affine_sum([(x1, m1, l1), (x2, m2, l2)], bias, shift, 8)
    exact = [[(int(x1[i, c]) * int(m1[c]) * 2 ** l1 + int(x2[i, c]) * int(m2[c]) + int(bias[c]))
              for c in range(6)] for i in range(4)]
    want = np.clip(np.floor(np.array(exact, dtype=object) / 2 ** shift + 0.5).astype(np.int64), -128, 127)
    assert np.array_equal(got, want)


def test_rprelu_two_slopes():
    z = np.array([[-8, -1, 0, 1, 8]])
    got = K.rprelu(z, m_pos=np.full(5, 4), m_neg=np.full(5, 1), bias=np.full(5, 2), shift=2, bits=8)
    assert np.array_equal(got, np.floor((np.where(z >= 0, 4 * z, z) + 2) / 4 + 0.5).astype(np.int64))


def test_lut_addresses_signed_input_and_rejects_out_of_range():
    table = np.arange(16) * 10
    assert np.array_equal(K.lut(np.array([-8, 0, 7]), table, 4), [0, 80, 150])
    with pytest.raises(ValueError):
        K.lut(np.array([8]), table, 4)


# --------------------------------------------------------------------------- shift and tokens
@given(st.integers(0, 2**31 - 1), st.integers(1, 2), st.sampled_from([2, 3]))
@SETTINGS
def test_box_sum_is_the_torch_roll_mean_times_width(seed, reach, axis):
    rng = np.random.default_rng(seed)
    x = rng.integers(-100, 100, (2, 8, 4, 6))
    want = circular_box(torch.tensor(x, dtype=torch.float64), reach, dim=axis) * (2 * reach + 1)
    assert np.array_equal(K.box_sum(x, reach, axis), np.rint(want.numpy()).astype(np.int64))


@pytest.mark.parametrize("s", [1, 2])
def test_channel_mix_matches_model(s):
    x = np.arange(2 * 8 * 4 * 4).reshape(2, 8, 4, 4)
    assert np.array_equal(K.channel_mix(x, s), channel_mix_shift(torch.tensor(x), s).numpy())


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 6))
def test_cross_conv_is_a_circular_depthwise_conv(seed, h, w):
    """The fused shift unit's kernel against torch: circular padding by 2 (wrapping more than
    once on maps smaller than 3) and a depthwise 5 x 5 convolution whose kernel is zero off the
    cross; torch's conv is a correlation, as cross_conv's taps x[h + dh, w + dw] are."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-512, 512, (2, 4, h, w))
    coef = rng.integers(-2**17, 2**17, (4, len(K.CROSS_TAPS)))
    k = torch.zeros(4, 1, 5, 5, dtype=torch.float64)
    for t, (dh, dw) in enumerate(K.CROSS_TAPS):
        k[:, 0, 2 + dh, 2 + dw] = torch.tensor(coef[:, t], dtype=torch.float64)
    xt = torch.tensor(x, dtype=torch.float64)
    idx_h = torch.arange(-2, h + 2) % h
    idx_w = torch.arange(-2, w + 2) % w
    padded = xt[:, :, idx_h][:, :, :, idx_w]
    want = F.conv2d(padded, k, groups=4)
    assert np.array_equal(K.cross_conv(x, coef), want.numpy().astype(np.int64))


def test_channel_repeat_and_group_sum_order():
    x = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(K.repeat_channels(x, 2), repeat_channels(torch.tensor(x), 2).numpy())
    pooled = pool_channels(torch.tensor(x, dtype=torch.float64), 2).numpy()
    assert np.array_equal(K.group_sum_channels(x, 2), (pooled * 2).astype(np.int64))


def test_pooling_and_windows():
    from model.blocks import window_partition, window_reverse
    x = np.random.default_rng(1).integers(-50, 50, (2, 4, 8, 8))
    t = torch.tensor(x, dtype=torch.float64)
    assert np.array_equal(K.max_pool(x, 4), F.max_pool2d(t, 4, 4).numpy())
    assert np.array_equal(K.sum_pool(x, 4), (F.avg_pool2d(t, 4, 4) * 16).numpy())
    win = K.window_partition(x, 4)
    assert np.array_equal(win, window_partition(t, 4).numpy())
    assert np.array_equal(K.window_reverse(win, 4, 8, 8), x)
    assert np.array_equal(window_reverse(torch.tensor(win), 4, 8, 8).numpy(), x)
    assert np.array_equal(K.upsample_nearest(x[:, :, :2, :2], 4),
                          F.interpolate(t[:, :, :2, :2], size=(8, 8), mode="nearest").numpy())


# --------------------------------------------------------------------------- attention
@given(st.integers(0, 2**31 - 1), st.sampled_from([4, 16, 32]))
@SETTINGS
def test_qd_attention_equals_rounded_softmax(seed, d):
    """levels = round(3 * softmax(QK^T / sqrt d)), except where 3A sits within
    the exp table's rounding of a .5 boundary."""
    rng = np.random.default_rng(seed)
    q, k, v = pm1(rng, 2, 5, d), pm1(rng, 2, 7, d), pm1(rng, 2, 7, d)
    table = K.exp_table(d, 16)
    got = K.qd_attention(q, k, v, table, 3)
    a = torch.softmax(torch.tensor(q @ k.transpose(0, 2, 1), dtype=torch.float64) / math.sqrt(d), -1)
    lev = torch.floor(3 * a + 0.5)
    near_tie = ((3 * a - torch.floor(3 * a)) - 0.5).abs() < 1e-3
    want = (lev @ torch.tensor(v, dtype=torch.float64)).numpy()
    rows_ok = ~near_tie.any(-1).numpy()
    assert rows_ok.mean() > 0.5
    assert np.array_equal(got[rows_ok], want[rows_ok].astype(np.int64))


def test_exp_table_peak_and_monotone():
    t = K.exp_table(32, 16)
    assert t.shape == (65,) and t[-1] == 2 ** 16 and np.all(np.diff(t) >= 0)


@given(st.integers(0, 2**52))
def test_isqrt_exact(v):
    r = int(K.isqrt(np.array([v]))[0])
    assert r == math.isqrt(v)


def test_layernorm_int_close_to_float_layernorm():
    rng = np.random.default_rng(3)
    c, frac, out = 64, 4, Fmt(8, 5)
    x = rng.integers(-100, 100, (3, 10, c))
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.uniform(-0.3, 0.3, c)
    M, R = 14, 24
    gmul = np.floor(gamma * math.sqrt(c) * 2 ** M + 0.5).astype(np.int64)
    bias = np.floor(beta * 2.0 ** (R + M) + 0.5).astype(np.int64)
    eps = int(round(1e-5 * c ** 3 * 2.0 ** (2 * frac)))
    got = K.layernorm_int(x, gmul, bias, eps, R, R + M - out.frac, out.bits)
    ref = F.layer_norm(torch.tensor(x * 2.0 ** -frac), (c,), torch.tensor(gamma), torch.tensor(beta)).numpy()
    assert np.abs(to_float(got, out) - ref).max() <= 1.5 * 2.0 ** -out.frac
