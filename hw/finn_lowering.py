"""FINN's own passes on the Brevitas QONNX export: the standard kernels.

The binary layers of the exported graph (``model_qonnx.onnx``) are what FINN's
flow was built for: a sign ``BipolarQuant(x - t)`` feeding a ``MatMul`` with
``BipolarQuant`` weights.  This module cuts each such region out of the
export, runs FINN's own transformation sequence on it, unchanged:

    ConvertQONNXtoFINN -> Streamline -> ConvertBipolarMatMulToXnorPopcount
    -> Streamline -> InferBinaryMatrixVectorActivation -> InferThresholdingLayer

and splices the resulting ``Thresholding`` / ``MVAU`` nodes (FINN's XNOR form:
binary 0/1 activations and weights, ``binaryXnorMode=1``, popcount output)
back into the export.  A sign that feeds a convolution or the QD attention
is left as exported: FINN makes a ``Thresholding`` kernel only of a
MultiThreshold with unit output scale (a 0/1 output), and those consumers
take the +-1 sign (``InferThresholdingLayer`` refuses the bipolar one).

Why regions and not the whole graph: qonnx's graph helpers scan every tensor
on each lookup, so one pass over the 1,371-node export costs ~10 s per
iteration, and FINN's passes iterate once per node they change:
``ConvertQONNXtoFINN`` alone took 613 s on the whole export (measured), while
a region of 7 nodes goes through the whole sequence in under a second.  The
passes themselves are FINN's; only their input is smaller.

What FINN's passes do not cover stays as exported and is the project's own
kernels in the dataflow graph (``hw.graph``): the grouped dilated binary
convolutions (qonnx's ``LowerConvsToMatMul`` lowers only dense and depthwise
ones); the >8-bit requantisers (``ConvertQONNXtoFINN`` keeps a ``Quant`` wider
than 8 bits, since a MultiThreshold would need 2**bits - 1 thresholds per
channel), QD attention, the shift unit, token reshuffles and LayerNorm.

The dense binary convolutions (the 2x2 patch merging) go through FINN's
convolution sequence (``LowerConvsToMatMul``, ..., ``InferConvInpGen``,
``InferShuffle``, ``InferElementwiseBinaryOperation``: :func:`check_conv_regions`)
as batch-1 regions, FINN's dataflow convention; FINN's sliding-window and
Shuffle nodes execute one image at a time, so these are checked region by
region against the export (every image of a batch) instead of being spliced
into the batched file.

Two checks make this more than a conversion:

* :func:`match_dataflow`: every FINN node produced here equals, parameter for
  parameter, the node of the project's dataflow graph (``dataflow.onnx``)
  that computes the same thing (weights up to the bipolar -> binary map
  ``(w + 1) / 2``, thresholds exactly);
* :func:`verify`: the export with FINN's nodes spliced in, executed by
  qonnx / FINN's Python execution, gives the golden logits (np.array_equal).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper

FINN = "finn.custom_op.fpgadataflow"


class LoweringError(RuntimeError):
    """FINN's passes did not turn a region into FINN hardware nodes."""


@dataclass
class Region:
    """A binary layer of the export with its sign and, after :func:`lower_region`, its FINN nodes."""
    kind: str                      # "mvau" (sign + MatMul) or "conv" (sign + dense Conv)
    nodes: list                    # the exported nodes it covers
    input: str                     # the stream before the sign
    output: str                    # the popcount (mvau) or +-1 sum (conv) stream after it
    lowered: list = field(default_factory=list)   # FINN nodes after the passes
    params: dict = field(default_factory=dict)    # initializer name -> (array, qonnx DataType)
    inner: dict = field(default_factory=dict)     # inner tensor name -> (shape, qonnx DataType)


# ---------------------------------------------------------------------- finding regions
def _const(model, name):
    return model.get_initializer(name)


def _is_weight_bq(model, node) -> bool:
    return node is not None and node.op_type == "BipolarQuant" and _const(model, node.input[0]) is not None


def _scalar(model, node, op, value) -> bool:
    if node is None or node.op_type != op:
        return False
    vals = [_const(model, i) for i in node.input]
    c = [v for v in vals if v is not None]
    return len(c) == 1 and np.asarray(c[0]).size == 1 and float(np.asarray(c[0]).reshape(())) == value


def find_regions(model) -> list[Region]:
    """Every sign ``BipolarQuant(Sub(x, t))``; where its one consumer is a
    MatMul with ``BipolarQuant`` weights, the region extends over the MatMul
    and the ``(y + MW) * 0.5`` that turns its +-1 sum into the popcount."""
    regions = []
    for bq in model.graph.node:
        if bq.op_type != "BipolarQuant" or _const(model, bq.input[0]) is not None:
            continue
        sub = model.find_producer(bq.input[0])
        if sub is None or sub.op_type != "Sub" or _const(model, sub.input[1]) is None:
            continue
        nodes, out = [sub, bq], bq.output[0]
        cons = model.find_consumers(out)
        if len(cons) == 1 and cons[0].op_type == "MatMul" and cons[0].input[0] == out:
            mm = cons[0]
            w = model.find_producer(mm.input[1])
            tr = None
            if w is not None and w.op_type == "Transpose":
                tr, w = w, model.find_producer(w.input[0])
            after = model.find_consumers(mm.output[0])
            mw = model.get_tensor_shape(mm.input[0])[-1]
            if _is_weight_bq(model, w) and len(after) == 1 and _scalar(model, after[0], "Add", float(mw)):
                add = after[0]
                mul = model.find_consumers(add.output[0])
                if len(mul) == 1 and _scalar(model, mul[0], "Mul", 0.5):
                    nodes += [w] + ([tr] if tr is not None else []) + [mm, add, mul[0]]
                    regions.append(Region("mvau", nodes, sub.input[0], mul[0].output[0]))
                    continue
    return regions


def find_conv_regions(model) -> list[Region]:
    """Every dense binary convolution with its sign: ``Sub -> BipolarQuant ->
    Transpose -> Reshape`` (tokens to an NCHW map) ``-> Cast -> Conv`` (BipolarQuant
    weights, group 1) ``-> Cast``.  Grouped convolutions are not FINN's."""
    from qonnx.util.basic import get_by_name
    regions = []
    for conv in model.graph.node:
        if conv.op_type != "Conv":
            continue
        group = get_by_name(conv.attribute, "group")
        w = model.find_producer(conv.input[1])
        if (group is not None and group.i != 1) or not _is_weight_bq(model, w):
            continue
        chain, x = [], model.find_producer(conv.input[0])
        for op in ("Cast", "Reshape", "Transpose", "BipolarQuant", "Sub"):
            if x is None or x.op_type != op or len(model.find_consumers(x.output[0])) != 1:
                break
            chain.insert(0, x)
            x = model.find_producer(x.input[0])
        after = model.find_consumers(conv.output[0])
        if len(chain) != 5 or len(after) != 1 or after[0].op_type != "Cast":
            continue
        regions.append(Region("conv", chain + [w, conv, after[0]], chain[0].input[0], after[0].output[0]))
    return regions


# ---------------------------------------------------------------------- FINN's passes on one region
def _region_model(model, region: Region):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model
    names = set()
    for n in region.nodes:
        names.update(n.input)
        names.update(n.output)
    inits = [i for i in model.graph.initializer if i.name in names]
    inner = names - {region.input, region.output}
    vis = [v for v in model.graph.value_info if v.name in inner]
    order = {n.name: i for i, n in enumerate(model.graph.node)}      # names are unique after clean-up
    g = helper.make_graph(sorted(region.nodes, key=lambda n: order[n.name]), "region",
                          [model.get_tensor_valueinfo(region.input)], [model.get_tensor_valueinfo(region.output)],
                          inits, value_info=vis)
    r = ModelWrapper(qonnx_make_model(g, opset_imports=list(model.model.opset_import)))
    for t in names:
        r.set_tensor_datatype(t, model.get_tensor_datatype(t))
    return r


def finn_steps():
    """FINN's binary-network sequence (as in its BNN end-to-end flow), unchanged."""
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation)
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    return [ConvertQONNXtoFINN(), Streamline(), ConvertBipolarMatMulToXnorPopcount(), Streamline(),
            RoundAndClipThresholds(), InferBinaryMatrixVectorActivation(), InferThresholdingLayer()]


def lower_region(model, region: Region, name: str) -> Region:
    """Run :func:`finn_steps` on the region; it must end as FINN hardware nodes only."""
    r = _region_model(model, region)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in finn_steps():
            try:
                r = r.transform(step)
            except Exception as exc:          # FINN raises its own and plain errors alike
                raise LoweringError(f"{name} (exported nodes {[n.name for n in region.nodes]}): FINN's "
                                    f"{type(step).__name__} failed: {exc}") from exc
    want = ["Thresholding", "MVAU"]
    got = [n.op_type for n in r.graph.node]
    if got != want or any(n.domain != FINN for n in r.graph.node):
        raise LoweringError(f"{name}: FINN's passes left {got} (expected {want}); "
                            f"the region was {[n.op_type for n in region.nodes]}")
    # Streamline renames tensors: the boundary gets the export's names back, the
    # inner tensors a prefix of the region's name so that regions cannot clash
    boundary = {r.graph.input[0].name: region.input, r.graph.output[0].name: region.output}
    tensors = {t for n in r.graph.node for t in list(n.input) + list(n.output)}
    rename = {t: boundary.get(t, f"{name}.{t}") for t in tensors}
    region.lowered, region.params, region.inner = [], {}, {}
    for n in r.graph.node:
        m = _copy(n)
        m.name = f"{name}.{n.op_type}"
        for lst in (m.input, m.output):
            for j, t in enumerate(lst):
                lst[j] = rename[t]
        region.lowered.append(m)
    for t in tensors - set(boundary):
        v = r.get_initializer(t)
        if v is not None:
            region.params[rename[t]] = (np.asarray(v), r.get_tensor_datatype(t))
        else:
            region.inner[rename[t]] = (r.get_tensor_shape(t), r.get_tensor_datatype(t))
    return region


def _copy(node):
    from onnx import NodeProto
    n = NodeProto()
    n.CopyFrom(node)
    return n


# ---------------------------------------------------------------------- splice
def splice(model, regions: list[Region]):
    """Replace every region's exported nodes by its FINN nodes.  FINN's Python
    execution computes in numpy and keeps the element type of the region's
    input (float64 in the export); a Cast declares the export's type again
    for the standard ops downstream, which ONNX Runtime type-checks."""
    g = model.graph
    for reg in regions:
        pos = min(list(g.node).index(n) for n in reg.nodes)
        for n in reg.nodes:
            g.node.remove(n)
        new = list(reg.lowered)
        declared = model.get_tensor_valueinfo(reg.output).type.tensor_type.elem_type
        last = new[-1]
        mid = last.output[0] + ".f32"
        last.output[0] = mid
        new.append(helper.make_node("Cast", [mid], [reg.output], to=declared, name=last.name + ".cast"))
        for i, n in enumerate(new):
            g.node.insert(pos + i, n)
        shape = model.get_tensor_shape(reg.output)
        container = model.get_tensor_valueinfo(reg.input).type.tensor_type.elem_type
        g.value_info.append(helper.make_tensor_value_info(mid, container, shape))
        for t, (shp, dt) in reg.inner.items():
            g.value_info.append(helper.make_tensor_value_info(t, container, shp))
            model.set_tensor_datatype(t, dt)
        for t, (v, dt) in reg.params.items():
            model.set_initializer(t, v)
            model.set_tensor_datatype(t, dt)
        model.set_tensor_datatype(mid, model.get_tensor_datatype(reg.output))
    from qonnx.transformation.general import RemoveUnusedTensors
    return model.transform(RemoveUnusedTensors())


def lower(model, progress: bool = False):
    """The export with FINN's Thresholding / MVAU nodes in place of its binary
    regions; returns (model, regions)."""
    from tqdm import tqdm
    regions = find_regions(model)
    for i, reg in enumerate(tqdm(regions, desc="FINN passes", unit="region", disable=not progress)):
        lower_region(model, reg, f"finn{i}")
    return splice(model, regions), regions


# ---------------------------------------------------------------------- checks
def match_dataflow(regions: list[Region], dataflow) -> dict:
    """Pair every FINN node made here with the dataflow graph's node that has
    the same parameters: {FINN node name: dataflow node name}.  Every region
    must find exactly one partner and no partner may be used twice."""
    thr, mvau = {}, {}
    for n in dataflow.graph.node:
        if n.op_type == "Thresholding":
            thr[n.name] = np.asarray(dataflow.get_initializer(n.input[1]))
        elif n.op_type == "MVAU":
            mvau[n.name] = np.asarray(dataflow.get_initializer(n.input[1]))
    used, pairs = set(), {}
    for reg in regions:
        nodes = {n.op_type: n for n in reg.lowered}
        t = reg.params[nodes["Thresholding"].input[1]][0]
        cands = [k for k, v in thr.items() if v.shape == t.shape and np.array_equal(v, t)]
        w = reg.params[nodes["MVAU"].input[1]][0]
        wm = [k for k, v in mvau.items() if v.shape == w.shape and np.array_equal((v + 1) // 2, w)]
        if len(wm) != 1:
            raise LoweringError(f"{nodes['MVAU'].name}: {len(wm)} MVAU nodes of the dataflow graph have "
                                "its weights (expected exactly one)")
        feeding = dataflow.find_producer(dataflow.get_node_from_name(wm[0]).input[0]).name
        cands = [c for c in cands if c == feeding and c not in used]
        if not cands:
            raise LoweringError(f"{nodes['Thresholding'].name}: the Thresholding feeding {wm[0]} in the dataflow "
                                "graph does not have its thresholds")
        pairs[nodes["MVAU"].name] = wm[0]
        pairs[nodes["Thresholding"].name] = feeding
        used.update((wm[0], feeding))
    return pairs


def verify(model, images_u8, golden_logits, batch: int) -> dict:
    """Execute the lowered export (FINN's Python execution of its nodes, qonnx
    for Quant, ONNX Runtime for the rest) and compare logits with golden."""
    import finn.custom_op.fpgadataflow  # noqa: F401  (registers FINN's op classes)

    from .qonnx_export import execute
    images_u8 = np.asarray(images_u8)
    n = len(images_u8) - len(images_u8) % batch
    for i in range(0, n, batch):
        got = execute(model, images_u8[i:i + batch])
        if not np.array_equal(got, golden_logits[i:i + batch]):
            return dict(equal=False, images=i)
    return dict(equal=True, images=n)


# ---------------------------------------------------------------------- dense binary convolutions
def conv_steps():
    """FINN's sequence for a binary convolution (its BNN flow), unchanged."""
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation)
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import (
        InferElementwiseBinaryOperation)
    from finn.transformation.fpgadataflow.convert_to_hw.shuffle import InferShuffle
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
    return [ConvertQONNXtoFINN(), Streamline(), LowerConvsToMatMul(), Streamline(),
            ConvertBipolarMatMulToXnorPopcount(), Streamline(), RoundAndClipThresholds(),
            InferBinaryMatrixVectorActivation(), InferThresholdingLayer(), InferConvInpGen(), InferShuffle(),
            InferElementwiseBinaryOperation()]


def _one_image(r):
    """This project's pre-pass before FINN's: drop the float64/float32 container
    Casts (identities on integer values) and make the region a batch-1 graph,
    FINN's dataflow convention (its sliding-window and Shuffle nodes are batch 1)."""
    from qonnx.transformation.infer_shapes import InferShapes
    g = r.graph
    for n in [n for n in g.node if n.op_type == "Cast"]:
        src, dst = n.input[0], n.output[0]
        if dst == g.output[0].name:
            r.find_producer(src).output[0] = dst
        else:
            for c in r.find_consumers(dst):
                for j, t in enumerate(c.input):
                    if t == dst:
                        c.input[j] = src
        g.node.remove(n)
    for n in g.node:
        if n.op_type == "Reshape":
            shape = np.asarray(r.get_initializer(n.input[1])).copy()
            shape[0] = 1
            r.set_initializer(n.input[1], shape)
    del g.value_info[:]
    for vi in list(g.input) + list(g.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
        vi.type.tensor_type.elem_type = TensorProto.FLOAT
    return r.transform(InferShapes())


def check_conv_regions(model, dataflow, seed: int = 0) -> dict:
    """FINN's passes on every dense binary convolution region of the export, one
    image at a time.  Each must become FINN hardware nodes only, equal the
    exported region on random inputs of its input's datatype (every image of a
    batch), and carry the weights / thresholds of the dataflow graph's
    ``XnorConv2d`` / ``Thresholding``."""
    from qonnx.core.onnx_exec import execute_onnx

    import finn.custom_op.fpgadataflow  # noqa: F401
    rng = np.random.default_rng(seed)
    convs = {n.name: n for n in dataflow.graph.node if n.op_type == "XnorConv2d"}
    out = dict(regions=0, equal=True, ops={}, pairs={})
    for i, reg in enumerate(find_conv_regions(model)):
        name = f"finnconv{i}"
        orig = _region_model(model, reg)
        r = _one_image(_region_model(model, reg))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in conv_steps():
                try:
                    r = r.transform(step)
                except Exception as exc:
                    raise LoweringError(f"{name} (exported nodes {[n.name for n in reg.nodes]}): FINN's "
                                        f"{type(step).__name__} failed: {exc}") from exc
        ops = [n.op_type for n in r.graph.node]
        if any(n.domain != FINN for n in r.graph.node) or "MVAU" not in ops or "ConvolutionInputGenerator" not in ops:
            raise LoweringError(f"{name}: FINN's passes left {ops}; the region was {[n.op_type for n in reg.nodes]}")
        for op in ops:
            out["ops"][op] = out["ops"].get(op, 0) + 1
        # equal to the exported region, image by image
        dt = model.get_tensor_datatype(reg.input)
        shape = model.get_tensor_shape(reg.input)
        x = rng.integers(int(dt.min()), int(dt.max()) + 1, size=shape).astype(np.float64)
        want = execute_onnx(orig, {orig.graph.input[0].name: x})[orig.graph.output[0].name]
        got = np.concatenate([execute_onnx(r, {r.graph.input[0].name: x[b:b + 1].astype(np.float32)})
                              [r.graph.output[0].name] for b in range(shape[0])])
        if not np.array_equal(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)):
            out["equal"] = False
        # the dataflow graph's XnorConv2d with these weights
        mv = next(n for n in r.graph.node if n.op_type == "MVAU")
        wf = np.asarray(r.get_initializer(mv.input[1]))
        as_mvau = {k: _conv_as_mvau(np.asarray(dataflow.get_initializer(n.input[1]))) for k, n in convs.items()}
        match = [k for k, v in as_mvau.items() if v.shape == wf.shape and np.array_equal(v, wf)]
        if len(match) != 1:
            raise LoweringError(f"{name}: {len(match)} XnorConv2d nodes of the dataflow graph have its weights "
                                "(expected exactly one)")
        thr = next(n for n in r.graph.node if n.op_type == "Thresholding")
        feed = dataflow.find_producer(dataflow.get_node_from_name(match[0]).input[0])
        t_df = np.asarray(dataflow.get_initializer(feed.input[1]))
        t_finn = np.asarray(r.get_initializer(thr.input[1]))
        if feed.op_type != "Thresholding" or t_df.shape != t_finn.shape or not np.array_equal(t_df, t_finn):
            raise LoweringError(f"{name}: its thresholds differ from those of {feed.name}, which feeds {match[0]}")
        out["pairs"][name] = match[0]
        out["regions"] += 1
    return out


def _conv_as_mvau(w):
    """(O, I, k, k) +-1 conv weights -> FINN's (k*k*I, O) binary MVAU matrix (im2col order kh, kw, c)."""
    o = w.shape[0]
    return (w.transpose(0, 2, 3, 1).reshape(o, -1).T + 1) // 2
