"""Model configurations as plain data (timm style): one frozen dataclass per
network, named instances live in :mod:`model.registry`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Tuple


@dataclass(frozen=True)
class ViTConfig:
    """Configuration shared by BHViT and BinaryViT.

    ``variant_*`` switches select between the paper's definition (default) and
    the authors' released code where the two disagree.
    """

    arch: str = "bhvit"                      # "bhvit" or "binaryvit"
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    stem_patch: int = 4                      # stem conv kernel = stride
    dims: Tuple[int, ...] = (64, 128, 256, 512)
    depths: Tuple[int, ...] = (2, 2, 6, 2)
    mlp_ratios: Tuple[int, ...] = (8, 8, 4, 4)
    heads: Tuple[int, ...] = (1, 1, 4, 8)
    # BHViT token mixer per stage: "msgdc" (multi-scale grouped dilated conv)
    # or "msmha" (multi-scale multi-head attention).  BinaryViT ignores it.
    mixers: Tuple[str, ...] = ("msgdc", "msgdc", "msmha", "msmha")
    window: Tuple[int, ...] = (7, 7, 7, 7)   # MSMHA window size per stage
    pool_kernel: Tuple[int, ...] = (7, 7, 7, 7)  # MSMHA high-scale token pooling (kernel = stride)
    kv_reduction: Tuple[int, ...] = (8, 4, 1, 1)  # BinaryViT K/V token pooling
    dilations: Tuple[int, ...] = (1, 3, 5)
    conv_groups: int = 4
    downsample: str = "fp"                   # "fp" or "binary"
    binary: bool = True                      # False: the same network in float (teacher)
    norm: str = "batchnorm"                  # norm of the residual stream ("batchnorm"/"layernorm")
    attn_norm: str = "layernorm"             # the normalisation inside MSMHA
    attn_quant: str = "qd"                   # "qd" (paper), "lsq" (BHViT code), "bit" (BinaryViT)
    qd_bits: int = 2
    shift_branches: bool = True              # the six shift branches (BHViT) / four pool branches (BinaryViT)
    layerscale_init: float = 0.1
    row_centering: bool = True               # sign(W - mean_row(W)) as in the reference code
    act_scale: bool = False                  # paper eq. 2 learnable scale a (gradient only)
    msgdc_input_in_rprelu: bool = True       # paper eq. 7; the code omits the input
    pool_pad_quirk: bool = False             # the code pads the 7x7 token pooling by 3
    stem_gelu: bool = True                   # BHViT: yes; BinaryViT: no
    notes: str = field(default="", compare=False)

    def __post_init__(self):
        n = len(self.dims)
        for name in ("depths", "mlp_ratios", "heads", "mixers", "window", "pool_kernel", "kv_reduction"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"config field '{name}' needs {n} entries (one per stage), "
                                 f"got {getattr(self, name)!r}")
        if self.downsample not in ("fp", "binary"):
            raise ValueError(f"downsample must be 'fp' or 'binary', got {self.downsample!r}")
        if self.attn_quant not in ("qd", "lsq", "bit"):
            raise ValueError(f"attn_quant must be 'qd', 'lsq' or 'bit', got {self.attn_quant!r}")
        sizes = self.stage_sizes()
        for i, (s, d, h) in enumerate(zip(sizes, self.dims, self.heads)):
            if d % h:
                raise ValueError(f"stage {i + 1}: {d} channels do not split into {h} heads")
            if self.arch == "bhvit" and self.mixers[i] == "msmha":
                if s % self.window[i] or s % self.pool_kernel[i]:
                    raise ValueError(f"stage {i + 1}: map {s}x{s} is not a multiple of window "
                                     f"{self.window[i]} / pool kernel {self.pool_kernel[i]}")
            if self.arch == "binaryvit" and s % self.kv_reduction[i]:
                raise ValueError(f"stage {i + 1}: map {s}x{s} not divisible by K/V reduction {self.kv_reduction[i]}")

    def stage_sizes(self) -> Tuple[int, ...]:
        if self.img_size % self.stem_patch:
            raise ValueError(f"image size {self.img_size} is not a multiple of the stem patch {self.stem_patch}")
        s = self.img_size // self.stem_patch
        out = []
        for i in range(len(self.dims)):
            out.append(s)
            if i + 1 < len(self.dims):
                if s % 2:
                    raise ValueError(f"stage {i + 1} map {s}x{s} cannot be downsampled by 2")
                s //= 2
        return tuple(out)

    def replace(self, **kw) -> "ViTConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        d = dict(d)
        for k, v in d.items():
            if isinstance(v, list):
                d[k] = tuple(v)
        return cls(**d)
