"""Unit tests of the binary building blocks against their formulas."""
import numpy as np
import pytest
import torch

from model.blocks import MSMHA, ShiftBranches, window_partition, window_reverse
from model.config import ViTConfig
from model.layers import (BinaryActivation, BinaryConv2d, BinaryLinear, LayerScale, QDAttentionQuant, RPReLU,
                          TokenBatchNorm, channel_mix_shift, circular_box, pool_channels, repeat_channels)


def approx_sign_grad(u):
    """Bi-Real ApproxSign derivative, written out from the paper."""
    g = np.zeros_like(u)
    neg = (u >= -1) & (u < 0)
    pos = (u >= 0) & (u < 1)
    g[neg] = 2 + 2 * u[neg]
    g[pos] = 2 - 2 * u[pos]
    return g


def test_activation_binarizer_forward_is_sign_of_x_plus_bias():
    torch.manual_seed(0)
    act = BinaryActivation(8)
    with torch.no_grad():
        act.move.copy_(torch.linspace(-1, 1, 8))
    x = torch.randn(5, 8)
    x[0, 3] = -act.move[3].item()          # exactly zero after the bias: sign(0) = +1
    for mode in (act.train, act.eval):
        mode()
        y = act(x)
        expected = np.where((x + act.move).detach().numpy() >= 0, 1.0, -1.0)
        assert np.array_equal(y.detach().numpy(), expected)


def test_activation_binarizer_backward_is_approx_sign():
    act = BinaryActivation(6).train()
    with torch.no_grad():
        act.move.copy_(torch.tensor([0.0, 0.3, -0.3, 0.0, 0.5, -1.2]))
    x = torch.linspace(-1.6, 1.6, 6 * 9).reshape(9, 6).requires_grad_(True)
    act(x).sum().backward()
    u = (x + act.move).detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), approx_sign_grad(u), rtol=0, atol=1e-6)
    # the bias receives the same gradient, summed over the batch
    np.testing.assert_allclose(act.move.grad.numpy(), approx_sign_grad(u).sum(0), rtol=0, atol=1e-5)


def test_binary_linear_weight_sign_scale_and_clipped_ste():
    torch.manual_seed(1)
    lin = BinaryLinear(16, 4, row_centering=True)
    with torch.no_grad():
        lin.weight.mul_(60)  # some latent weights outside [-1, 1] after centring
    w = lin.weight.detach()
    wc = w - w.mean(1, keepdim=True)
    sign_w = torch.where(wc >= 0, 1.0, -1.0)
    alpha = w.abs().mean(1)                     # from the *uncentred* weights, per output channel
    assert torch.equal(lin.binary_weight(), sign_w)
    assert torch.equal(lin.alpha(), alpha)
    xb = torch.where(torch.randn(3, 16) >= 0, 1.0, -1.0)
    y = lin(xb)
    assert torch.allclose(y, (xb @ sign_w.T) * alpha, atol=1e-6)
    # exact integers before the scale: XNOR-popcount arithmetic
    pop = (xb @ sign_w.T)
    assert torch.equal(pop, pop.round())
    # Clipped STE on the centred weight: d/dWc = g * [|Wc| <= 1]; the centring then
    # subtracts its row mean (d/dW = d/dWc - mean_row(d/dWc)), as in the reference code.
    y.sum().backward()
    g = (xb.sum(0, keepdim=True) * alpha.view(-1, 1)) * (wc.abs() <= 1).float()
    assert torch.allclose(lin.weight.grad, g - g.mean(1, keepdim=True), atol=1e-5)
    assert g.abs().sum() > 0 and (wc.abs() > 1).any()


def test_binary_weight_ste_is_clipped_to_unit_interval():
    lin = BinaryLinear(10, 2, row_centering=False)
    with torch.no_grad():
        lin.weight.copy_(torch.linspace(-2, 2, 20).reshape(2, 10))
    lin(torch.ones(1, 10)).sum().backward()
    inside = lin.weight.detach().abs() <= 1
    assert (lin.weight.grad[~inside] == 0).all() and (lin.weight.grad[inside] != 0).all()


def test_binary_linear_without_row_centering_uses_raw_sign():
    torch.manual_seed(2)
    lin = BinaryLinear(8, 3, row_centering=False)
    w = lin.weight.detach()
    assert torch.equal(lin.binary_weight(), torch.where(w >= 0, 1.0, -1.0))


def test_binary_conv_zero_padding_gives_zero_taps():
    conv = BinaryConv2d(4, 4, 3, padding=3, dilation=3, groups=4, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.ones_like(conv.weight))
    conv.row_centering = False
    x = torch.ones(1, 4, 7, 7)  # +1 everywhere; outside the map the taps are 0, not +-1
    y = conv(x)[0, 0] / conv.alpha()[0]
    # taps at offsets -3, 0, +3: the centre sees all 9; corner (0, 0) sees rows/cols {0, 3}: 4;
    # (0, 3) sees rows {0, 3} x cols {0, 3, 6}: 6
    assert y[3, 3].item() == 9 and y[0, 0].item() == 4 and y[0, 3].item() == 6


def test_rprelu_and_layerscale_formulas():
    r = RPReLU(3)
    with torch.no_grad():
        r.move1.copy_(torch.tensor([0.5, -0.5, 0.0]))
        r.move2.copy_(torch.tensor([1.0, 2.0, -1.0]))
        r.prelu.weight.copy_(torch.tensor([0.25, 0.1, 2.0]))
    x = torch.randn(7, 3)
    u = x - r.move1
    expected = torch.where(u >= 0, u, r.prelu.weight * u) + r.move2
    assert torch.allclose(r(x), expected)
    ls = LayerScale(3, 0.1)
    assert torch.allclose(ls(x), x * 0.1)


def test_rprelu_backward_matches_autograd_of_the_formula():
    """RPReLU's hand-written backward against autograd of the plain formula."""
    torch.manual_seed(3)
    r = RPReLU(4).double()
    with torch.no_grad():
        r.move1.copy_(torch.tensor([0.5, -0.5, 0.0, 0.2]))
        r.move2.copy_(torch.randn(4))
        r.prelu.weight.copy_(torch.tensor([0.25, -0.1, 2.0, 0.0]))
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 5, 4, dtype=torch.float64)
    (r(x) * g).sum().backward()
    got = [x.grad, r.move1.grad, r.prelu.weight.grad, r.move2.grad]
    params = [p.detach().clone().requires_grad_(True) for p in (r.move1, r.prelu.weight, r.move2)]
    x2 = x.detach().clone().requires_grad_(True)
    u = x2 - params[0]
    ((torch.where(u >= 0, u, params[1] * u) + params[2]) * g).sum().backward()
    want = [x2.grad] + [p.grad for p in params]
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12)


def test_qd_is_two_bit_quantizer_and_sum_of_binary_maps():
    qd = QDAttentionQuant(bits=2).eval()
    a = torch.softmax(torch.randn(2, 4, 9, 9) * 3, -1)
    a = torch.cat([a, torch.tensor([0.0, 1 / 6 - 1e-4, 1 / 6 + 1e-4, 0.5 - 1e-4, 0.5 + 1e-4, 1.0]).expand(2, 4, 9, 6)], -1)
    q = qd(a)
    s = 3
    ref = torch.clamp(torch.round(s * a), 0, s) / s
    assert torch.allclose(q, ref, atol=1e-7)
    levels = torch.round(q * s)
    assert torch.equal(levels, levels.round()) and levels.min() >= 0 and levels.max() <= 3
    maps = sum((torch.round(s * a) >= sigma - 0.5).float() for sigma in range(1, s + 1))
    assert torch.equal(levels, maps)


def test_repeat_and_pool_shortcut_channel_order():
    x = torch.arange(2 * 3, dtype=torch.float32).reshape(1, 2, 3)     # C = 3
    rep = repeat_channels(x, 4)
    assert rep.shape == (1, 2, 12)
    for j in range(12):
        assert torch.equal(rep[..., j], x[..., j % 3])                 # channel j = h[j mod C]
    u = torch.arange(12, dtype=torch.float32).reshape(1, 1, 12)
    pooled = pool_channels(u, 4)
    assert torch.equal(pooled, torch.tensor([[[1.5, 5.5, 9.5]]]))     # groups of r consecutive channels


@pytest.mark.parametrize("reach", [1, 2])
def test_box_filters_and_channel_mix_against_numpy_roll(reach):
    x = torch.randn(2, 8, 5, 6)
    xn = x.numpy()
    for dim in (2, 3):
        ref = sum(np.roll(xn, s, axis=dim) for s in range(-reach, reach + 1)) / (2 * reach + 1)
        np.testing.assert_allclose(circular_box(x, reach, dim).numpy(), ref, atol=1e-6)
    c = np.split(xn, 4, axis=1)
    ref = np.concatenate([np.roll(c[0], reach, 2), np.roll(c[1], -reach, 2),
                          np.roll(c[2], reach, 3), np.roll(c[3], -reach, 3)], 1)
    assert np.array_equal(channel_mix_shift(x, reach).numpy(), ref)


def test_shift_module_sums_six_scaled_branches():
    sb = ShiftBranches(8, "bhvit")
    assert len(sb.ls) == 6
    assert all(torch.equal(ls.alpha, torch.zeros(8)) for ls in sb.ls.values())  # init 0 on shift branches
    gains = {}
    with torch.no_grad():
        for i, (name, ls) in enumerate(sb.ls.items()):
            ls.alpha.fill_(i + 1.0)
            gains[name] = i + 1.0
    t = torch.randn(2, 20, 8)
    m = t.transpose(1, 2).reshape(2, 8, 4, 5).numpy()
    ref = (1 * (m + np.roll(m, 1, 2) + np.roll(m, -1, 2)) / 3
           + 2 * (m + np.roll(m, 1, 3) + np.roll(m, -1, 3)) / 3
           + 3 * channel_mix_shift(torch.from_numpy(m), 1).numpy()
           + 4 * sum(np.roll(m, s, 2) for s in range(-2, 3)) / 5
           + 5 * sum(np.roll(m, s, 3) for s in range(-2, 3)) / 5
           + 6 * channel_mix_shift(torch.from_numpy(m), 2).numpy())
    out = sb(t, 4, 5).transpose(1, 2).reshape(2, 8, 4, 5)
    np.testing.assert_allclose(out.detach().numpy(), ref, atol=1e-5)


def test_window_partition_roundtrip_and_order():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    win = window_partition(x, 4)
    assert win.shape == (2 * 4, 16, 3)
    assert torch.equal(win[1, 0], x[0, :, 0, 4])      # second window of image 0 starts at column 4
    assert torch.equal(window_reverse(win, 4, 8, 8), x)


@pytest.mark.parametrize("quirk", [False, True])
def test_msmha_token_counts_at_224(quirk):
    cfg = ViTConfig(pool_pad_quirk=quirk)
    for dim, heads, size, n_tokens, n_windows in [(256, 4, 14, 53, 4), (512, 8, 7, 50, 1)]:
        att = MSMHA(cfg, dim, heads, 7, 7).eval()
        x = torch.randn(2, dim, size, size)
        tok, n_local = att.tokens(x)
        assert n_local == 49
        assert tok.shape == (2 * n_windows, n_tokens, dim)
        out = att(x.flatten(2).transpose(1, 2), size, size)
        assert out.shape == (2, size * size, dim)


def test_token_batchnorm_matches_torch_and_folds_to_affine():
    torch.manual_seed(0)
    bn, ref = TokenBatchNorm(5), torch.nn.BatchNorm1d(5)
    x = torch.randn(4, 7, 5) * 3 + 1
    y = bn.train()(x)
    yr = ref.train()(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(y, yr, atol=1e-5)
    assert torch.allclose(bn.running_var, ref.running_var) and torch.allclose(bn.running_mean, ref.running_mean)
    bn.eval()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(bn(x), x * scale + (bn.bias - bn.running_mean * scale), atol=1e-6)


def test_learnable_activation_scale_changes_only_the_gradient():
    act = BinaryActivation(3, learnable_scale=True).train()
    with torch.no_grad():
        act.log_scale.copy_(torch.log(torch.tensor([1.0, 2.0, 0.5])))
    x = torch.linspace(-1.5, 1.5, 12).reshape(4, 3).requires_grad_(True)
    y = act(x)
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0))      # sign((x - b) / a) = sign(x - b) for a > 0
    y.sum().backward()
    a = torch.tensor([1.0, 2.0, 0.5])
    u = (x / a).detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), approx_sign_grad(u) / a.numpy(), atol=1e-6)
