"""The artifact's INT8 linear layers run as integer kernels in onnxruntime: no weight matrix is float
in the session's optimised graph or reaches a float MatMul through a dequantization; the logits equal
the torch model with the same activation quantisation (emulated); the shipped model is in that format."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from eibert.deploy_layers import to_deploy
from eibert.export import export_onnx
from eibert.intcheck import float_weight_paths, optimised_graph
from eibert.intlinear import integer_graph
from eibert.quant import QuantSettings, quantize
from eibert.student import LogitsOnly, Student, StudentSpec

ROOT = Path(__file__).resolve().parents[1]
SPEC = StudentSpec(vocab_size=300, hidden=32, layers=2, heads=2, ffn=64, embedding_size=16, num_labels=2)


def _deploy(int4_kernel="int8", **quant):
    torch.manual_seed(0)
    return to_deploy(quantize(Student(SPEC).eval(), QuantSettings(**quant)), half_float=quant.get("mixed", False),
                     int4_kernel=int4_kernel)


@pytest.mark.parametrize("quant", [{"granularity": "per-tensor"}, {"granularity": "per-channel"},
                                   {"granularity": "per-module"}, {"granularity": "per-channel", "activations": True},
                                   {"granularity": "per-channel", "mixed": True}, {"granularity": "per-tensor", "mixed": True},
                                   {"granularity": "per-channel", "mixed": True, "activations": True},
                                   {"granularity": "per-channel", "bits": 4},
                                   {"granularity": "per-channel", "bits": 4, "int4_kernel": "nbits"},
                                   {"granularity": "per-channel", "mixed": True, "int4_kernel": "nbits"},
                                   {"granularity": "per-channel", "bits": 4, "block": 16},
                                   {"granularity": "per-tensor", "bits": 4, "block": 32, "activations": True}])
def test_every_weight_matrix_is_consumed_by_an_integer_operator(quant, tmp_path):
    """INT4 layers with a step per row run, by default, on the INT8 kernels (their packed bytes unpacked by
    constant integer ops that onnxruntime folds at load); block-wise ones, or int4_kernel nbits, on MatMulNBits."""
    import onnx

    model = _deploy(**quant)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, SPEC.vocab_size)
    assert float_weight_paths(path) == []
    ops = {n.op_type for n in optimised_graph(path).node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits"}
    nbits = sum(n.op_type == "MatMulNBits" for n in optimised_graph(path).node)
    # INT4 layers: the feed-forward pair of each layer (mixed), or 6 a layer + the embedding projection, pooler and
    # classifier (bits 4); every one packed two weights a byte in the file
    int4 = 2 * SPEC.layers if quant.get("mixed") else (6 * SPEC.layers + 3 if quant.get("bits") == 4 else 0)
    packed = [i for i in onnx.load(str(path)).graph.initializer if i.name.endswith("w_uint4x2") or i.name.endswith("w_int4")]
    assert len(packed) == int4 and all(i.data_type == onnx.TensorProto.UINT8 for i in packed)
    # on MatMulNBits: every INT4 layer with int4_kernel nbits; else those with more than one step a row (block-wise)
    blockwise = sum(type(m).__name__ == "DeployLinear4" and m.scale.shape[1] > 1 for m in model.modules())
    assert nbits == (int4 if quant.get("int4_kernel") == "nbits" else blockwise)
    assert (blockwise > 0) == bool(quant.get("block"))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    for length in (5, 17, 32):
        ids = torch.randint(0, SPEC.vocab_size, (1, length), generator=gen)
        mask = torch.ones_like(ids)
        got = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.no_grad(), integer_graph():
            want = LogitsOnly(model)(ids, mask).numpy()  # the same activation quantisation, in torch
        assert np.abs(got - want).max() < 1e-4, (length, np.abs(got - want).max())


@pytest.mark.parametrize("mixed", [False, True])
def test_the_check_catches_weights_dequantized_into_a_float_matmul(tmp_path, mixed):
    model = _deploy(granularity="per-channel", mixed=mixed)
    path = tmp_path / "weight-only.onnx"
    # outside integer_graph(): the old format (int8 bytes, Cast-Mul dequantization, a float MatMul)
    torch.onnx.export(LogitsOnly(model).eval(), (torch.ones((1, 8), dtype=torch.long),) * 2, str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17, dynamo=False,
                      do_constant_folding=False)
    problems = float_weight_paths(path)
    assert problems and any("float" in p for p in problems)
    if mixed:  # the INT4 matrices unpacked with integer arithmetic into a float MatMul (folded to float): named too
        assert any("ffn_in" in p for p in problems) and any("ffn_out" in p for p in problems), problems


def test_the_shipped_model_runs_integer_kernels():
    assert float_weight_paths(ROOT / "models" / "sst2-2mb" / "model.onnx") == []


@pytest.mark.integration
def test_tvm_computes_the_shipped_models_dense_layers_with_vnni(tmp_path, shipped_dense):
    """TVM keeps the shipped model's dense weights int8 and runs them through `vpdpbusd` (the kernels named by the
    build record), and the on-device runner's logits match onnxruntime's integer graph on the same rows."""
    from compiler.disasm import functions_using
    from devices.cpufeatures import host_flags
    from devices.inventory import DeviceSpec
    from eibert.data import load_task
    from harness.measure.run import MeasureSettings, build_for, measure_on_device

    model = Path(__file__).resolve().parents[1] / "models/sst2-2mb"
    st = MeasureSettings(seq_len=64, rows=24, warmup=1, min_count=5, min_duration_s=0.1, null_floor=False)
    rec = build_for(model, "x86-64-host", st, tmp_path / "cache")
    if "avx512_vnni" not in host_flags():  # the path follows the flags: this CPU has no VNNI, so float, and the record says why
        assert rec["int8_path"] == "float" and "+avx512vnni" in rec["int8_reason"] and rec["int8_layers"] == []
        return
    assert rec["int8_path"] == "vnni", rec.get("int8_reason")
    kernels = {layer["kernel"] for layer in rec["int8_layers"]}
    # embedding projection + 6 per layer; pooler and classifier (one row) stay float
    assert len(rec["int8_layers"]) == shipped_dense and kernels
    assert all(any(f.startswith(k) for f in functions_using(rec["lib"], "vpdpbusd", "x86_64")) for k in kernels), kernels
    assert rec["int8_verified"]["kernels_with"] == rec["int8_verified"]["kernels"] == len(kernels)
    spec = DeviceSpec(transport="local", target="x86-64-host", workdir=str(tmp_path / "dev"), threads=2)
    out = measure_on_device(model, "local", spec, "tvm", load_task().dev, st, tmp_path / "cache", build=rec)
    assert out["metrics"]["predictions_agree"] == out["n"] == 24
    assert out["metrics"]["max_logit_drift"] < 2e-2, out["metrics"]["max_logit_drift"]
