"""C simulation of the HLS code with g++ and Xilinx's ap_types headers: build, run, compare.

Two kinds of binaries, both compiled with ``-Wall -Werror`` and cached under ``build/csim/``
(every translation unit by the hash of its source, so a node's object is shared by its
per-node testbench and by every project that holds it):

* a node testbench (:func:`build`): the nodes' own units (hw.hls.node_source) and a dispatcher
  (templates/hls/main_tb.cpp.j2 + node_tb.cpp.j2) that packs .npy rows into stream words, runs
  node i and unpacks its output; :func:`run` / :func:`simulate` call it;
* a generated project's top testbench (:func:`build_project`, from hw.hls_top.write_sources),
  which streams images through the whole top and compares its logits (:func:`run_testbench`).

Headers: ``$XILINX_HLS/include`` where Vitis HLS is installed, else the Apache-2.0 ap_types
headers that ``make setup`` takes from the hls4ml wheel into ``.venv/ap_types``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import cache, hls, templating
from .hls_top import TOP

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "csim"
# the flags of ../shared/spec/toolchain.md, plus -Werror: a warning fails the build
CXXFLAGS = ["-std=c++14", "-O1", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-uninitialized",
            "-Wno-maybe-uninitialized"]


class CsimError(RuntimeError):
    """The C simulation could not be built or run."""


def ap_types_dir() -> Path:
    xilinx = os.environ.get("XILINX_HLS")
    cands = ([Path(xilinx) / "include"] if xilinx else []) + [ROOT / ".venv" / "ap_types"]
    for c in cands:
        if (c / "ap_int.h").exists() and (c / "hls_stream.h").exists():
            return c
    raise CsimError(f"no ap_types headers (ap_int.h, hls_stream.h) in {', '.join(map(str, cands))}: "
                    "run `make setup` (it takes them from the hls4ml wheel) or set XILINX_HLS")


def compile_unit(src: str, tag: str, inc: Path, lib_key: str, include_dirs=()) -> Path:
    """g++ one translation unit into build/csim/, cached by the hash of its source,
    ``lib_key`` (the headers it may include) and the flags; returns the object file."""
    key = hashlib.sha256("\n".join([src, lib_key, str(inc), " ".join(CXXFLAGS)]).encode()).hexdigest()[:16]
    obj = CACHE / f"{tag}-{key}.o"
    if obj.exists():
        return obj
    cpp = cache.private(obj.with_suffix(".cpp"), ".cpp")
    cpp.write_text(src)
    tmp = cache.private(obj)
    incs = [a for d in include_dirs for a in ("-I", str(d))]
    cmd = ["g++", *CXXFLAGS, "-isystem", str(inc), *incs, "-I", str(templating.TEMPLATES / hls.LIBRARY), "-c",
           str(cpp), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise CsimError(f"g++ failed for {tag} ({cpp}):\n{res.stderr[-4000:]}")
    tmp.replace(obj)
    cpp.replace(obj.with_suffix(".cpp"))          # kept beside the object, for reading
    return obj


def compile_all(units: list, jobs: int | None, desc: str, progress: bool) -> list:
    """compile_unit over [(source, tag, lib_key, include_dirs)] in parallel; the object files."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm
    inc = ap_types_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        return list(tqdm(pool.map(lambda u: compile_unit(u[0], u[1], inc, u[2], u[3]), units), total=len(units),
                         desc=desc, unit="unit", disable=not progress))


def link(objs: list, exe: Path, what: str) -> Path:
    tmp = cache.private(exe)
    res = subprocess.run(["g++", *map(str, objs), "-o", str(tmp)], capture_output=True, text=True)
    if res.returncode != 0:
        raise CsimError(f"linking {what} failed:\n{res.stderr[-4000:]}")
    tmp.replace(exe)
    return exe


# ---------------------------------------------------------------------- node testbenches
def build(nodes: list, name: str, jobs: int | None = None, progress: bool = False) -> Path:
    """One testbench binary for these nodes (:class:`hw.hls.NodeCode`): one translation unit per
    node (compiled in parallel and cached, so a graph rebuilds only the nodes that changed) and a
    dispatcher; ``run(exe, i, ...)`` runs node i."""
    lib_key = hls.library_key()
    units = [(hls.node_source(n), n.fn[:50], lib_key, ()) for n in nodes]
    units.append((templating.render(f"{hls.LIBRARY}/main_tb.cpp.j2", nodes=nodes, name=name), "main", lib_key, ()))
    objs = compile_all(units, jobs, f"g++ {name}", progress)
    key = hashlib.sha256(" ".join(str(o) for o in objs).encode()).hexdigest()[:16]
    tag = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:60]
    exe = CACHE / f"{tag}-{key}"
    return exe if exe.exists() else link(objs, exe, name)


def run(exe: Path, index: int, *xs: np.ndarray) -> np.ndarray:
    """Node ``index`` of a testbench binary on (rows, width) integer inputs."""
    with tempfile.TemporaryDirectory() as d:
        fins = [Path(d) / f"in{i}.npy" for i in range(len(xs))]
        fout = Path(d) / "out.npy"
        for f, x in zip(fins, xs):
            np.save(f, np.ascontiguousarray(x, dtype=np.int64))
        res = subprocess.run([str(exe), str(index), *map(str, fins), str(fout)], capture_output=True, text=True)
        if res.returncode != 0:
            raise CsimError(f"{exe.name} node {index} exited with {res.returncode}: {res.stderr.strip()}")
        return np.load(fout)


def simulate(node: hls.NodeCode, *xs) -> np.ndarray:
    """Build (or reuse) the one-node testbench and run it on (rows, width) inputs."""
    return run(build([node], node.name), 0, *[np.asarray(x, dtype=np.int64) for x in xs])


def check_graph_nodes(graph, images_nhwc, op_types=None, progress: bool = False) -> dict:
    """Every node (of ``op_types``, default all), compiled together into one testbench and run on
    the golden input streams of these images: {node name: output == golden}."""
    from tqdm import tqdm

    from .execute import run as run_golden, stream_shapes
    from .ops import io_of, op_of
    trace: dict = {}
    run_golden(graph, images_nhwc, trace)
    trace[graph.input] = np.asarray(images_nhwc, dtype=np.int64)
    shapes = stream_shapes(graph, 1, np.asarray(images_nhwc).shape[1:])
    nodes = [n for n in graph.nodes if op_types is None or n.op in op_types]
    codes = [op_of(n).hls(io_of(graph, n, shapes)) for n in nodes]
    exe = build(codes, f"graph{len(codes)}", progress=progress)
    result = {}
    for i, (n, code) in enumerate(tqdm(list(zip(nodes, codes)), desc="csim nodes", disable=not progress)):
        xs = [trace[t].reshape(-1, s["width"]) for t, s in zip(n.inputs, code.inputs)]
        want = trace[n.outputs[0]]
        got = run(exe, i, *xs)
        result[n.name] = bool(np.array_equal(got, want.reshape(got.shape)))
    return result


# ---------------------------------------------------------------------- a whole project
def build_project(files: dict, jobs: int | None = None, progress: bool = True) -> Path:
    """Compile a project written by hw.hls_top.write_sources (in parallel, each file cached by
    the hash of its text) and link its testbench."""
    include = Path(files["include"])
    lib_key = hls.library_key()
    top_key = lib_key + hashlib.sha256((include / f"{TOP}.hpp").read_bytes()).hexdigest()
    tops = {Path(f).name for f in files["tb"]} | {f"{TOP}.cpp"}
    units = []
    for f in [*files["sources"], *files["tb"]]:
        is_top = Path(f).name in tops
        units.append((Path(f).read_text(), Path(f).stem[:50], top_key if is_top else lib_key,
                      [include] if is_top else []))
    objs = compile_all(units, jobs, "g++ (C simulation)", progress)
    exe = include.parent / "csim" / f"{TOP}_tb"
    exe.parent.mkdir(exist_ok=True)
    return link(objs, exe, "the testbench")


def run_testbench(exe: Path, images_nhwc: np.ndarray, expected: np.ndarray, workdir: Path) -> dict:
    """Run the top's testbench: {'logits': (N, classes), 'mismatched_images': int, 'stdout'}."""
    workdir.mkdir(parents=True, exist_ok=True)
    fi, fe, fo = workdir / "images.npy", workdir / "expected.npy", workdir / "logits.npy"
    np.save(fi, np.ascontiguousarray(images_nhwc, dtype=np.int64))
    np.save(fe, np.ascontiguousarray(expected, dtype=np.int64))
    res = subprocess.run([str(exe), str(fi), str(fe), str(fo)], capture_output=True, text=True)
    if res.returncode not in (0, 1) or not fo.exists():
        raise CsimError(f"the testbench failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    logits = np.load(fo)
    bad = int((logits != expected).any(axis=1).sum())
    return dict(logits=logits, mismatched_images=bad, stdout=res.stdout.strip(), returncode=res.returncode)
