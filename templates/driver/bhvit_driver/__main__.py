"""``python3 -m bhvit_driver [validate|accuracy|benchmark|classify] ...`` on the board.

validate (default): the bundle's sample images must give exactly the expected logits (the
golden model's), then Vivado's post-route timing next to `make sim`'s estimate (where the bundle
holds them), then throughput / latency, then accuracy on ``--dataset`` (default: the
bundle's ``data/`` when present).  ``--json FILE`` writes every number measured.

Exit codes: 0 done (validate: sample bit-exact), 1 the sample's logits differ, 2 bad input
(missing files, unreadable dataset), 3 the accelerator did not answer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .accelerator import HERE, Accelerator, AcceleratorError, load_params
from .datasets import DatasetError, load_dataset
from .packing import InputError

BUNDLE = os.path.dirname(HERE)


def _parser():
    p = argparse.ArgumentParser(prog="python3 -m bhvit_driver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="validate", choices=["validate", "accuracy", "benchmark", "classify"])
    p.add_argument("files", nargs="*", help="classify: image files")
    p.add_argument("--bitfile", default=None, help="the overlay's .bit (default: the bundle's)")
    p.add_argument("--params", default=None, help="params.json (default: the one in this package)")
    p.add_argument("--batch-size", type=int, default=None, help="images per DMA transfer (default from params.json)")
    p.add_argument("--dataset", default=None, help="accuracy: a folder of class sub-folders, idx files or a .npz")
    p.add_argument("--limit", type=int, default=0, help="accuracy: first N images only")
    p.add_argument("--repeats", type=int, default=5, help="benchmark: runs per measurement (median)")
    p.add_argument("--no-download", action="store_true", help="do not (re)load the bitstream into the fabric")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    return p


def _bundled_dataset():
    d = os.path.join(BUNDLE, "data")
    return d if os.path.isdir(d) else None


def _write_json(path, res):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(res, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def timing_report(bundle=BUNDLE) -> tuple:
    """(results, lines): Vivado's post-route timing (timing_vivado.json, written by the Vivado
    script next to the bitstream) and the static estimate of `make sim` (timing_estimate.json),
    as far as the bundle holds them.  Side by side they calibrate the estimate."""
    res, lines = {}, []
    for key, name in (("vivado", "timing_vivado.json"), ("estimate", "timing_estimate.json")):
        path = os.path.join(bundle, name)
        if os.path.exists(path):
            with open(path) as fh:
                res[key] = json.load(fh)
    v, e = res.get("vivado"), res.get("estimate")
    if v:
        worst = (v.get("paths") or [{}])[0]
        wns = v.get("wns_ns")
        lines.append(f"[bhvit] timing, Vivado post-route: WNS {'?' if wns is None else f'{wns:+.3f}'} ns at "
                     f"{v.get('clock_mhz')} MHz" + (f"; worst path {worst.get('start')} -> {worst.get('end')}, "
                                                    f"{worst.get('datapath_ns')} ns, {worst.get('logic_levels')} "
                                                    "logic levels" if worst else ""))
    else:
        lines.append("[bhvit] timing, Vivado post-route: not in the bundle (bitstream built elsewhere or "
                     "before the report existed)")
    if e:
        lines.append(f"[bhvit] timing, estimate ({e.get('delay_model', {}).get('name', '?')}): worst path "
                     f"{e['worst_ns']:.2f} ns at {e['clock_mhz']:g} MHz -> slack {e['clock_ns'] - e['worst_ns']:+.2f} ns "
                     f"({e.get('worst_kind')} {e.get('worst_path')})")
    else:
        lines.append("[bhvit] timing, estimate: not in the bundle (run `make sim` before `make bitstream`)")
    return res, lines


def run(a, platform=None, log=print) -> tuple:
    """The command of parsed arguments ``a``; returns (exit code, results dict)."""
    params = load_params(a.params)
    res = dict(model=params["model"], board=params["board"], backend=params.get("backend"), command=a.command)
    acc = Accelerator(a.bitfile, params, platform=platform, batch_size=a.batch_size, download=not a.no_download)
    code = 0
    with acc:
        if a.command == "validate":
            x = np.load(os.path.join(BUNDLE, params["sample"]["input"]))
            want = np.load(os.path.join(BUNDLE, params["sample"]["expected"]))
            got = acc.predict(x)
            bad = int((got != want).any(axis=1).sum())
            res["sample"] = dict(images=int(len(x)), bit_exact=bool(np.array_equal(got, want)), mismatched_images=bad)
            log(f"[bhvit] sample of {len(x)} images: "
                + ("logits bit-exact with the golden model" if bad == 0 else f"MISMATCH in {bad} images"))
            code = 0 if bad == 0 else 1
            res["timing"], lines = timing_report()
            for line in lines:
                log(line)
        if a.command in ("validate", "benchmark"):
            b = acc.benchmark(a.batch_size, a.repeats)
            res["benchmark"] = b
            log(f"[bhvit] batch {b['batch_size']}: {b['images_per_s']:,.1f} images/s (DMA + accelerator), "
                f"{b['images_per_s_with_packing']:,.1f} images/s with packing; one image {1e3 * b['latency_one_image_s']:.3f} ms")
        dataset = a.dataset or (_bundled_dataset() if a.command == "validate" else None)
        if a.command == "accuracy" and not dataset:
            raise DatasetError("accuracy needs --dataset (a folder of class sub-folders, idx files or a .npz)")
        if dataset and a.command in ("validate", "accuracy"):
            images, labels = load_dataset(dataset, params["classes"], a.limit)
            ev = acc.evaluate(images, labels)
            ev["dataset"] = dataset
            res["accuracy"] = ev
            log(f"[bhvit] top-1 {100 * ev['accuracy']:.2f} % ({ev['correct']}/{ev['images']}) on {dataset}, "
                f"{ev['images_per_s']:,.1f} images/s end to end")
        if a.command == "classify":
            if not a.files:
                raise InputError("classify needs image files")
            from PIL import Image
            imgs = []
            for f in a.files:
                with Image.open(f) as im:
                    imgs.append(np.asarray(im.convert("L" if params["input"]["shape"][-1] == 1 else "RGB")))
            pred = acc.classify(np.stack(imgs))
            res["classify"] = {f: params["classes"][int(k)] for f, k in zip(a.files, pred)}
            for f, k in zip(a.files, pred):
                log(f"{f}: {params['classes'][int(k)]}")
    return code, res


def main(argv=None, platform=None) -> int:
    a = _parser().parse_args(argv)
    try:
        code, res = run(a, platform)
    except (FileNotFoundError, DatasetError, InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AcceleratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if a.json:
        _write_json(a.json, res)
    return code


if __name__ == "__main__":
    sys.exit(main())
