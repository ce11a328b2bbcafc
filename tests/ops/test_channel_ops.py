"""The small channel / token ops at every level:

* RepeatChannels (hw/ops/repeat_channels.py): RATIO copies of the input row (output channel j is
  input channel j mod C); PE folds the input channels;
* GroupSumChannels (hw/ops/group_sum_channels.py): the sum of each group of RATIO consecutive
  channels; PE folds the output channels;
* TokenSum (hw/ops/token_sum.py): the sum over the tokens of an image (one output row per image).

References: index arithmetic and Python sums.  Edge cases: both ends of the input format, the
extreme sums (every channel at the minimum, unsigned at the maximum), an unsigned input, ratios of 2
to 4 (not a power of two), PE = 1 to fully parallel.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def repeat_channels(name, c, ratio, pe, rows=6, images=1, seed=None):
    x = np.random.default_rng(ratio if seed is None else seed).integers(-512, 512, (images, rows, c))
    x[0, 0, 0], x[-1, -1, -1] = -512, 511                          # both ends of the input format
    want = x[..., np.arange(c * ratio) % c]                         # output channel j = input channel j mod C
    return case("RepeatChannels", name, [x], ["INT10"], "INT10", dict(ratio=ratio, PE=pe), images=images, want=want)


def group_sum_channels(name, c, ratio, pe, signed=True, rows=6, images=1, seed=None):
    rng = np.random.default_rng(c + ratio if seed is None else seed)
    x = rng.integers(-512, 512, (images, rows, c)) if signed else rng.integers(0, 1024, (images, rows, c))
    x[0, 0] = -512 if signed else 1023                              # the extreme sums
    want = np.stack([sum(x[..., g * ratio + i] for i in range(ratio)) for g in range(c // ratio)], -1)
    return case("GroupSumChannels", name, [x], ["INT10" if signed else "UINT10"], "INT13",
                dict(ratio=ratio, PE=pe), images=images, want=want)


def token_sum(name, n, c, pe, images=4, seed=None):
    x = np.random.default_rng(n + c if seed is None else seed).integers(-512, 512, (images, n, c))
    x[0] = -512                                                     # the most negative sum
    want = np.array([[sum(int(x[b, t, j]) for t in range(n)) for j in range(c)] for b in range(images)])
    return case("TokenSum", name, [x], ["INT10"], "INT16", dict(PE=pe), images=images, want=want)


# Each op at PE = 1, a middle folding and fully parallel (the old C-simulation cases that differed from
# an RTL one only in the ratio or the number of images are merged into it).
CASES = {
    # RepeatChannels: 8 input channels, PE of the input channels
    "repeat_ratio3_pe1": lambda: repeat_channels("rep8_3_1", 8, 3, 1),
    "repeat_ratio3_pe4": lambda: repeat_channels("rep8_3_4", 8, 3, 4),
    "repeat_ratio2_parallel": lambda: repeat_channels("rep8_2_8", 8, 2, 8),
    # GroupSumChannels: PE of the output channels (the groups)
    "group_sum_ratio3_pe1": lambda: group_sum_channels("gsum12_3_1_s", 12, 3, 1),
    "group_sum_ratio2_parallel": lambda: group_sum_channels("gsum16_2_8_s", 16, 2, 8),
    "group_sum_ratio4_pe2_unsigned": lambda: group_sum_channels("gsum16_4_2_u", 16, 4, 2, signed=False),
    # TokenSum: 4 images, one output row each
    "token_sum_10_tokens_pe4": lambda: token_sum("tsum10_8_4", 10, 8, 4),
    "token_sum_3_tokens_pe1": lambda: token_sum("tsum3_6_1", 3, 6, 1),
    "token_sum_5_tokens_parallel": lambda: token_sum("tsum5_8_8", 5, 8, 8),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 4), st.integers(1, 8), st.integers(1, 4))
def test_drawn_sizes_golden_torch_onnx(seed, ratio, channels, tokens):
    for c in (repeat_channels("rc", channels * ratio, ratio, 1, rows=tokens, images=2, seed=seed),
              group_sum_channels("gs", channels * ratio, ratio, 1, rows=tokens, images=2, seed=seed),
              token_sum("ts", tokens, channels * ratio, 1, images=2, seed=seed)):
        check_golden(c)
        check_torch(c)
        check_onnx(c)


@pytest.mark.golden
@needs_gxx
@pytest.mark.parametrize("name", CASES)
def test_csim(name):
    check_csim(CASES[name]())


@pytest.mark.golden
@needs_verilator()
@pytest.mark.parametrize("name", CASES)
def test_rtl(name):
    check_rtl(CASES[name]())


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    op = data.draw(st.sampled_from(["TokenSum", "GroupSumChannels", "RepeatChannels"]), "op")
    c = data.draw(st.integers(1, 12), "channels")                  # TokenSum's, the groups or the input's
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    rows = data.draw(st.integers(1, 6), "tokens")
    if op == "TokenSum":
        case_ = token_sum(f"tsum_drawn_{rows}_{c}_{pe}", rows, c, pe, images=2, seed=0)
    else:
        ratio = data.draw(st.integers(1, 4), "ratio")
        if op == "GroupSumChannels":
            case_ = group_sum_channels(f"gsum_drawn_{c * ratio}_{ratio}_{pe}", c * ratio, ratio, pe, rows=rows,
                                       images=2, seed=0)
        else:
            case_ = repeat_channels(f"rep_drawn_{c}_{ratio}_{pe}", c, ratio, pe, rows=rows, images=2, seed=0)
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


# ---------------------------------------------------------------------- errors
def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    legal = r"PE=4 does not divide 6; legal values: \[1, 2, 3, 6\]"
    for c in (repeat_channels("rep", 6, 2, 4), group_sum_channels("gsum", 12, 2, 4), token_sum("tsum", 3, 6, 4)):
        with pytest.raises(FoldingError, match=f"{c.node.name}: {legal}"):
            c.op.hls(c.io())
        with pytest.raises(FoldingError, match=f"{c.node.name}: {legal}"):
            c.op.rtl(c.io())
