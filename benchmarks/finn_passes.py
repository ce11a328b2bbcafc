"""FINN's passes on the QONNX export: whole graph vs the regions of hw.finn_lowering.

    .venv/bin/python benchmarks/finn_passes.py build/bhvit_pynq_fmnist/export/model_qonnx.onnx

Times FINN's ConvertQONNXtoFINN on the whole exported graph (what a FINN flow
would run first; about ten minutes on the 1,371-node export) and the whole
region-by-region lowering that `make export` does (hw.finn_lowering.lower).
Run `make export` first to have the file.
"""
import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("qonnx_file")
    p.add_argument("--skip-whole", action="store_true", help="time the region lowering only")
    a = p.parse_args()
    if not os.path.exists(a.qonnx_file):
        sys.exit(f"error: {a.qonnx_file} does not exist; `make export` writes it")
    from qonnx.core.modelwrapper import ModelWrapper

    import hw.custom_op  # noqa: F401
    from hw import finn_lowering as FL
    warnings.simplefilter("ignore")
    m = ModelWrapper(a.qonnx_file)
    print(f"{a.qonnx_file}: {len(m.graph.node)} nodes")
    t = time.time()
    _, regions = FL.lower(ModelWrapper(a.qonnx_file))
    print(f"hw.finn_lowering.lower: {len(regions)} regions, full FINN sequence on each: {time.time() - t:.1f} s")
    if not a.skip_whole:
        from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
        t = time.time()
        m.transform(ConvertQONNXtoFINN())
        print(f"ConvertQONNXtoFINN on the whole graph (first step only): {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
