"""The QDQ export and OpenVINO as a third runtime: the export carries the artifact's integer weights and agrees
with it on dev; an OpenVINO measurement on the local device stores the precision OpenVINO ran; the probe says
whether OpenVINO is there."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/sst2-2mb"


def _logits(path, ids, mask):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(["logits"], {"input_ids": ids[i : i + 1], "attention_mask": mask[i : i + 1]})[0]
                           for i in range(len(ids))])


def _integer_weights(artifact) -> dict[str, np.ndarray]:
    """Each integer linear layer's (out, in) matrix in the artifact: its int8 initializer, or its INT4 codes unpacked
    from the packed bytes (by the torch unpacking the deploy model uses, not the export's own)."""
    import torch

    from eibert.intlinear import unpack_int4

    art = onnx.load(str(Path(artifact) / "model.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in art.graph.initializer}
    mats = {n[: -len(".w_int8")]: w for n, w in inits.items() if n.endswith(".w_int8")}
    for n, packed in inits.items():
        if n.endswith(".w_uint4x2"):
            mats[n[: -len(".w_uint4x2")]] = unpack_int4(torch.from_numpy(packed.copy()), 2 * packed.shape[1]).numpy()
    return mats


def test_the_qdq_export_keeps_the_weights_and_agrees_with_the_integer_artifact(tmp_path, shipped_layers, shipped_dense):
    from eibert.data import load_task
    from eibert.deploy import prepare_inputs
    from eibert.qdq import qdq_model

    task = load_task()  # calibrated on the embedded training rows; scored on dev
    path = qdq_model(MODEL, tmp_path, task.train, 64)
    m = onnx.load(str(path))
    ops = [n.op_type for n in m.graph.node]
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    linear_layers = shipped_dense + 2  # and the pooler and classifier, float under TVM, integer here
    inputs = 3 + 4 * shipped_layers  # Q/K/V share one input quantization
    assert ops.count("QuantizeLinear") == inputs and ops.count("DequantizeLinear") == inputs + linear_layers
    qdq = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    linear = {n: w for n, w in _integer_weights(MODEL).items() if n + ".qdq_w" in qdq}
    assert len(linear) == linear_layers  # the embedding tables stay as they were (Gather on int8)
    for name, w in linear.items():  # exactly the learned int8 (or INT4) matrices, stored as they are multiplied
        assert np.array_equal(qdq[name + ".qdq_w"], w.T), name
    prepare_inputs(MODEL, task.dev, 64, tmp_path / "dev.npz")
    dev = np.load(tmp_path / "dev.npz")
    a, b = _logits(MODEL / "model.onnx", dev["input_ids"],
                   dev["attention_mask"]), _logits(path, dev["input_ids"], dev["attention_mask"])
    agree = int((a.argmax(1) == b.argmax(1)).sum())
    # static activation steps against per-call ones: +mixed students, 870 of 872 predictions equal, logits within 0.43;
    # +int4 seed 0: 869 of 872, within 0.26
    assert agree >= 0.99 * len(a) and np.abs(a - b).max() < 0.6, (agree, float(np.abs(a - b).max()))
    acc_a, acc_b = (a.argmax(1) == dev["labels"]).mean(), (b.argmax(1) == dev["labels"]).mean()
    assert abs(acc_a - acc_b) <= 0.005


def test_an_int4_artifact_with_a_step_a_row_has_a_qdq_form_and_a_block_wise_one_says_it_has_none(tiny_artifact,
                                                                                                   tiny_int4_rows_artifact,
                                                                                                   tiny_int4_artifact, tmp_path):
    from eibert.qdq import qdq_model
    from eibutil import UserError

    rows, data = tiny_int4_rows_artifact, tiny_artifact[1]
    m = onnx.load(str(qdq_model(rows, tmp_path, data.train, 32)))
    qdq = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    mats = {n: w for n, w in _integer_weights(rows).items() if n + ".qdq_w" in qdq}  # the tables stay Gather
    for name, w in mats.items():
        assert np.array_equal(qdq[name + ".qdq_w"], w.T), name
    int4 = [i.name for i in onnx.load(str(rows / "model.onnx")).graph.initializer if i.name.endswith(".w_uint4x2")]
    assert len(int4) >= 2 and all(n[: -len(".w_uint4x2")] in mats for n in int4)  # the INT4 layers came through
    try:
        qdq_model(tiny_int4_artifact[0], tmp_path / "blocks", data.train, 32)
    except UserError as e:
        assert "MatMulNBits" in str(e) and "block" in str(e)
    else:
        raise AssertionError("a block-wise INT4 artifact was exported to QDQ")


def test_an_openvino_measurement_on_the_local_device_records_the_precision_it_ran(tmp_path):
    import openvino  # noqa: F401  (the test extra installs it: the local device runs it)

    from devices.agent import Agent
    from devices.inventory import DeviceSpec
    from eibert.data import load_task
    from harness.measure.run import MeasureSettings, measure_on_device

    spec = DeviceSpec(transport="local", workdir=str(tmp_path / "dev"), threads=1, runtimes=["onnxruntime", "openvino"])
    with Agent("local", spec) as agent:
        facts = agent.probe()
    assert "openvino" in facts["runtimes"] and facts["versions"]["openvino"]
    st = MeasureSettings(seq_len=64, rows=48, warmup=2, min_count=20, min_duration_s=0.2, null_floor=False, end_to_end=False)
    out = measure_on_device(MODEL, "local", spec, "openvino", load_task().dev, st, tmp_path / "cache")
    ov = out["metrics"]["openvino"]
    assert ov["threads"] == 1 and ov["inference_precision"]
    assert set(ov["layers"]["FullyConnected"]) <= {"u8", "i8"}, ov  # the integer path, not dequantized float
    assert out["metrics"]["predictions_agree"] >= 47 and out["p50_ms"] > 0 and out["runtime"] == "openvino"


def test_the_headline_marks_the_fastest_runtime_on_each_device():
    import pandas as pd

    from harness.report.model import _headline

    host = pd.DataFrame([{"variant_id": "v", "subject": "artifact", "accuracy": 0.85, "dev_correct": None}])
    rows = [{"device": d, "runtime": rt, "subject": "artifact", "variant_id": "v", "variant": "v", "host_accuracy": 0.85,
             "size_bytes": 1,
             "p50_ms": p50, "peak_rss_bytes": 1, "model_memory_bytes": 1, "emulated": False, "model_bytes": 1}
            for d, rt, p50 in (("x86", "onnxruntime", 0.8), ("x86", "openvino", 0.4), ("x86", "tvm", 0.6), ("pi", "tvm", 3.0))]
    h = _headline(pd.DataFrame(rows), host, None).set_index(["device", "runtime"])["fastest"].to_dict()
    assert h == {("x86", "onnxruntime"): False, ("x86", "openvino"): True, ("x86", "tvm"): False, ("pi", "tvm"): False}
