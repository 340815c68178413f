"""Per-operator profiles: the shipped model on the local device with both runtimes, and how operators are grouped."""

from pathlib import Path

import pytest

from harness.measure.profile import KINDS, profile_text, summarize_profile

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/sst2-2mb"
SPEC = {"layers": 2, "hidden": 256, "embedding_size": 128, "heads": 8}


@pytest.mark.parametrize("runtime", ["onnxruntime", "tvm", "openvino"])
@pytest.mark.integration
def test_a_profile_of_the_shipped_model_sums_to_its_p50(tmp_path, runtime, shipped_layers):
    """The profile's operators, their profiler's cost per call taken off, add up to the unprofiled inferences
    interleaved with the profiled ones within 20% for onnxruntime and TVM (one thread: onnxruntime's profiler
    serialises its thread pool, so at two its sum runs above them); OpenVINO's counters cover at least a third."""
    from devices.inventory import DeviceSpec
    from eibert.data import load_task
    from harness.measure.run import MeasureSettings, measure_on_device

    st = MeasureSettings(seq_len=64, rows=16, warmup=20, min_count=300, min_duration_s=1.0, null_floor=False, end_to_end=False,
                         profile=True, profile_runs=300)
    spec = DeviceSpec(transport="local", target="x86-64-host", workdir=str(tmp_path / "dev"), threads=1,
                      runtimes=["onnxruntime", "tvm", "openvino"])
    # OpenVINO's per-node counters leave out its scheduling between nodes: measured 0.41-0.79 x the p50 here
    # (its p50 itself moved from 0.79 to 1.29 ms between two runs on one idle machine)
    low = 0.35 if runtime == "openvino" else 0.8
    ratios = []
    for attempt in range(2):  # the plain inferences run between the profiled ones, so a load that comes and goes moves
        # both (against the earlier timed pass, TVM's sum was once 1.64 x in CI); one retry for a load during a pass
        out = measure_on_device(MODEL, "local", spec, runtime, load_task().dev, st, tmp_path / f"cache{attempt}")
        p = out["metrics"]["profile"]
        assert p and not p.get("error") and p["runs"] == 300 and set(p["by_kind_ms"]) == set(KINDS)
        assert p["p50_ms"] == out["p50_ms"] and p["sum_over_p50"] == pytest.approx(p["sum_ms"] / out["p50_ms"])
        ratios.append((p["sum_ms"] / p["plain_ms"], p["sum_ms"], p["plain_ms"], out["p50_ms"]))
        if low <= ratios[-1][0] <= 1.2:
            break
    assert low <= ratios[-1][0] <= 1.2, (ratios, p["by_kind_ms"])
    assert p["by_kind_ms"]["attention"] > 0 and p["by_kind_ms"]["feed-forward"] > 0 and p["by_kind_ms"]["norms"] > 0
    assert set(p["by_layer_ms"]) == {str(i) for i in range(shipped_layers)}  # every layer found, by name (onnxruntime)
    # or by the norms' order (TVM)
    assert p["overhead"] is not None and p["top"][0]["ms"] >= p["top"][-1]["ms"]
    # the model's memory is read before the profiled pass: a profiling session once made this 2 MB model's peak 165 MiB.
    # OpenVINO's compiled model grows with the graph: 56.5 MiB for the 2-layer INT8 student, 64.4 for the 4-layer
    # INT4 one, ~98 after its profiled pass (session 18); onnxruntime 16 / 32 MiB
    mem = out["metrics"]["memory"]
    bound = (80 if runtime == "openvino" else 64) * 2**20
    assert mem["model_peak_bytes"] < bound and mem["peak_end_bytes"] >= mem["peak_bytes"], mem


def _ort(name, op, us=10.0):
    return {"name": name, "op": op, "us": us, "shapes": []}


def test_onnxruntime_nodes_are_grouped_by_their_module_path():
    calls = [_ort("/student/embeddings/word/Gather", "Gather"),
             _ort("/student/layers.0/query/MatMulInteger", "MatMulIntegerToFloat"),
             _ort("/student/layers.0/Softmax", "Softmax"), _ort("/student/layers.0/MatMul/MatMulScaleFusion/", "FusedMatMul"),
             _ort("/student/layers.0/Add_1", "Add"), _ort("/student/layers.0/attn_norm/LayerNormalization", "LayerNormalization"),
             _ort("/student/layers.1/ffn_in/MatMulInteger", "DynamicQuantizeMatMul"), _ort("Gelu_token_10", "Gelu"),
             _ort("/student/layers.1/ffn_out/DynamicQuantizeLinear", "DynamicQuantizeLinear"),
             _ort("/student/pooler/MatMulInteger", "DynamicQuantizeMatMul"),
             _ort("/bert/encoder/layer.3/attention/output/LayerNorm/Add", "SkipLayerNormalization"),
             _ort("/bert/encoder/layer.3/output/dense/MatMul", "MatMul")]
    p = summarize_profile({"tool": "onnxruntime session profiling", "runs": 3, "calls": calls, "wall_ms": 0.2}, 0.1)
    assert p["by_kind_ms"] == pytest.approx({"embedding": 0.01, "attention": 0.03, "feed-forward": 0.03, "norms": 0.02,
                                             "head": 0.01, "quantize": 0.01, "other": 0.01})
    assert p["by_layer_ms"] == pytest.approx({"0": 0.05, "1": 0.02, "3": 0.02})
    assert p["sum_over_p50"] == pytest.approx(1.2) and p["overhead"] == pytest.approx(1.0) and p["sum_over_plain"] is None
    # with unprofiled inferences interleaved, the sum and the overhead are held against them (the p50 stays beside)
    p = summarize_profile({"tool": "onnxruntime session profiling", "runs": 3, "calls": calls, "wall_ms": 0.2,
                           "plain_ms": 0.16}, 0.1)
    assert p["sum_over_plain"] == pytest.approx(0.75) and p["overhead"] == pytest.approx(0.25)
    assert p["sum_over_p50"] == pytest.approx(1.2) and "0.75 x the 0.160 ms" in profile_text(p)


def _tvm(name, *shapes, us=10.0):
    return {"name": name, "op": name, "us": us, "shapes": [list(s) for s in shapes]}


def test_tvm_kernels_take_kind_and_layer_from_the_order_of_the_norms():
    layer = [_tvm("int8_quantize_m64_k256"), _tvm("int8_dense_vnni_m64_n256_k256"), _tvm("matmul", (8, 64, 32)),
             _tvm("fast_softmax"), _tvm("layer_norm1"),
             _tvm("int8_dense_vnni_m64_n512_k256"), _tvm("fast_gelu"), _tvm("vm.builtin.alloc_tensor"), _tvm("layer_norm1")]
    calls = [_tvm("take", (5000, 128)), _tvm("layer_norm"),
             _tvm("int8_dense_vnni_m64_n256_k128", (64, 128))] + layer * 2 + [_tvm("matmul2")]
    p = summarize_profile({"tool": "tvm relax vm instrument", "runs": 1, "calls": calls, "wall_ms": 0.3}, 0.25, SPEC)
    assert p["by_kind_ms"] == pytest.approx({"embedding": 0.02, "attention": 0.06, "feed-forward": 0.04, "norms": 0.05,
                                             "head": 0.01, "quantize": 0.02, "other": 0.02})
    assert p["by_layer_ms"] == pytest.approx({"0": 0.08, "1": 0.08})
    broken = summarize_profile({"tool": "tvm relax vm instrument", "runs": 1, "calls": calls[:-2], "wall_ms": 0.3}, 0.25, SPEC)
    assert broken["by_layer_ms"] == {} and broken["by_kind_ms"]["attention"] == pytest.approx(0.02)  # no pattern: by name only
    assert summarize_profile(None, 1.0) is None
    assert summarize_profile({"tool": "tvm relax vm instrument", "error": "the calls changed"},
                             1.0)["error"] == "the calls changed"
