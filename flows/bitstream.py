"""`make bitstream BOARD=pynq-z2 [BACKEND=hls|rtl]`: the generated design -> a PYNQ deploy bundle.

    python -m flows.bitstream --board pynq-z2 --backend hls --ckpt checkpoints/bhvit_pynq_fmnist/model.pt

Steps:

1. the vendor tools: ``vitis_hls`` and ``vivado`` (HLS backend) or ``vivado`` (RTL backend)
   must be on PATH; without them the run stops at once (exit 2) and prints the exact commands
   to run where they are installed (``--bundle-only`` skips the vendor steps and writes the
   bundle without a bitstream, e.g. for the simulated board; ``--bit`` / ``--hwh`` take a
   bitstream built elsewhere);
2. as `make hls` (flows/common.py ``prepare``): the board, the folded integer network, the
   estimate against the device (bad input: exit 2);
3. the vendor project:
   HLS: ``build/<model>/hls_<board>/`` as `make hls` writes it (without its C simulation) with
   ``vitis_hls.tcl`` running ``--hls-steps`` (default csynth, export: the IP), then
   ``vitis_hls -f vitis_hls.tcl`` and ``vivado -mode batch -source vivado.tcl`` there;
   RTL: ``build/<model>/rtl_<board>/``: the stitched SystemVerilog top (hw/rtl_top.py), its
   AXI wrapper (templates/rtl_ip/bhvit_axi_top.sv.j2: the DMA-side adapters and the same
   AXI-Lite control map as the HLS top), ``package_ip.tcl`` (Vivado IP packager) and
   ``vivado.tcl`` (the same block design as the HLS backend); then
   ``vivado -mode batch -source package_ip.tcl`` and ``vivado -mode batch -source vivado.tcl``;
   each tool's log beside its script; a failed step stops the flow (exit 1);
4. the deploy bundle ``build/<model>/deploy_<board>/`` (replaced as a whole, atomically):
   ``<model>.bit`` and ``<model>.hwh``; ``bhvit_driver/`` (the PYNQ driver package,
   templates/driver) with ``params.json`` (what the ARM core needs: input shape and padding,
   pixel bits, beat layout, output bits, classes, control registers, DMA and IP names);
   ``sample_input.npy`` / ``sample_expected.npy`` / ``sample_labels.npy`` (test images and the
   golden model's logits: the board must reproduce them bit for bit); ``data/`` (the test set,
   for accuracy on the board, where it is at hand); ``folding.json``; the timing record:
   ``timing_vivado.json`` and ``timing_summary.rpt`` (Vivado's post-route WNS / TNS / WHS and
   10 worst paths, written by vivado.tcl) next to ``timing_estimate.json`` (`make sim`'s static
   estimate, ``--timing-estimate``), which the driver's ``validate`` prints side by side;
   ``manifest.json`` (every file with its SHA-256).

Exit codes: 0 bundle written (with a bitstream unless --bundle-only), 1 a vendor step failed or
left no .bit / .hwh, 2 bad input or missing vendor tools.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flows.common import FlowInputError, command_line, flow_parser, golden_data, prepare, write_folding

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "templates" / "driver" / "bhvit_driver"
BACKENDS = ("hls", "rtl")
TOOLS = {"hls": ("vitis_hls", "vivado"), "rtl": ("vivado",)}
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]
SOURCE_SHAPES = {"fmnist": (28, 28, 1)}     # images as the data set has them (the model's input is padded)
IDX_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def vendor_steps(backend: str) -> list:
    """(tool, arguments, script) of each vendor step, in the order they run, in the project folder."""
    if backend == "hls":
        return [("vitis_hls", ["-f", "vitis_hls.tcl"], "vitis_hls.tcl"),
                ("vivado", ["-mode", "batch", "-source", "vivado.tcl"], "vivado.tcl")]
    return [("vivado", ["-mode", "batch", "-source", "package_ip.tcl"], "package_ip.tcl"),
            ("vivado", ["-mode", "batch", "-source", "vivado.tcl"], "vivado.tcl")]


def project_folder(model: str, backend: str, board: str) -> Path:
    return Path("build") / model / f"{backend}_{board}"


def bundle_folder(model: str, board: str) -> Path:
    return Path("build") / model / f"deploy_{board}"


def exact_commands(model: str, backend: str, board: str) -> list:
    proj = project_folder(model, backend, board)
    lines = [f"make bitstream BOARD={board} BACKEND={backend} BITSTREAM_ARGS=--bundle-only   "
             f"# here: writes {proj}/ and the bundle without a bitstream"]
    lines += ["# where Vivado" + (" and Vitis HLS are" if backend == "hls" else " is") + " installed, with that folder:",
              f"cd {proj}"]
    lines += [" ".join([tool, *args]) for tool, args, _ in vendor_steps(backend)]
    lines += ["cd -",
              f"make bitstream BOARD={board} BACKEND={backend} BITSTREAM_ARGS=\"--bundle-only --bit {proj}/bitstream/"
              f"{model}.bit --hwh {proj}/bitstream/{model}.hwh\"   # the bundle with that bitstream"]
    return lines


def missing_tools(backend: str) -> list:
    return [t for t in TOOLS[backend] if shutil.which(t) is None]


# ------------------------------------------------------------------------------ projects
def write_hls_project(pr, steps: list, tb_images: int) -> Path:
    """The HLS project as `make hls` writes it (sources, testbench data, folding, scripts)."""
    from flows.hls import COSIM_IMAGES, write_tcl
    from hw import hls_top
    folder = pr.inp.out
    files = hls_top.write_sources(pr.design, folder)
    write_folding(folder, pr.graph)
    images, logits = golden_data(pr.graph, pr.inp.test, tb_images)
    for name, arr in (("images", images), ("expected", logits), ("images_cosim", images[:COSIM_IMAGES]),
                      ("expected_cosim", logits[:COSIM_IMAGES])):
        np.save(folder / "tb" / f"{name}.npy", arr)
    write_tcl(folder, files, pr.board, pr.design, pr.inp.name, steps)
    return folder


def write_rtl_project(pr, jobs: int) -> Path:
    from flows.rtl_ip import write_rtl_project as write
    return write(pr, jobs)


def run_vendor(folder: Path, backend: str, log=print) -> dict:
    """Each vendor step in order (log in the folder); stops at the first that fails."""
    done = {}
    for i, (tool, args, script) in enumerate(vendor_steps(backend)):
        logfile = folder / f"{Path(script).stem}.log"
        log(f"[bitstream] {tool} {' '.join(args)} (in {folder}; log {logfile.name})")
        t0 = time.time()
        with open(logfile, "w") as fh:
            rc = subprocess.run([tool, *args], cwd=folder, stdout=fh, stderr=subprocess.STDOUT).returncode
        done[script] = dict(tool=tool, returncode=rc, seconds=round(time.time() - t0, 1), log=str(logfile))
        if rc != 0:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-15:]
            raise VendorError(f"{tool} {' '.join(args)} failed (exit {rc}) in {folder}; the end of {logfile}:\n  "
                              + "\n  ".join(tail))
    return done


class VendorError(RuntimeError):
    """A vendor step failed or did not leave its outputs."""


# ------------------------------------------------------------------------------ bundle
def driver_params(pr, backend: str, source_shape, sample_n: int, has_data: bool) -> dict:
    from hw.hls_top import IN_AXIS_BITS
    d, b = pr.design, pr.board
    return dict(
        format=1, model=pr.inp.name, board=b.name, part=b.part, backend=backend, clock_mhz=b.clock_mhz,
        bitfile=f"{pr.inp.name}.bit", ip_name="bhvit_top", dma_name="axi_dma",
        control=dict(ap_ctrl=0x00, images=0x10),     # Vitis HLS s_axilite map (RTL wrapper: the same)
        input=dict(shape=list(pr.image_shape), source_shape=list(source_shape), bits=d.in_bits,
                   signed=bool(d.in_fmt["signed"]), axis_bits=IN_AXIS_BITS, order="HWC",
                   note="raw pixels: the normalisation is folded into the stem; smaller images are zero-padded "
                        "around the centre"),
        output=dict(classes=d.out_values, bits=d.out_bits, signed=bool(d.out_signed), axis_bits=d.out_axis_bits,
                    note="integer logits of the classifier (one power-of-two scale for all classes: argmax = class)"),
        classes=FMNIST_CLASSES if pr.inp.data == "fmnist" else [str(i) for i in range(d.out_values)],
        batch_size=1000,
        sample=dict(input="sample_input.npy", expected="sample_expected.npy", labels="sample_labels.npy",
                    images=sample_n),
        dataset="data" if has_data else None)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


VIVADO_TIMING = ("timing_vivado.json", "timing_summary.rpt")   # vivado.tcl writes them next to the bitstream


def timing_estimate(report: Path, pr) -> dict | None:
    """The timing estimate of `make sim`'s report.json for this model and board (None where the
    report is missing, has no estimate, or is another checkpoint's)."""
    if not report.exists():
        return None
    res = json.loads(report.read_text())
    if not res.get("timing") or res.get("model") != pr.inp.name or res.get("board", {}).get("name") != pr.board.name:
        return None
    return dict(res["timing"], source=str(report), checkpoint=res.get("checkpoint"))


def write_bundle(dest: Path, pr, backend: str, sample_n: int, bit=None, hwh=None, command: str = "",
                 vendor: dict | None = None, timing: dict | None = None) -> dict:
    """The deploy bundle in ``dest`` (built in a temporary folder beside it, then swapped in).
    ``timing``: files for the bundle's timing record, name -> source file (Vivado's post-route
    report, next to the bitstream) or dict (written as JSON: `make sim`'s estimate)."""
    from model.data import DEFAULT_ROOT
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        name = pr.inp.name
        if bit or hwh:
            for src, ext in ((bit, ".bit"), (hwh, ".hwh")):
                if not src or not Path(src).exists():
                    raise FlowInputError(f"the overlay needs both {name}.bit and {name}.hwh: {src or ext} is missing")
                shutil.copyfile(src, tmp / f"{name}{ext}")
        shutil.copytree(DRIVER, tmp / "bhvit_driver", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        images, logits = golden_data(pr.graph, pr.inp.test, sample_n)
        src_shape = SOURCE_SHAPES.get(pr.inp.data, tuple(pr.image_shape))
        h, w = pr.image_shape[:2]
        top, left = (h - src_shape[0]) // 2, (w - src_shape[1]) // 2
        crop = images[:, top:top + src_shape[0], left:left + src_shape[1], :]
        if int(np.abs(images).sum()) != int(np.abs(crop).sum()):
            raise FlowInputError(f"the test images are not zero-padded {src_shape[0]}x{src_shape[1]} images")
        np.save(tmp / "sample_input.npy", crop.astype(np.uint8))
        np.save(tmp / "sample_expected.npy", logits.astype(np.int64))
        np.save(tmp / "sample_labels.npy", pr.inp.test.labels[:sample_n].numpy().astype(np.int64))
        has_data = False
        if pr.inp.data == "fmnist":
            src = DEFAULT_ROOT / "fashion-mnist"
            if all((src / f).exists() for f in IDX_TEST):
                (tmp / "data").mkdir()
                for f in IDX_TEST:
                    shutil.copyfile(src / f, tmp / "data" / f)
                has_data = True
        params = driver_params(pr, backend, src_shape, sample_n, has_data)
        (tmp / "bhvit_driver" / "params.json").write_text(json.dumps(params, indent=1))
        write_folding(tmp, pr.graph)
        for name, src in (timing or {}).items():
            if isinstance(src, dict):
                (tmp / name).write_text(json.dumps(src, indent=1))
            else:
                shutil.copyfile(src, tmp / name)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = dict(model=name, board=pr.board.name, backend=backend, command=command,
                        bitstream=bool(bit), vendor_steps=vendor or {}, created=time.strftime("%Y-%m-%d %H:%M:%S"),
                        run_on_board="cd <bundle> && sudo python3 -m bhvit_driver validate --json results.json",
                        files={str(p.relative_to(tmp)): _sha256(p) for p in files})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# ------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    p = flow_parser("flows.bitstream", __doc__, 4, "parallel Vivado runs (default 4)")
    p.add_argument("--backend", default="hls", help="hls (Vitis HLS IP) or rtl (the SystemVerilog top, packaged)")
    p.add_argument("--bundle-only", action="store_true", help="no vendor steps: write the project and the bundle "
                                                              "without a bitstream (or with --bit / --hwh)")
    p.add_argument("--bit", default=None, help="a .bit built elsewhere for this design (with --hwh)")
    p.add_argument("--hwh", default=None, help="its .hwh")
    p.add_argument("--sample-images", type=int, default=16, help="test images (and golden logits) in the bundle")
    p.add_argument("--hls-steps", default="csynth,export", help="Vitis HLS steps (HLS backend; csim is make hls')")
    p.add_argument("--bundle", default=None, help="bundle folder (default build/<model>/deploy_<board>)")
    p.add_argument("--timing-estimate", default=None, metavar="REPORT",
                   help="`make sim`'s report.json whose timing estimate goes into the bundle next to Vivado's "
                        "post-route timing (default build/<model>/sim_<board>/report.json, where it exists)")
    a = p.parse_args(argv)
    t0 = time.time()
    from flows.boards import UnknownBoardError, get_board
    try:
        board = get_board(a.board)
    except UnknownBoardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backend = a.backend.strip().lower()
    if backend not in BACKENDS:
        print(f"error: unknown backend {a.backend!r}: choose hls or rtl", file=sys.stderr)
        return 2
    if bool(a.bit) != bool(a.hwh):
        print("error: --bit and --hwh go together (PYNQ's Overlay loads the pair)", file=sys.stderr)
        return 2
    if a.sample_images < 1:
        print("error: --sample-images must be at least 1", file=sys.stderr)
        return 2
    if a.timing_estimate and not Path(a.timing_estimate).exists():
        print(f"error: --timing-estimate {a.timing_estimate}: no such file (the report.json `make sim` writes, e.g. "
              f"build/<model>/sim_{board.name}/report.json)", file=sys.stderr)
        return 2
    model_hint = Path(a.ckpt).parent.name or "<model>"
    vendor = not a.bundle_only and not a.bit
    if vendor:
        missing = missing_tools(backend)
        if missing:
            print(f"error: `make bitstream` needs {' and '.join(missing)} on PATH (AMD Vivado"
                  f"{' / Vitis HLS' if 'vitis_hls' in missing else ''}, e.g. `source <Vivado install>/settings64.sh`), "
                  f"and {'they are' if len(missing) > 1 else 'it is'} not here. The exact commands:", file=sys.stderr)
            for line in exact_commands(model_hint, backend, board.name):
                print(f"    {line}", file=sys.stderr)
            return 2
    try:
        if backend == "hls":
            from hw import hls_top
            pr = prepare(a, "hls", hls_top.design)
        else:
            from hw import rtl_top
            pr = prepare(a, "rtl", rtl_top.rtl_design)
    except FlowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    steps = [s.strip() for s in a.hls_steps.split(",") if s.strip()]
    if backend == "hls":
        folder = write_hls_project(pr, steps, min(20, len(pr.inp.test.images)))
    else:
        folder = write_rtl_project(pr, a.jobs)
    print(f"[bitstream] wrote the {backend.upper()} project {folder}/")
    bit, hwh = a.bit, a.hwh
    vendor_res = {}
    if vendor:
        try:
            vendor_res = run_vendor(folder, backend)
            bit = folder / "bitstream" / f"{pr.inp.name}.bit"
            hwh = folder / "bitstream" / f"{pr.inp.name}.hwh"
            if not bit.exists() or not hwh.exists():
                raise VendorError(f"Vivado finished but left no {bit} / {hwh}; see {folder}/vivado.log")
        except VendorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    dest = Path(a.bundle) if a.bundle else bundle_folder(pr.inp.name, board.name)
    timing = {name: folder / "bitstream" / name for name in VIVADO_TIMING
              if vendor and (folder / "bitstream" / name).exists()}
    if vendor and "timing_vivado.json" not in timing:
        print(f"warning: Vivado left no {folder}/bitstream/timing_vivado.json: the bundle has no post-route timing",
              file=sys.stderr)
    sim_report = Path(a.timing_estimate) if a.timing_estimate else ROOT / "build" / pr.inp.name / f"sim_{board.name}" / "report.json"
    est = timing_estimate(sim_report, pr)
    if est:
        timing["timing_estimate.json"] = est
        print(f"[bitstream] timing estimate from {sim_report}: worst path {est['worst_ns']:.2f} ns at "
              f"{est['clock_mhz']:g} MHz ({'meets' if est['meets'] else 'MISSES'} the clock)")
    else:
        print(f"[bitstream] no timing estimate in the bundle ({sim_report} has none for {pr.inp.name} on {board.name}): "
              f"`make sim BOARD={board.name}` first puts one next to Vivado's post-route timing")
    try:
        man = write_bundle(dest, pr, backend, min(a.sample_images, len(pr.inp.test.images)), bit, hwh,
                           command_line("flows.bitstream", argv), vendor_res, timing)
    except FlowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[bitstream] deploy bundle {dest}/ ({len(man['files'])} files"
          + (", with the bitstream" if man["bitstream"] else ", WITHOUT a bitstream (--bundle-only): make deploy needs "
             "one") + f"; {time.time() - t0:.0f} s)")
    if man["bitstream"]:
        print(f"[bitstream] next: make deploy BOARD={board.name} PYNQ_HOST=xilinx@<board address>")
    else:
        print(f"[bitstream] on the simulated board: python -m flows.simboard --bundle {dest} --ckpt {a.ckpt} -- "
              "validate --batch-size 8 --repeats 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
