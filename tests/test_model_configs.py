"""A user's own model configuration: the file it comes from, the checks on every field, the
hardware-support check, and (tests/test_config_properties.py) random valid configurations
through every level of the flow.

Every invalid configuration must end in a ConfigError naming its field (exit code 2 from the
command lines), never in a traceback.
"""
import json
import subprocess
import sys

import pytest

from model.config import ConfigError
from model.registry import config_from_file, get_config, resolve_model

from tests.conftest import ROOT

BASE = get_config("bhvit_pynq_fmnist").to_dict()


def _file(tmp_path, data, name="my_model.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# (changed fields, the field the message must name, words of the reason)
INVALID = [
    (dict(depths=[1, 1, 1]), "depths", "needs 4 entries"),
    (dict(heads=[1, 1, 3, 8]), "heads", "128 channels do not split into 3 heads"),
    (dict(window=[4, 4, 3, 2]), "window", "map 4x4 is not a multiple of window 3"),
    (dict(pool_kernel=[4, 4, 4, 3]), "pool_kernel", "map 2x2 is not a multiple of pool kernel 3"),
    (dict(stem_patch=3), "stem_patch", "must divide the image size 32"),
    (dict(img_size=24), "img_size", "cannot be downsampled by 2"),
    (dict(dim=[32, 64, 128, 256]), "dim", "is not a field"),
    (dict(arch="vit"), "arch", "bhvit, binaryvit"),
    (dict(mixers=["msgdc", "msgdc", "attention", "msmha"]), "mixers", "msgdc, msmha"),
    (dict(depths="1,1,1,1"), "depths", "must be a list"),
    (dict(mlp_ratios=[4, 4, 2.5, 2]), "mlp_ratios", "int values"),
    (dict(conv_groups=3), "conv_groups", "3 groups do not divide 32 channels"),
    (dict(dims=[32, 48, 96, 192]), "dims", "48 is not a multiple of 32"),
    (dict(downsample="avg"), "downsample", "'fp' or 'binary'"),
    (dict(num_classes=0), "num_classes", "positive integer"),
    (dict(binary="yes"), "binary", "must be true or false"),
]


@pytest.mark.parametrize("change,field,words", INVALID, ids=[c[1] + "-" + str(i) for i, c in enumerate(INVALID)])
def test_an_invalid_field_is_named_with_the_reason(tmp_path, change, field, words):
    path = _file(tmp_path, {**BASE, **change})
    with pytest.raises(ConfigError) as info:
        resolve_model(config=path)
    assert info.value.field == field
    assert f"config field '{field}'" in str(info.value) and words in str(info.value)


def test_a_config_file_that_is_missing_or_not_json_or_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config_from_file(tmp_path / "none.json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        config_from_file(_file(tmp_path, "{dims: [1,"))
    with pytest.raises(ConfigError, match="is not valid YAML"):
        config_from_file(_file(tmp_path, "dims: [1,\n", "m.yaml"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_from_file(_file(tmp_path, "[1, 2]"))


def test_json_and_yaml_files_give_the_configuration_they_say(tmp_path):
    change = dict(dims=[16, 32, 64, 128], depths=[1, 2, 1, 1], heads=[1, 1, 2, 4], window=[4, 4, 2, 2])
    name, cfg = resolve_model(config=_file(tmp_path, {**BASE, **change}, "four_windows.json"))
    assert name == "four_windows"
    assert cfg == get_config("bhvit_pynq_fmnist").replace(**{k: tuple(v) for k, v in change.items()})
    # "base": a registered model the file changes; without it the ImageNet-sized defaults apply
    assert resolve_model(config=_file(tmp_path, {"base": "bhvit_pynq_fmnist", **change}, "b.json"))[1] == cfg
    with pytest.raises(ConfigError, match="config field 'window'.*map 7x7"):
        resolve_model(config=_file(tmp_path, change, "c.json"))
    with pytest.raises(ConfigError, match="config field 'base' = 'bhvit_nano': must be a registered model"):
        resolve_model(config=_file(tmp_path, {"base": "bhvit_nano"}, "d.json"))
    yaml_text = "\n".join(f"{k}: {json.dumps(v)}" for k, v in {**BASE, **change}.items())
    name, ycfg = resolve_model(config=_file(tmp_path, yaml_text, "four_windows.yaml"))
    assert ycfg == get_config("bhvit_pynq_fmnist").replace(**{k: tuple(v) for k, v in change.items()})
    # the float teacher `make train` distils from
    tname, teacher = resolve_model(config=tmp_path / "four_windows.yaml", float_teacher=True)
    assert tname == "four_windows_fp" and not teacher.binary and teacher.downsample == "fp"
    assert teacher.replace(binary=True, downsample="binary") == ycfg


def test_train_command_exits_2_naming_the_field(tmp_path):
    """The real command line: exit code 2 and one line naming the field, no traceback, no run folder."""
    path = _file(tmp_path, {**BASE, "heads": [1, 1, 3, 8]})
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "model.train", "--config", str(path), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "config field 'heads' = [1, 1, 3, 8]" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_the_example_config_in_docs_is_valid_and_lowers():
    from hw.support import unsupported
    for example in sorted((ROOT / "docs" / "configs").glob("*.*")):
        name, cfg = resolve_model(config=example)
        assert name == example.stem
        assert unsupported(cfg) == [], example


# ----------------------------------------------------------------- what the hardware refuses
UNSUPPORTED = [
    (dict(arch="binaryvit", attn_quant="lsq", stem_gelu=False), "every block (binaryvit): attn_quant='lsq'"),
    (dict(attn_quant="lsq"), "stages.2.0 (MSMHA): attn_quant='lsq'"),
    (dict(msgdc_input_in_rprelu=False), "stages.0.0 (MSGDC): msgdc_input_in_rprelu=False"),
    (dict(pool_pad_quirk=True), "stages.3.0 (MSMHA): pool_pad_quirk=True"),
    (dict(binary=False), "binary=False is the full-precision teacher"),
    (dict(norm="layernorm"), "config field 'norm' = 'layernorm'"),
]


@pytest.mark.parametrize("change,words", UNSUPPORTED, ids=[next(iter(c)) for c, _ in UNSUPPORTED])
def test_what_the_hardware_cannot_build_is_named_by_block(change, words):
    import torch

    from hw.intnet import IntNet
    from hw.support import UnsupportedModelError
    from model.networks import HybridViT
    model = HybridViT(get_config("bhvit_pynq_fmnist", **change)).eval()
    with pytest.raises(UnsupportedModelError) as info:
        IntNet.from_model(model, torch.zeros(2, 1, 32, 32, dtype=torch.uint8), (0.5,), (0.5,))
    assert words in str(info.value)


def test_hardware_flows_refuse_an_unsupported_checkpoint_before_writing(tmp_path):
    """`make golden` / `make hls` on a checkpoint the hardware cannot build: exit 2, the block named,
    no output folder."""
    from model.checkpoint import save_checkpoint
    from model.networks import HybridViT
    cfg = get_config("bhvit_pynq_fmnist", attn_quant="lsq")
    ckpt = tmp_path / "lsq.pt"
    save_checkpoint(dict(model=HybridViT(cfg).state_dict(), config=cfg.to_dict(), model_name="lsq_model",
                         data="fmnist"), ckpt)
    for cmd in (["-m", "hw.golden"], ["-m", "flows.hls", "--board", "pynq-z2"]):
        out = tmp_path / ("out_" + cmd[1])
        r = subprocess.run([sys.executable, *cmd, "--ckpt", str(ckpt), "--out", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (cmd, r.stdout[-2000:], r.stderr[-2000:])
        assert "stages.2.0 (MSMHA): attn_quant='lsq'" in r.stderr and "Traceback" not in r.stderr
        assert not out.exists()
