"""The deploy bundle's PYNQ driver (templates/driver/bhvit_driver) and the simulated board
(flows/simboard.py) it runs on here.

Packing: the driver's beats against an independent bit-by-bit model of the HLS top's
``axis_to_stream`` (hypothesis: pixel widths, shapes, values), round trips of input and output
packing, quantisation and padding, the error paths.  The simulated board's DMA-side adapter
(written from the hardware's side) must read the driver's beats back as the same pixels.
End to end (golden, ``pytest --golden``): the driver on the simulated board -- the stitched RTL
top of the shipped PYNQ-Z2 design in Verilator, the same cached build as tests/test_rtl_whole.py
-- must give the golden model's logits for 100 Fashion-MNIST test images.
"""
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "templates" / "driver"))

from bhvit_driver import Accelerator, AcceleratorError, InputError, load_dataset  # noqa: E402
from bhvit_driver.packing import (beats_per_image, pack_images, pack_logits, quantize, unpack_images,  # noqa: E402
                                  unpack_logits)

from flows.simboard import SimBoard  # noqa: E402

FMNIST_IN = dict(shape=[32, 32, 1], bits=8, signed=False, axis_bits=64)


def reference_beats(values_per_image, bits, axw=64):
    """The HLS top's axis_to_stream read backwards, one bit at a time with Python integers."""
    per_beat = axw // bits
    out = []
    for vals in values_per_image:
        vals = [int(v) & ((1 << bits) - 1) for v in vals]
        for b in range(-(-len(vals) // per_beat)):
            word = 0
            for k, v in enumerate(vals[b * per_beat:(b + 1) * per_beat]):
                for i in range(bits):
                    word |= ((v >> i) & 1) << (k * bits + i)
            out.append(word)
    return out


@st.composite
def packed_case(draw):
    bits = draw(st.sampled_from([1, 2, 4, 8, 16, 32]))
    signed = draw(st.booleans()) and bits > 1
    h, w, c = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = np.array(draw(st.lists(st.integers(lo, hi), min_size=n * h * w * c, max_size=n * h * w * c)),
                 dtype=np.int64).reshape(n, h, w, c)
    return dict(shape=[h, w, c], bits=bits, signed=signed, axis_bits=64), x


@settings(max_examples=150, deadline=None)
@given(packed_case())
def test_input_packing_matches_the_hls_adapter_and_round_trips(case):
    p_in, x = case
    words = pack_images(x, p_in)
    assert words.dtype == np.uint64 and words.size == len(x) * beats_per_image(p_in)
    assert [int(v) for v in words] == reference_beats(x.reshape(len(x), -1), p_in["bits"])
    assert np.array_equal(unpack_images(words, p_in, len(x)), x)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.binary(min_size=1024, max_size=1024))
def test_eight_bit_pixels_are_the_image_bytes_in_order(n, raw):
    """8 pixels per beat, pixel k in byte k: the beats are the HWC bytes of the images."""
    x = np.frombuffer(raw * n, dtype=np.uint8).reshape(n, 32, 32, 1)
    words = pack_images(x, FMNIST_IN)
    assert words.tobytes() == x.tobytes()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_output_unpacking_round_trips(data):
    bits = data.draw(st.integers(2, 32))
    signed = data.draw(st.booleans())
    axw = data.draw(st.sampled_from([32, 64])) if bits <= 32 else 64
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    n, classes = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    x = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n * classes, max_size=n * classes)),
                 dtype=np.int64).reshape(n, classes)
    p_out = dict(classes=classes, bits=bits, signed=signed, axis_bits=axw)
    beats = pack_logits(x, p_out)
    assert beats.dtype == (np.uint32 if axw == 32 else np.uint64)
    assert np.array_equal(unpack_logits(beats, p_out, n), x)
    # the hardware sign-extends (bhvit::stream_to_axis); the driver reads only the low bits
    junk = beats ^ (np.array(~((1 << bits) - 1) & ((1 << axw) - 1), dtype=beats.dtype))
    assert np.array_equal(unpack_logits(junk, p_out, n), x)


def test_quantize_pads_like_training_and_rounds_floats():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    q = quantize(img, FMNIST_IN)
    assert q.shape == (3, 32, 32, 1)
    assert np.array_equal(q[:, 2:30, 2:30, 0], img) and q.sum() == img.astype(np.int64).sum()
    assert np.array_equal(quantize(img[0], FMNIST_IN), q[:1])                   # one image
    assert np.array_equal(quantize(img.astype(np.float64) / 255, FMNIST_IN), q)  # floats in [0, 1]
    assert quantize(np.full((28, 28), 0.5 / 255), FMNIST_IN).max() == 1          # half rounds up


@pytest.mark.parametrize("bad, words", [
    (np.zeros((2, 33, 33)), "larger"),
    (np.full((1, 28, 28), 1.5), "[0, 1]"),
    (np.full((1, 28, 28), 300), "outside"),
    (np.zeros((2, 28, 28, 3), np.uint8), "channel"),
])
def test_quantize_rejects_bad_images_and_says_why(bad, words):
    with pytest.raises(InputError, match=None) as e:
        quantize(bad, FMNIST_IN)
    assert words in str(e.value)


def fake_design(in_bits=8, in_values=32 * 32, out_bits=25):
    return SimpleNamespace(in_bits=in_bits, in_values=in_values, in_fmt=dict(width=1, elems=1, signed=False),
                           out_bits=out_bits, out_signed=True, out_axis_bits=32, out_values=10)


@settings(max_examples=40, deadline=None)
@given(packed_case())
def test_simulated_boards_adapter_reads_the_drivers_beats(case):
    """Two independent implementations of the beat layout agree (the board's from the hardware's side)."""
    p_in, x = case
    x = np.where(x < 0, x + (1 << p_in["bits"]), x) if p_in["signed"] else x
    p_in = dict(p_in, signed=False)
    d = fake_design(p_in["bits"], int(np.prod(p_in["shape"])))
    d.in_fmt["width"] = p_in["shape"][-1]
    board = SimBoard(None, d)
    rows = board.beats_to_rows(pack_images(x, p_in).tobytes(), len(x))
    assert np.array_equal(rows, x.reshape(-1, p_in["shape"][-1]))


def sim_params(d, model="bhvit_pynq_fmnist"):
    return dict(model=model, board="pynq-z2", bitfile=f"{model}.bit", ip_name="bhvit_top", dma_name="axi_dma",
                control=dict(ap_ctrl=0, images=16), classes=[str(i) for i in range(10)],
                input=dict(shape=[32, 32, 1], bits=d.in_bits, signed=False, axis_bits=64),
                output=dict(classes=d.out_values, bits=d.out_bits, signed=bool(d.out_signed), axis_bits=d.out_axis_bits))


def test_wrong_parameters_hang_the_simulated_board_and_the_driver_times_out():
    """A driver whose image size does not match the design sends the wrong number of beats: the
    real top would wait for ever; the driver's timeout turns that into an error."""
    d = fake_design()
    board = SimBoard(None, d)
    params = sim_params(d)
    params["input"]["shape"] = [28, 28, 1]            # not the design's 32 x 32
    acc = Accelerator(params=params, platform=board, timeout_s=0.2)
    with pytest.raises(AcceleratorError, match="did not finish"):
        acc.predict(np.zeros((2, 28, 28), np.uint8))
    assert board.runs and "need 256 beats" in board.runs[-1]["hang"]


def test_datasets_npz_and_idx(tmp_path):
    import gzip
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5) % 10
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    gx, gy = load_dataset(tmp_path / "d.npz", [str(i) for i in range(10)], limit=3)
    assert np.array_equal(gx, x[:3]) and np.array_equal(gy, y[:3])
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + x.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + y.astype(np.uint8).tobytes())
    gx, gy = load_dataset(tmp_path, [str(i) for i in range(10)])
    assert np.array_equal(gx, x) and np.array_equal(gy, y)


needs_verilator = pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                                     or not (ROOT / ".venv/bin/verilator").exists(),
                                     reason="needs make, c++ and .venv/bin/verilator (make setup)")


@pytest.mark.golden
@needs_verilator
def test_driver_on_simulated_board_equals_golden_on_100_images(shipped, shipped_pynq_graph):
    from hw.execute import run
    g = shipped_pynq_graph
    board = SimBoard.from_graph(g, (32, 32, 1), "bhvit_pynq_fmnist")     # the cached build of test_rtl_whole
    test = shipped[2]
    padded = test.images[:100].numpy().transpose(0, 2, 3, 1).astype(np.int64)
    want = run(g, padded)
    raw = padded[:, 2:30, 2:30, 0].astype(np.uint8)                       # Fashion-MNIST as it comes, 28 x 28
    assert padded.sum() == raw.astype(np.int64).sum()
    with Accelerator(params=sim_params(board.d), platform=board, batch_size=100) as acc:
        got = acc.predict(raw)
        assert got.shape == want.shape == (100, 10)
        assert np.array_equal(got, want)
        assert np.array_equal(acc.classify(raw[:5], batch_size=2), np.argmax(want[:5], axis=1))   # 2 + 2 + 1
        ev = acc.evaluate(raw[:3], test.labels[:3].numpy())
        assert ev["correct"] == int((np.argmax(want[:3], 1) == test.labels[:3].numpy()).sum())
    assert [r["images"] for r in board.runs] == [100, 2, 2, 1, 3]
    assert board.runs[0]["cycles_per_image"] > 0


def test_validate_prints_vivados_timing_next_to_the_estimate(tmp_path):
    """validate's timing lines: Vivado's post-route WNS and worst path beside the estimate's worst
    path and slack; each missing file is named with the way to get it."""
    from bhvit_driver.__main__ import timing_report
    res, lines = timing_report(str(tmp_path))
    assert res == {} and "Vivado post-route: not in the bundle" in lines[0] and "run `make sim`" in lines[1]
    (tmp_path / "timing_vivado.json").write_text(json.dumps(dict(
        clock_mhz=100, wns_ns=-0.412, paths=[dict(slack_ns=-0.412, datapath_ns=9.87, logic_levels=12, start="a/C",
                                                  end="b/D")])))
    (tmp_path / "timing_estimate.json").write_text(json.dumps(dict(
        delay_model=dict(name="xc7-1"), worst_ns=8.25, clock_mhz=100.0, clock_ns=10.0, worst_kind="module",
        worst_path="stem.conv")))
    res, lines = timing_report(str(tmp_path))
    assert res["vivado"]["wns_ns"] == -0.412 and res["estimate"]["worst_ns"] == 8.25
    assert lines == ["[bhvit] timing, Vivado post-route: WNS -0.412 ns at 100 MHz; worst path a/C -> b/D, 9.87 ns, "
                     "12 logic levels",
                     "[bhvit] timing, estimate (xc7-1): worst path 8.25 ns at 100 MHz -> slack +1.75 ns (module stem.conv)"]

