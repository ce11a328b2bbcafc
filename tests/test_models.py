"""Whole-model properties: parameter counts, registry, shapes, QONNX export."""
import pytest
import torch

from model import count_parameters, create_model, get_config, list_models
from model.config import ViTConfig
from model.registry import UnknownModelError


# Parameter counts of the reference code (IMRL/BHViT with the options of its run script).
@pytest.mark.parametrize("name,downsample,expected", [
    ("bhvit_tiny", "fp", 13_779_960),
    ("bhvit_tiny", "binary", 13_783_096),
    ("bhvit_small", "fp", 22_642_920),
    ("bhvit_small", "binary", 22_646_056),
])
def test_reference_parameter_counts(name, downsample, expected):
    assert count_parameters(create_model(name, downsample=downsample)) == expected


def test_binaryvit_small_parameter_count_is_about_22_49m():
    n = count_parameters(create_model("binaryvit_small"))
    assert abs(n - 22.49e6) < 0.01e6


def test_paper_flavour_drops_only_the_lsq_parameters():
    # paper QD has no learnable parameters; the reference LSQ has 2 per head per attention block
    ref, paper = create_model("bhvit_tiny"), create_model("bhvit_tiny_paper")
    lsq = 2 * (6 * 4 + 2 * 8)
    assert count_parameters(ref) - count_parameters(paper) == lsq


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownModelError) as e:
        create_model("bhvit_huge")
    msg = str(e.value)
    assert "bhvit_huge" in msg and all(m in msg for m in list_models())


def test_bad_config_is_rejected_with_a_reason():
    with pytest.raises(ValueError, match="window"):
        ViTConfig(img_size=32, stem_patch=2, window=(4, 4, 3, 2), pool_kernel=(4, 4, 3, 2),
                  dims=(32, 64, 128, 256))
    with pytest.raises(ValueError, match="one per stage"):
        ViTConfig(depths=(1, 1, 1))


def test_pynq_model_fits_the_board_budget():
    """All binary weights of the board model in well under 140 RAMB36 (36 kbit each)."""
    from model.layers import binary_weight_layers
    for name in ("bhvit_pynq_fmnist", "binaryvit_pynq_fmnist"):
        m = create_model(name)
        bits = sum(l.weight.numel() for l in binary_weight_layers(m))
        assert bits / 36864 < 30, f"{name}: {bits} weight bits = {bits / 36864:.1f} RAMB36"


@pytest.mark.parametrize("name", ["bhvit_pynq_fmnist", "bhvit_pynq_cifar10", "bhvit_pynq_fmnist_fp", "binaryvit_pynq_fmnist",
                                  "binaryvit_pynq_fmnist_fp"])
def test_small_models_forward_backward(name):
    cfg = get_config(name)
    m = create_model(cfg)
    x = torch.randn(4, cfg.in_chans, cfg.img_size, cfg.img_size)
    y = m(x)
    assert y.shape == (4, 10)
    y.sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    # LayerScale of shift branches starts at 0 but still gets gradients; nothing may be disconnected
    assert not missing, missing


def test_224_models_run_one_image():
    for name in ("bhvit_tiny_paper", "binaryvit_small"):
        m = create_model(name).eval()
        with torch.no_grad():
            assert m(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_eval_output_depends_only_on_sign_of_binary_inputs():
    """In eval mode the binary layers see +-1 only: perturbing the input of a
    BinaryActivation without crossing its threshold must not change anything."""
    from model.layers import BinaryActivation
    torch.manual_seed(0)
    act = BinaryActivation(4).eval()
    x = torch.randn(3, 4)
    x2 = x + 0.1 * torch.sign(x + act.move) * torch.rand_like(x)
    assert torch.equal(act(x), act(x2))


def test_export_qonnx_gives_bipolar_quant_nodes(tmp_path):
    """Brevitas export of a binary unit yields BipolarQuant nodes with +-1 values."""
    from brevitas.export import export_qonnx
    import onnx
    from model.blocks import BinaryResidualLinear
    cfg = get_config("bhvit_pynq_fmnist")
    unit = BinaryResidualLinear(cfg, 16, 32).eval()
    path = tmp_path / "unit.onnx"
    export_qonnx(unit, torch.randn(1, 5, 16), export_path=str(path))
    g = onnx.load(str(path)).graph
    ops = [n.op_type for n in g.node]
    assert ops.count("BipolarQuant") == 2, ops   # activation and weight


@pytest.mark.parametrize("name,expected", [
    ("bhvit_pynq_fmnist", 958_954), ("bhvit_pynq_cifar10", 959_210), ("bhvit_pynq_fmnist_fp", 957_386),
    ("bhvit_pynq_cifar10_fp", 957_642), ("binaryvit_pynq_fmnist", 948_942), ("binaryvit_pynq_fmnist_fp", 947_370)])
def test_board_sized_parameter_counts(name, expected):
    """The counts docs/training.md lists for the board-sized models."""
    assert count_parameters(create_model(name)) == expected
