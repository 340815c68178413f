"""The QDQ form of an artifact: the same learned INT8 weights and step sizes as QuantizeLinear / DequantizeLinear
pairs, which onnxruntime (QDQ fusion), OpenVINO (FakeQuantize) and TVM all read as integer patterns.

    path, info = export_qdq(artifact_dir, out_path, calib_ids, calib_mask)

`model.onnx` runs each linear layer as DynamicQuantizeLinear -> MatMulInteger -> rescale: the activations'
step is computed per call. OpenVINO's fast integer path wants constant steps, so here each linear layer's input
gets a static uint8 step and zero point calibrated on rows the caller passes (training rows, never dev), the
range being min..max over them (zero included, as DynamicQuantizeLinear does); the weights stay the artifact's
int8 matrices (transposed once, stored as they are multiplied) with their per-output-channel steps. An INT4 layer
with one step a row (the packed bytes unpacked by constant integer ops in `model.onnx`) gets its codes, values in
-8..7, as int8 here: the QDQ form is what a runtime reads, not the deployed file, and int8 is the weight type
onnxruntime's and OpenVINO's integer kernels take. Block-wise INT4 (MatMulNBits) has no QDQ form. Nothing
else in the graph changes. `info` lists the layers rewritten and the calibrated ranges.
"""

from pathlib import Path

import numpy as np

from eibutil import UserError
from eibutil.cache import Cache


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph) -> dict:
    out: dict = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


# the ops of the exporter's INT4 unpacking of a constant (eibert.intlinear.Int4Codes)
_UNPACK_OPS = {"Constant", "Cast", "Div", "Mul", "Sub", "Unsqueeze", "Concat", "Reshape", "Slice"}


def _weight_prefix(name: str, prod: dict, inits: set) -> str | None:
    """The layer a weight tensor belongs to: its int8 initializer (`<layer>.w_int8`) or, for an INT4 layer with one
    step a row, the packed bytes (`<layer>.w_uint4x2`) that integer ops on constants unpack; None for anything else."""
    todo, seen = [name], set()
    while todo:
        t = todo.pop()
        if t in inits:
            for suffix in (".w_int8", ".w_uint4x2"):
                if t.endswith(suffix):
                    return t[: -len(suffix)]
            continue
        node = prod.get(t)
        if node is None or node.name in seen or node.op_type not in _UNPACK_OPS:
            return None  # fed by an input or a non-constant op: not a weight
        seen.add(node.name)
        todo += [i for i in node.input if i]
    return None


def _blocks(graph) -> list[dict]:
    """Each MatMulInteger of the exporter's pattern: its input x, weight (an int8 initializer, or an INT4 layer's
    constant unpacking of it), step, bias and the output it ends in."""
    prod, cons = _producers(graph), _consumers(graph)
    inits = {i.name for i in graph.initializer}
    if any(n.op_type == "MatMulNBits" for n in graph.node):
        raise UserError("MatMulNBits (INT4 with a step per block of inputs) has no QDQ form here: export the artifact "
                        "with one INT4 step a row (compress.quant.block: null)")
    blocks = []
    for mm in (n for n in graph.node if n.op_type == "MatMulInteger"):
        dql, tr = prod.get(mm.input[0]), prod.get(mm.input[1])
        prefix = (_weight_prefix(tr.input[0], prod, inits) if tr is not None and tr.op_type == "Transpose" else None)
        if dql is None or dql.op_type != "DynamicQuantizeLinear" or prefix is None:
            raise UserError(f"MatMulInteger {mm.name}: not the exporter's pattern (DynamicQuantizeLinear input, transposed "
                            "int8 or unpacked INT4 weight)")
        chain = cons[mm.output[0]][0]  # Cast -> Mul (by the steps) -> Add (bias)
        while chain.op_type != "Add":
            chain = cons[chain.output[0]][0]
        blocks.append({"name": prefix, "path": mm.name.rsplit("/", 1)[0], "x": dql.input[0], "weight": tr.input[0],
                       "scale": prefix + ".scale", "bias": chain.input[1],
                       "out": chain.output[0]})
    return blocks


def weights(model, blocks: list[dict]) -> dict[str, np.ndarray]:
    """Each block's int8 weight matrix (out, in): an initializer as it is, an INT4 layer's unpacking computed once
    (the constant ops evaluated by onnxruntime, as it folds them at load)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    out = {b["weight"]: numpy_helper.to_array(inits[b["weight"]]) for b in blocks if b["weight"] in inits}
    folded = [b["weight"] for b in blocks if b["weight"] not in inits]
    if folded:
        fold = helper.make_graph(list(g.node), "fold", [], [helper.make_tensor_value_info(n, onnx.TensorProto.INT8, None)
                                                             for n in folded], list(g.initializer))
        m = helper.make_model(fold, opset_imports=model.opset_import)
        _drop_dead(m.graph)
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        out.update(zip(folded, sess.run(folded, {})))
    return out


def calibrate(model, blocks: list[dict], ids: np.ndarray, mask: np.ndarray) -> dict[str, tuple[float, float]]:
    """min and max of every linear layer's input over the calibration rows (zero included)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = list(dict.fromkeys(b["x"] for b in blocks))
    probe.graph.output.extend([onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names])
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    lo, hi = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for i in range(len(ids)):
        outs = sess.run(names, {"input_ids": ids[i : i + 1], "attention_mask": mask[i : i + 1]})
        for n, v in zip(names, outs):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    return {n: (lo[n], hi[n]) for n in names}


def _uint8_step(lo: float, hi: float) -> tuple[float, int]:
    scale = (hi - lo) / 255.0 or 1.0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def rewrite(model, blocks: list[dict], ranges: dict) -> object:
    """The model with every block as Q/DQ -> MatMul -> Add; the old nodes and initializers no longer used dropped."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    mats = weights(model, blocks)
    new_inits, new_nodes, done = [], [], set()
    for b in blocks:
        p = b["name"]
        w = mats[b["weight"]].T.copy()  # (in, out): stored as it is multiplied
        step = numpy_helper.to_array(inits[b["scale"]]).reshape(-1).astype(np.float32)
        new_inits += [numpy_helper.from_array(w, p + ".qdq_w"), numpy_helper.from_array(step, p + ".qdq_w_step"),
                      numpy_helper.from_array(np.zeros(step.shape, np.int8), p + ".qdq_w_zero")]
        x, path = b["x"], b["path"]
        if x not in done:  # one activation quantization per input (Q, K and V share theirs)
            scale, zero = _uint8_step(*ranges[x])
            new_inits += [numpy_helper.from_array(np.array(scale, np.float32), x + ".qdq_step"),
                          numpy_helper.from_array(np.array(zero, np.uint8), x + ".qdq_zero")]
            new_nodes += [helper.make_node("QuantizeLinear", [x, x + ".qdq_step", x + ".qdq_zero"], [x + ".q"],
                                           name=path + "/input/QuantizeLinear"),
                          helper.make_node("DequantizeLinear", [x + ".q", x + ".qdq_step", x + ".qdq_zero"], [x + ".dq"],
                                           name=path + "/input/DequantizeLinear")]
            done.add(x)
        new_nodes += [helper.make_node("DequantizeLinear", [p + ".qdq_w", p + ".qdq_w_step", p + ".qdq_w_zero"], [p + ".w_dq"],
                                       name=path + "/weight/DequantizeLinear", axis=1),
                      helper.make_node("MatMul", [x + ".dq", p + ".w_dq"], [p + ".mm"], name=path + "/MatMul"),
                      helper.make_node("Add", [p + ".mm", b["bias"]], [b["out"]], name=path + "/Add")]
    ends = {b["out"] for b in blocks}
    kept = [n for n in g.node if not set(n.output) & ends]
    g.initializer.extend(new_inits)
    g.ClearField("node")
    g.node.extend(_topological(kept + new_nodes, g))
    _drop_dead(g)
    onnx.checker.check_model(model)
    return model


def _topological(nodes: list, g) -> list:
    have = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    out, left = [], list(nodes)
    while left:
        ready = [n for n in left if all(i in have for i in n.input)]
        if not ready:
            raise UserError("QDQ rewrite: the graph has a cycle or a missing input")
        for n in ready:
            out.append(n)
            have.update(n.output)
        left = [n for n in left if n not in ready]
    return out


def _drop_dead(g) -> None:
    needed = {o.name for o in g.output}
    live = []
    for n in reversed(list(g.node)):
        if set(n.output) & needed:
            live.append(n)
            needed.update(n.input)
    g.ClearField("node")
    g.node.extend(reversed(live))
    keep = [i for i in g.initializer if i.name in needed]
    g.ClearField("initializer")
    g.initializer.extend(keep)


def export_qdq(artifact_dir, out_path, ids: np.ndarray, mask: np.ndarray) -> tuple[Path, dict]:
    """Write the QDQ model of `artifact_dir/model.onnx` to `out_path`, activations calibrated on (ids, mask)."""
    import onnx

    from eibutil import atomic_write_bytes

    model = onnx.load(str(Path(artifact_dir) / "model.onnx"))
    blocks = _blocks(model.graph)
    if not blocks:
        raise UserError(f"{artifact_dir}/model.onnx: no integer linear layer to express as QDQ")
    ranges = calibrate(model, blocks, ids, mask)
    qdq = rewrite(model, blocks, ranges)
    out = atomic_write_bytes(Path(out_path), qdq.SerializeToString())
    return out, {"layers": [b["name"] for b in blocks], "calibration_rows": len(ids),
                 "ranges": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in ranges.items()}, "bytes": out.stat().st_size}


CALIBRATION_ROWS = 200
QDQ_VERSION = 1  # bump when the rewrite changes: cached QDQ models are keyed by it


def qdq_model(model_dir, cache_dir, calib_split, seq_len: int) -> Path | None:
    """The QDQ model of an artifact for one sequence length, cached by the artifact's manifest and the calibration
    rows (the first CALIBRATION_ROWS of `calib_split`: training rows, never the rows it is scored on). None for a
    model.onnx without integer layers (a float model runs as it is)."""

    import onnx

    from eibert.deploy import prepare_inputs
    from eibutil import atomic_write_json
    from eibutil.files import content_key, sha256_file_memo

    key = content_key([sha256_file_memo(Path(model_dir) / "manifest.json"), calib_split._fingerprint, seq_len,
                       CALIBRATION_ROWS, QDQ_VERSION])
    out = Cache(cache_dir).path("qdq", key) / "model.qdq.onnx"
    if out.exists():  # a measurement repeats: the model is read and rewritten once
        return out
    if not any(n.op_type in ("MatMulInteger", "MatMulNBits")  # MatMulNBits alone: _blocks says it has no QDQ form
               for n in onnx.load(str(Path(model_dir) / "model.onnx"), load_external_data=False).graph.node):
        return None
    calib = prepare_inputs(model_dir, calib_split, seq_len, out.with_name("calibration.npz"), limit=CALIBRATION_ROWS)
    rows = np.load(out.with_name("calibration.npz"))
    _, info = export_qdq(model_dir, out, rows["input_ids"], rows["attention_mask"])
    atomic_write_json(out.with_name("qdq.json"), {**info, "calibration": calib})
    return out
