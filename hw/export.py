"""`make export`: a trained checkpoint -> FINN-form dataflow ONNX graph + report.

    python -m hw.export --ckpt checkpoints/bhvit_pynq_fmnist/model.pt

Steps, each one a function of the previous result:

1. fold the checkpoint into the integer network (:mod:`hw.intnet`), or load
   one written by ``make golden`` (``--intnet``);
2. build the dataflow graph of kernel nodes (:mod:`hw.graph`), fold it (PE /
   SIMD per node, for ``--target-cycles`` per image, or from ``--folding``, a
   JSON written by an earlier run and edited by hand) and check the folding;
3. write it as ONNX in FINN's form (:mod:`hw.onnx_graph`), check that every
   node is a supported kernel and every binary weight is +-1;
4. execute that ONNX file with qonnx's ``execute_onnx`` (FINN's own Python
   execution of its Thresholding / MVAU nodes) and require every stream of
   it to equal the golden executor's, ``np.array_equal``; the PyTorch
   hardware-exact forward (:class:`hw.qat.TorchIntNet`) must give the same
   logits, and so must the QONNX file that Brevitas ``export_qonnx`` writes
   from it (:mod:`hw.qonnx_export`, executed by qonnx + ONNX Runtime);
   FINN's own passes lower the binary layers of that file to FINN
   ``Thresholding`` / ``MVAU`` nodes (:mod:`hw.finn_lowering`), which must
   equal the dataflow graph's nodes and again give the golden logits;
5. measure top-1 of the float model and the golden integer model;
6. write ``report.json`` / ``report.md``: every node with its input / output
   bit widths, weight bits, folding, expected cycles, memory and resources.

Outputs go to ``build/<model>/export/``: dataflow.onnx, model_qonnx.onnx,
model_finn.onnx, folding.json, report.json, report.md.  Bad input exits with code 2 and says what to do.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .cost import FoldingError, check_folding, fold_for_target, graph_cost
from .execute import stream_shapes
from .finn_lowering import LoweringError
from .graph import Graph, op_counts
from .passes import lower
from .onnx_graph import UnsupportedGraphError, execute_full, to_onnx, validate


# what a folding file sets: parallelism, image banks of map buffers, block-RAM tables (hw.cost)
FOLDING_KEYS = ("PE", "SIMD", "BANKS", "TABLE_BRAM")


def apply_folding(graph: Graph, folding: dict) -> None:
    """Set FOLDING_KEYS (PE / SIMD, BANKS of map buffers, TABLE_BRAM of Affine / RPReLU) from
    {node name: {"PE": p, "SIMD": s, ...}}; unknown names are an error."""
    names = {n.name: n for n in graph.nodes}
    unknown = sorted(set(folding) - set(names))
    if unknown:
        raise FoldingError(f"folding file names nodes the graph does not have: {', '.join(unknown[:5])}"
                           f"{' ...' if len(unknown) > 5 else ''}")
    for name, f in folding.items():
        for k in FOLDING_KEYS:
            if k in f:
                names[name].attrs[k] = int(f[k])


def apply_folding_file(graph: Graph, path, written_by: str) -> None:
    """apply_folding from a JSON file; a missing file says which command writes one."""
    path = Path(path)
    if not path.exists():
        raise FoldingError(f"folding file {path} does not exist ({written_by} writes one: folding.json)")
    apply_folding(graph, json.loads(path.read_text()))


def folding_of(graph: Graph) -> dict:
    return {n.name: {k: int(n.attrs[k]) for k in FOLDING_KEYS if k in n.attrs} for n in graph.nodes}


def verify_onnx(net, graph: Graph, images_u8: np.ndarray, batch: int = 50, progress: bool = True) -> dict:
    """Every stream of the ONNX execution == the golden executor's, on these images."""
    from tqdm import tqdm

    from .execute import run
    x = np.asarray(images_u8).transpose(0, 2, 3, 1)
    image_shape = x.shape[1:]
    streams = checked = batches = 0
    logits = []
    model_b = None
    for i in tqdm(range(0, len(x), batch), desc="onnx vs golden", unit="batch", disable=not progress):
        xb = x[i:i + batch]
        if model_b is None or xb.shape[0] != batch:
            model_b = to_onnx(graph, image_shape, batch=xb.shape[0])
        ctx = execute_full(model_b, xb)
        ref: dict = {}
        run(graph, xb, ref)
        for name, y in ref.items():
            got = np.rint(np.asarray(ctx[name], dtype=np.float64)).astype(np.int64)
            if not np.array_equal(got, y):
                return dict(equal=False, first_difference=name, images=int(i + len(xb)))
        streams = len(ref)
        batches += 1
        logits.append(ref[graph.output])
        checked += len(xb)
    return dict(equal=True, images=checked, streams_compared=streams, batches=batches,
                logits=np.concatenate(logits) if logits else np.zeros((0, graph.classes), np.int64))


def verify_torch(net, images_u8: np.ndarray, golden_logits: np.ndarray, chunk: int = 100) -> bool:
    """The PyTorch hardware-exact forward (hw.qat.TorchIntNet) gives the golden logits."""
    import torch

    from .qat import TorchIntNet
    tnet = TorchIntNet(net)
    with torch.no_grad():
        got = np.concatenate([tnet(images_u8[i:i + chunk]).numpy() for i in range(0, len(images_u8), chunk)])
    return bool(np.array_equal(got, np.rint(got)) and np.array_equal(got.astype(np.int64), golden_logits))


def finn_lowering_check(out: Path, dataflow, images_u8, golden_logits, batch: int) -> dict:
    """FINN's passes on the binary regions of model_qonnx.onnx -> model_finn.onnx:
    each FINN node must equal a dataflow-graph node, and the file must execute to
    the golden logits."""
    from qonnx.core.modelwrapper import ModelWrapper

    from . import finn_lowering as FL
    t0 = time.time()
    model, regions = FL.lower(ModelWrapper(str(out / "model_qonnx.onnx")), progress=True)
    pairs = FL.match_dataflow(regions, dataflow)
    for n in model.graph.node:                   # FINN's nodes carry the dataflow graph's names
        n.name = pairs.get(n.name, n.name)
    tmp = out / "model_finn.onnx.tmp"
    model.save(str(tmp))
    tmp.replace(out / "model_finn.onnx")
    res = FL.verify(model, images_u8, golden_logits, batch)
    res["conv"] = FL.check_conv_regions(ModelWrapper(str(out / "model_qonnx.onnx")), dataflow)
    from .qonnx_export import op_histogram
    res.update(regions=len(regions), matched=len(pairs), nodes=len(model.graph.node), ops=op_histogram(model),
               file=str(out / "model_finn.onnx"), seconds=round(time.time() - t0, 1))
    return res


def finn_line(fv) -> str:
    if not fv:
        return "FINN's passes on the QONNX export: not run (--finn-passes 0 or --qonnx-verify 0)."
    state = "bit-exact" if fv["equal"] else f"MISMATCH in the batch starting at test image {fv['images']}"
    fin = {k.split("::")[-1]: v for k, v in fv["ops"].items() if k.startswith("finn.")}
    return (f"FINN's passes (ConvertQONNXtoFINN, Streamline, ConvertBipolarMatMulToXnorPopcount, "
            f"InferBinaryMatrixVectorActivation, InferThresholdingLayer) on the {fv['regions']} binary regions of "
            f"the QONNX export -> `model_finn.onnx` ({', '.join(f'{k} x{v}' for k, v in fin.items())}); each of "
            f"its {fv['matched']} FINN nodes has exactly the parameters of the dataflow graph's node of the same "
            f"name; its execution vs golden logits: **{state}** on {fv['images']} test images "
            f"({fv['seconds']} s). {conv_line(fv.get('conv'))}")


def conv_line(cv) -> str:
    if not cv:
        return ""
    ops = ", ".join(f"{k} x{v}" for k, v in cv["ops"].items())
    return (f"The {cv['regions']} dense binary convolutions through FINN's convolution sequence (LowerConvsToMatMul, "
            f"InferConvInpGen, InferShuffle, InferElementwiseBinaryOperation), batch 1: {ops}; "
            f"{'equal' if cv['equal'] else 'NOT equal'} to the exported regions on random inputs, weights and "
            f"thresholds equal to the dataflow graph's {', '.join(cv['pairs'].values())}.")


def qonnx_line(qv) -> str:
    if not qv:
        return "Brevitas QONNX export: not run (--qonnx-verify 0)."
    ops = ", ".join(f"{k} x{v}" for k, v in qv["ops"].items())
    state = "bit-exact" if qv["equal"] else f"MISMATCH (first at test image {qv.get('first_difference_image')})"
    return (f"Brevitas `export_qonnx` of the hardware-exact module (`model_qonnx.onnx`, {qv.get('nodes', '?')} nodes: "
            f"{ops}), executed by qonnx `execute_onnx` vs golden logits: **{state}** on {qv['images']} test images "
            f"({qv.get('seconds', '?')} s).")


def write_report(out: Path, res: dict, cost: dict) -> None:
    from model.checkpoint import atomic_write_bytes
    atomic_write_bytes(out / "report.json", lambda fh: fh.write(json.dumps(res, indent=2, default=str).encode()))
    acc = res["accuracy"]
    ver = res["verification"]
    md = [f"# Dataflow export of {res['model']}", "",
          f"Command: `{res['command']}`", "",
          f"Graph: {len(cost['nodes'])} kernel nodes ({', '.join(f'{k} x{v}' for k, v in res['op_counts'].items())}).", "",
          "| test images | float top-1 | hardware-exact (golden integer) top-1 | agreement |", "|---|---|---|---|",
          f"| {acc['images']} | {acc['float_top1']:.2f}% | {acc['int_top1']:.2f}% | {acc['agreement']:.2f}% |", "",
          f"ONNX execution (qonnx `execute_onnx`, FINN's Thresholding / MVAU) vs golden executor: "
          f"**{'bit-exact' if ver['equal'] else 'MISMATCH at ' + ver.get('first_difference', '?')}** on "
          f"{ver['images']} test images, every one of the {ver.get('streams_compared', 0)} streams compared with np.array_equal. "
          f"PyTorch hardware-exact forward (`hw.qat.TorchIntNet`) vs golden logits: "
          f"**{'bit-exact' if ver.get('torch_equal') else 'MISMATCH or not run'}**.", "",
          qonnx_line(ver.get("qonnx")), "",
          finn_line(ver.get("finn")), "",
          f"Cost model at {cost['clock_mhz']:.0f} MHz (first analytical estimate): bottleneck "
          f"`{cost['bottleneck']}` at {cost['cycles_per_image']} cycles/image -> "
          f"{cost['images_per_s']:.0f} images/s; latency ~{cost['latency_cycles']} cycles; "
          f"{cost['luts']} LUT, {cost['bram36']} BRAM36, {cost['dsps']} DSP, "
          f"{cost['mem_bits'] / 8192:.1f} KiB of parameters and buffers.", "",
          "| node | op | in bits | out bits | weight bits | PE | SIMD | cycles | memory bits | LUT | BRAM36 | DSP |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in cost["nodes"]:
        md.append(f"| {r['name']} | {r['op']} | {','.join(map(str, r['in_bits']))} | {r['out_bits']} | "
                  f"{r['weight_bits'] or ''} | {r['PE']} | {r['SIMD'] or ''} | {r['cycles']} | {r['mem_bits']} | "
                  f"{r['luts']} | {r['bram36']} | {r['dsps']} |")
    atomic_write_bytes(out / "report.md", lambda fh: fh.write(("\n".join(md) + "\n").encode()))


def main(argv=None) -> int:
    from model.checkpoint import atomic_write_bytes

    from .cli import HwInputError, add_common_args, load_inputs
    from .golden import evaluate_int

    p = argparse.ArgumentParser(prog="python -m hw.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--target-cycles", type=int, default=10000,
                   help="fold every node to at most this many cycles per image (default 10000: 10k images/s at 100 MHz)")
    p.add_argument("--folding", default=None, help="folding JSON ({node: {PE, SIMD}}) to use instead")
    p.add_argument("--verify", type=int, default=1000, help="test images run through the ONNX graph (default 1000)")
    p.add_argument("--qonnx-verify", type=int, default=200,
                   help="test images run through the Brevitas QONNX export (default 200, at most --verify; 0 skips "
                        "it). qonnx executes its ~1,300 nodes one by one: about a minute per batch")
    p.add_argument("--qonnx-batch", type=int, default=100, help="batch size the QONNX file is exported for")
    p.add_argument("--finn-passes", type=int, default=1, choices=(0, 1),
                   help="run FINN's passes on the binary layers of the QONNX export and check the result "
                        "against golden on the --qonnx-verify images (default 1)")
    p.add_argument("--clock-mhz", type=float, default=100.0)
    a = p.parse_args(argv)
    t_start = time.time()
    try:
        inp = load_inputs(a, "export")
    except HwInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model, net, test, out, name, data = inp.model, inp.net, inp.test, inp.out, inp.name, inp.data
    graph = lower(net.graph)            # hw/passes.py: the graph the hardware flows build
    image_shape = (model.cfg.img_size, model.cfg.img_size, model.cfg.in_chans)
    try:
        if a.folding:
            apply_folding_file(graph, a.folding, "`make export`")
        else:
            fold_for_target(graph, image_shape, a.target_cycles)
        check_folding(graph, stream_shapes(graph, 1, image_shape))
        onnx_model = to_onnx(graph, image_shape, batch=1)
        validate(onnx_model)
    except (FoldingError, UnsupportedGraphError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tmp = out / "dataflow.onnx.tmp"
    onnx_model.save(str(tmp))
    tmp.replace(out / "dataflow.onnx")
    atomic_write_bytes(out / "folding.json", lambda fh: fh.write(json.dumps(folding_of(graph), indent=1).encode()))
    print(f"[export] wrote {out}/dataflow.onnx ({len(graph.nodes)} nodes) and folding.json")

    n_ver = min(a.verify, len(test.images))
    ver = verify_onnx(net, graph, test.images[:n_ver].numpy())
    golden_logits = ver.pop("logits", None)
    print(f"[export] ONNX execution vs golden on {n_ver} images: {'bit-exact' if ver['equal'] else 'MISMATCH'}")
    if ver["equal"]:
        ver["torch_equal"] = verify_torch(net, test.images[:n_ver].numpy(), golden_logits)
        print(f"[export] PyTorch hardware-exact forward vs golden on {n_ver} images: "
              f"{'bit-exact' if ver['torch_equal'] else 'MISMATCH'}")
    n_q = min(a.qonnx_verify, n_ver)
    if ver["equal"] and n_q:
        from . import qonnx_export
        t_q = time.time()
        qv = qonnx_export.verify(net, test.images[:n_q].numpy(), golden_logits[:n_q], out / "model_qonnx.onnx",
                                 batch=min(a.qonnx_batch, n_q))
        qv["seconds"] = round(time.time() - t_q, 1)
        ver["qonnx"] = qv
        print(f"[export] Brevitas export_qonnx -> {out}/model_qonnx.onnx ({qv.get('nodes', '?')} nodes); qonnx "
              f"execution vs golden logits on {qv['images']} images: {'bit-exact' if qv['equal'] else 'MISMATCH'}")
        if qv["equal"] and a.finn_passes:
            try:
                ver["finn"] = finn_lowering_check(out, onnx_model, test.images[:n_q].numpy(), golden_logits[:n_q],
                                                  batch=min(a.qonnx_batch, n_q))
            except LoweringError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"[export] {finn_line(ver['finn'])}")
    n = a.limit or len(test.images)
    acc = evaluate_int(net, model, test.images[:n], test.labels[:n])
    cost = graph_cost(graph, image_shape, a.clock_mhz)
    res = dict(model=name, checkpoint=str(a.ckpt), data=data, spec=net.spec.__dict__,
               command="python -m hw.export " + " ".join(argv if argv is not None else sys.argv[1:]),
               accuracy=acc, verification=ver, op_counts=op_counts(graph), cost=cost,
               seconds=round(time.time() - t_start, 1))
    write_report(out, res, cost)
    print(f"{name}: float top-1 {acc['float_top1']:.2f}%, hardware-exact (golden) top-1 {acc['int_top1']:.2f}% "
          f"on {acc['images']} test images; bottleneck {cost['bottleneck']} {cost['cycles_per_image']} cycles "
          f"-> {cost['images_per_s']:.0f} images/s at {a.clock_mhz:.0f} MHz")
    print(f"[export] wrote {out}/report.json and report.md")
    ok = (ver["equal"] and ver.get("torch_equal") and ver.get("qonnx", {}).get("equal", True)
          and ver.get("finn", {}).get("equal", True) and ver.get("finn", {}).get("conv", {}).get("equal", True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
