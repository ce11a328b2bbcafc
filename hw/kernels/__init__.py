"""Golden (bit-exact, numpy int64) models of every hardware kernel.

One module per kernel family; each function is the *definition* of what the
hardware computes, on integers only.  Later levels (PyTorch hardware-exact
mode, QONNX/FINN execution, C simulation, RTL simulation) must reproduce these
results with ``np.array_equal``.
"""
from .binary import binary_conv2d, threshold, xnor_matmul, xnor_popcount_dot  # noqa: F401
from .fixed import affine_sum, int_conv2d, int_matmul, lut, rprelu  # noqa: F401
from .shift import CROSS_TAPS, box_sum, branch_taps, channel_mix, cross_conv  # noqa: F401
from .tokens import (group_sum_channels, max_pool, repeat_channels, sum_pool, upsample_nearest,  # noqa: F401
                     window_partition, window_reverse)
from .attention import exp_table, isqrt, layernorm_int, qd_attention  # noqa: F401
