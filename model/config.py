"""Model configurations as plain data (timm style): one frozen dataclass per
network, named instances live in :mod:`model.registry`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
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
        validate(self)

    def stage_sizes(self) -> Tuple[int, ...]:
        """The side of each stage's map: img_size / stem_patch, halved by every downsampling."""
        s = self.img_size // self.stem_patch
        return tuple(s >> i for i in range(len(self.dims)))

    def replace(self, **kw) -> "ViTConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "ViTConfig":
        """A configuration from plain data (a checkpoint's, a JSON / YAML file's): unknown fields and
        values of the wrong type are a ConfigError naming the field."""
        if not isinstance(d, dict):
            raise ConfigError("", d, f"{source} must be a mapping of field -> value (got {type(d).__name__})")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(unknown[0], d[unknown[0]], f"is not a field of the model configuration; the fields are "
                                                         f"{', '.join(known)}")
        out = {}
        for k, v in d.items():
            default = known[k].default
            if isinstance(default, tuple):
                if not isinstance(v, (list, tuple)):
                    raise ConfigError(k, v, f"must be a list with one entry per stage, like {list(default)}")
                v = tuple(v)
                kind = type(default[0]) if default else object
                if any(not _is(x, kind) for x in v):
                    raise ConfigError(k, list(v), f"must hold {kind.__name__} values, like {list(default)}")
            elif not _is(v, type(default)):
                kind = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
                raise ConfigError(k, v, f"must be {kind.get(type(default).__name__, type(default).__name__)}, "
                                        f"like {default!r}")
            out[k] = v
        return cls(**out)


ARCHS = ("bhvit", "binaryvit")
MIXERS = ("msgdc", "msmha")
NORMS = ("batchnorm", "layernorm")
ATTN_QUANTS = ("qd", "lsq", "bit")


class ConfigError(ValueError):
    """A configuration field that cannot be used: the message names the field, its value, what is
    allowed and why."""

    def __init__(self, field_name: str, value, why: str):
        self.field, self.value = field_name, value
        shown = list(value) if isinstance(value, tuple) else value
        where = f"config field '{field_name}' = {shown!r}: " if field_name else ""
        super().__init__(where + why)


def _is(v, kind) -> bool:
    if kind is bool:
        return isinstance(v, bool)
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, kind)


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


def validate(c: "ViTConfig") -> None:
    """Every field against what the networks can build; raises ConfigError at the first problem."""
    def need(ok, name, why):
        if not ok:
            raise ConfigError(name, getattr(c, name), why)

    need(c.arch in ARCHS, "arch", f"must be one of {', '.join(ARCHS)}")
    for name in ("img_size", "in_chans", "num_classes", "stem_patch", "conv_groups", "qd_bits"):
        need(_is(getattr(c, name), int) and getattr(c, name) >= 1, name, "must be a positive integer")
    n = len(c.dims)
    need(n >= 1, "dims", "needs at least one stage")
    for name in ("depths", "mlp_ratios", "heads", "mixers", "window", "pool_kernel", "kv_reduction"):
        need(len(getattr(c, name)) == n, name, f"needs {n} entries, one per stage (dims has {n})")
    for name in ("dims", "heads", "mlp_ratios", "window", "pool_kernel", "kv_reduction", "dilations"):
        need(all(_is(v, int) and v >= 1 for v in getattr(c, name)), name, "must hold positive integers")
    need(all(_is(v, int) and v >= 0 for v in c.depths), "depths", "must hold blocks per stage (0 or more)")
    need(all(m in MIXERS for m in c.mixers), "mixers", f"entries must be one of {', '.join(MIXERS)}")
    need(c.downsample in ("fp", "binary"), "downsample", "must be 'fp' or 'binary'")
    need(c.attn_quant in ATTN_QUANTS, "attn_quant", f"must be one of {', '.join(ATTN_QUANTS)}")
    need(c.norm in NORMS, "norm", f"must be one of {', '.join(NORMS)}")
    need(c.attn_norm in NORMS, "attn_norm", f"must be one of {', '.join(NORMS)}")
    need(c.img_size % c.stem_patch == 0, "stem_patch",
         f"must divide the image size {c.img_size} (divisors: {_divisors(c.img_size)})")
    s = c.img_size // c.stem_patch
    for i in range(n - 1):
        need((s >> i) % 2 == 0, "img_size", f"stage {i + 1}'s map {s >> i}x{s >> i} cannot be downsampled by 2 for "
                                            f"stage {i + 2}: the image size / stem patch must be a multiple of "
                                            f"{2 ** (n - 1)}")
    if c.downsample == "binary":
        for i in range(n - 1):
            need(c.dims[i + 1] % c.dims[i] == 0, "dims",
                 f"binary downsampling from stage {i + 1} to {i + 2} repeats the {c.dims[i]} channels of its "
                 f"average-pooled shortcut: {c.dims[i + 1]} is not a multiple of {c.dims[i]} (use e.g. "
                 f"{2 * c.dims[i]}, or downsample='fp')")
    for i, (side, d, h) in enumerate(zip(c.stage_sizes(), c.dims, c.heads)):
        need(d % h == 0, "heads", f"stage {i + 1}: {d} channels do not split into {h} heads "
                                  f"(divisors of {d}: {_divisors(d)})")
        if c.shift_branches and c.arch == "bhvit":
            need(d % 4 == 0, "dims", f"stage {i + 1}: the channel-mix shift splits the channels in 4 quarters; "
                                     f"{d} is not a multiple of 4")
        if c.arch == "bhvit" and c.mixers[i] == "msgdc":
            need(d % c.conv_groups == 0, "conv_groups", f"stage {i + 1}: {c.conv_groups} groups do not divide "
                                                        f"{d} channels")
        if c.arch == "bhvit" and c.mixers[i] == "msmha":
            need(side % c.window[i] == 0, "window", f"stage {i + 1}: map {side}x{side} is not a multiple of window "
                                                    f"{c.window[i]} (divisors of {side}: {_divisors(side)})")
            need(side % c.pool_kernel[i] == 0, "pool_kernel", f"stage {i + 1}: map {side}x{side} is not a multiple "
                                                              f"of pool kernel {c.pool_kernel[i]} (divisors of "
                                                              f"{side}: {_divisors(side)})")
        if c.arch == "binaryvit":
            need(side % c.kv_reduction[i] == 0, "kv_reduction", f"stage {i + 1}: map {side}x{side} is not divisible "
                                                                f"by K/V reduction {c.kv_reduction[i]}")
