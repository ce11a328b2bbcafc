"""Which model configurations the hardware can build, asked before anything is folded or written.

The model (model/) can train more than the dataflow graph (hw/graph.py) can lower: the paper's
and the reference code's variants, BinaryViT with another attention quantizer, float teachers.
:func:`unsupported` lists, block by block, what a configuration uses that has no integer-exact hardware form yet and why;
:func:`check_supported` turns a non-empty list into one :class:`UnsupportedModelError` whose
message names every block, so that `make golden / hls / sim / export / bitstream` stop with
exit code 2 before they create a folder, instead of failing inside the fold.

When a lowering is added (in hw/intnet.py and hw/graph.py, with its ops in hw/ops/), the
matching rule here goes away and tests/test_model_configs.py's refusal case with it.
"""
from __future__ import annotations

from typing import List


class UnsupportedModelError(ValueError):
    """A configuration that trains but has no hardware form; the message names each block."""


def _blocks(cfg, stage: int) -> List[str]:
    return [f"stages.{stage}.{i}" for i in range(cfg.depths[stage])]


def _named(blocks: List[str]) -> str:
    return ", ".join(blocks[:3]) + (f" and {len(blocks) - 3} more" if len(blocks) > 3 else "")


def unsupported(cfg) -> List[str]:
    """One line per part of ``cfg`` without a hardware form: '<where>: <what> (<why / way out>)'."""
    out: List[str] = []
    if cfg.arch == "binaryvit" and cfg.attn_quant != "bit":
        out.append(f"every block (binaryvit): attn_quant={cfg.attn_quant!r}; BinaryViT's attention is lowered with "
                   f"its own quantizer c * clip(round(A / c), 0, 1) (attn_quant='bit')")
    if not cfg.binary:
        out.append("the whole network: binary=False is the full-precision teacher; the hardware takes the "
                   "binary student trained from it (make train CONFIG=... writes both)")
    if cfg.norm != "batchnorm":
        out.append(f"config field 'norm' = {cfg.norm!r}: the residual stream's norms fold into per-channel "
                   f"affine kernels only as BatchNorm (a LayerNorm there would need a token-wise IntLayerNorm "
                   f"on every block); use norm='batchnorm'")
    for s, mixer in enumerate(cfg.mixers if cfg.arch == "bhvit" else ()):
        blocks = _blocks(cfg, s)
        if not blocks:
            continue
        if mixer == "msgdc" and not cfg.msgdc_input_in_rprelu:
            out.append(f"{_named(blocks)} (MSGDC): msgdc_input_in_rprelu=False (the reference code's MSGDC) is "
                       f"not lowered; the hardware implements the paper's eq. 7 (msgdc_input_in_rprelu=True)")
        if mixer == "msmha":
            if cfg.attn_quant != "qd":
                out.append(f"{_named(blocks)} (MSMHA): attn_quant={cfg.attn_quant!r}; the hardware implements "
                           f"the paper's quantization-decomposition attention (attn_quant='qd')")
            if cfg.attn_norm != "layernorm":
                out.append(f"{_named(blocks)} (MSMHA): attn_norm={cfg.attn_norm!r}; the token norm in hardware "
                           f"is an integer LayerNorm (attn_norm='layernorm')")
            if cfg.pool_pad_quirk:
                out.append(f"{_named(blocks)} (MSMHA): pool_pad_quirk=True (the reference code's padded token "
                           f"pooling) is not lowered; pooled tokens come from non-overlapping windows")
    return out


def check_supported(cfg, what: str = "this model") -> None:
    """Raise :class:`UnsupportedModelError` listing every part of ``cfg`` the hardware cannot build."""
    problems = unsupported(cfg)
    if problems:
        raise UnsupportedModelError(
            f"{what} has no hardware form yet:\n  - " + "\n  - ".join(problems)
            + "\nThe model can still be trained and evaluated (make train / make eval); docs/configs.md lists "
              "what the hardware supports.")
