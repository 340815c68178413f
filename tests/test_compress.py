"""EI-BERT compression on tiny data: cross-distillation moves both models (the teacher less), LSQ step
sizes move, the exported artifact matches the fake-quantized model under onnxruntime, its manifest
accounts for every deployed byte, and a second run is a cache hit."""

import copy
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eibert.compress import VocabSettings, compress, planned_key
from eibert.deploy_layers import to_deploy
from eibert.distill import DistillSettings, pair_rows, train_student
from eibert.export import ort_logits
from eibert.hub import load_classifier, load_tokenizer
from eibert.quant import QuantSettings, calibrate_modular, quantize, step_sizes
from eibert.student import Student, StudentSpec, init_from_teacher
from eibert.textcls import collate, encode
from eibert.vocab import build_pruned_tokenizer, select_tokens, token_frequency

STUDENT = {"layers": 1, "hidden": 16, "heads": 1, "ffn": 32, "embedding_size": 8, "integrate": True}
# onnxruntime vs the same int8 graph in torch: float32 rounding only, which can move an activation across a
# rounding boundary of the dynamic int8 quantization (one such step: 1.6e-4 on a tiny model)
LOGIT_TOL = 5e-4


QUANT = QuantSettings(granularity="per-channel", steps_per_block=20)


def run(tiny, quant=QUANT, mode="cross"):
    return compress(tiny["teacher"], tiny["data"], student=STUDENT, vocab=VocabSettings(size=400, importance_rows=64),
                    distill=DistillSettings(mode=mode, max_steps=4, batch_size=16), quant=quant,
                    cache_dir=tiny["cache"], max_seq_len=32, calib_rows=32, progress=False)


def test_artifact_manifest_accounts_for_every_deployed_byte(tiny):
    res = run(tiny)
    art = Path(res["artifact_dir"])
    manifest = json.loads((art / "manifest.json").read_text())
    deployed = [n for n, f in manifest["files"].items() if f["deployed"]]
    assert sorted(deployed) == ["model.onnx", "vocab.txt"]
    on_disk = sum((art / n).stat().st_size for n in deployed)
    assert manifest["size_bytes"] == on_disk == sum(manifest["parts"].values()) == res["size_bytes"]
    for name, f in manifest["files"].items():
        assert (art / name).stat().st_size == f["bytes"]
    assert manifest["parts"]["tokenizer"] == (art / "vocab.txt").stat().st_size
    assert manifest["parts"]["embeddings"] > 0 and manifest["parts"]["encoder"] > 0 and manifest["parts"]["head"] > 0
    import onnx

    int8 = [i for i in onnx.load(str(art / "model.onnx")).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 9  # word/position/type embeddings, projection, 6 encoder matrices, head: stored as int8


def test_ort_logits_match_fake_quantized_torch_model(tiny):
    res = run(tiny)
    assert res["max_logit_diff_vs_torch"] < LOGIT_TOL
    tok = load_tokenizer(str(Path(res["artifact_dir"])))
    rows = encode(tok, tiny["data"].dev, 32)
    logits = ort_logits(res["artifact_dir"], rows)
    acc = float((logits.argmax(-1) == np.array([y for _, y in rows])).mean())
    assert acc == res["dev_accuracy"] and res["dev_n"] == 32


def test_second_run_is_a_cache_hit_and_quant_change_reuses_the_student(tiny):
    first = run(tiny)
    again = run(tiny)
    assert again["cache_hit"] and again["artifact_dir"] == first["artifact_dir"]
    other = run(tiny, quant=QuantSettings(granularity="per-tensor", steps_per_block=20))
    assert other["stages"]["student"]["cache_hit"] and other["stages"]["vocab"]["cache_hit"]
    assert not other["stages"]["artifact"]["cache_hit"] and other["artifact_dir"] != first["artifact_dir"]
    fp = run(tiny, quant=None)  # float export of the same student
    assert fp["size_bytes"] > first["size_bytes"]


def test_the_planned_key_is_the_artifacts_key_without_training(tiny, tmp_path):
    """bench/frontier.py knows a stored row's artifact by the key compress will give it, computed untrained."""
    from eibutil.cache import Cache

    args = dict(student=STUDENT, vocab=VocabSettings(size=400, importance_rows=64),
                distill=DistillSettings(mode="cross", max_steps=4, batch_size=16), quant=QUANT, cache_dir=str(tmp_path),
                max_seq_len=32, calib_rows=32)
    key = planned_key(tiny["teacher"], tiny["data"], **args)
    assert not list(Cache(tmp_path).area("student").glob("*/entry.json"))  # nothing trained
    assert planned_key(tiny["teacher"], tiny["data"], **{**args, "quant": None}) != key
    assert planned_key(tiny["teacher"], tiny["data"], **{**args, "distill": DistillSettings(mode="cross", max_steps=4,
                                                                                            batch_size=16, seed=1)}) != key
    assert compress(tiny["teacher"], tiny["data"], progress=False, **args)["cache_key"] == key


def test_artifact_loads_with_auto_tokenizer_and_evaluate(tiny):
    from transformers import AutoTokenizer

    from eibert.evaluate import evaluate

    res = run(tiny)
    tok = AutoTokenizer.from_pretrained(res["artifact_dir"])
    assert len(tok) == 400
    dev = Path(tiny["data"].sources["dev"])
    out = evaluate(res["artifact_dir"], dev)  # default 128 tokens: capped at the graph's 32 positions
    assert out["runtime"] == "onnxruntime" and out["n"] == 32 and out["accuracy"] == res["dev_accuracy"]


def _tiny_student(tiny, tmp_path):
    teacher = load_classifier(tiny["teacher"])
    t_tok = load_tokenizer(tiny["teacher"])
    rows_t = encode(t_tok, tiny["data"].train, 32)
    keep = select_tokens(t_tok, token_frequency(rows_t, len(t_tok)), 400)
    s_tok, old_ids = build_pruned_tokenizer(t_tok, keep, tmp_path / "tok")
    rows_s = encode(s_tok, tiny["data"].train, 32)
    spec = StudentSpec(vocab_size=400, hidden=16, layers=1, heads=1, ffn=32, embedding_size=8, integrate=True, teacher_hidden=32,
                       max_positions=32)
    student = Student(spec)
    dims = torch.arange(16)
    init_from_teacher(student, teacher, old_ids, dims)
    return teacher, student, pair_rows(rows_s, rows_t, old_ids), dims


def _rel_change(before: dict, model) -> float:
    num = sum((p.detach() - before[n]).norm() ** 2 for n, p in model.named_parameters())
    den = sum(before[n].norm() ** 2 for n, _ in model.named_parameters())
    return float((num / den) ** 0.5)


def test_cross_distillation_changes_both_models_the_teacher_less(tiny, tmp_path):
    teacher, student, rows, dims = _tiny_student(tiny, tmp_path)
    t0 = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    s0 = {n: p.detach().clone() for n, p in student.named_parameters()}
    fit = train_student(student, teacher, rows,
                        DistillSettings(mode="cross", max_steps=4, batch_size=16, student_lr=3e-3, teacher_lr=1e-4),
                        dims=dims, progress=False)
    assert fit["teacher_trained"] and fit["steps"] == 4
    dt, ds = _rel_change(t0, teacher), _rel_change(s0, student)
    assert 0 < dt < ds
    # Standard distillation leaves the teacher exactly as it was.
    teacher2, student2, rows2, dims2 = _tiny_student(tiny, tmp_path / "b")
    t1 = {n: p.detach().clone() for n, p in teacher2.named_parameters()}
    train_student(student2, teacher2, rows2, DistillSettings(mode="standard", max_steps=2, batch_size=16), dims=dims2,
                  progress=False)
    assert _rel_change(t1, teacher2) == 0.0


def test_training_resumes_from_checkpoint(tiny, tmp_path):
    teacher, student, rows, dims = _tiny_student(tiny, tmp_path)
    st = DistillSettings(mode="cross", max_steps=4, batch_size=16, ckpt_every=2)
    ref_t, ref_s = copy.deepcopy(teacher), copy.deepcopy(student)
    torch.manual_seed(123)
    train_student(ref_s, ref_t, rows, st, dims=dims, progress=False)  # 4 steps straight through

    class Crash(Exception):
        pass

    def crash_at_3(step):
        if step == 1:
            time.sleep(0.3)  # training time before the step-2 checkpoint: the resumed run must count it
        if step == 3:
            raise Crash

    torch.manual_seed(123)
    with pytest.raises(Crash):  # dies after the step-2 checkpoint, mid-way through step 3's work
        train_student(student, teacher, rows, st, dims=dims, ckpt_dir=tmp_path / "ck", progress=False, on_step=crash_at_3)
    teacher3, student3, _, _ = _tiny_student(tiny, tmp_path / "c")  # a new process starts from scratch...
    fit = train_student(student3, teacher3, rows, st, dims=dims, ckpt_dir=tmp_path / "ck", progress=False)  # ...and resumes
    assert fit["resumed_from"] == 2 and fit["steps"] == 4
    assert fit["train_s"] - fit["train_s_this_run"] >= 0.3  # the first process's seconds carried by the checkpoint
    for (n, a), (_, b) in zip(student3.named_parameters(), ref_s.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    for (n, a), (_, b) in zip(teacher3.named_parameters(), ref_t.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_lsq_step_sizes_move_and_reduce_block_error(tiny, tmp_path):
    _, student, rows, _ = _tiny_student(tiny, tmp_path)
    student.eval()
    q = quantize(copy.deepcopy(student), QuantSettings(granularity="per-channel"))
    before = [p.detach().clone() for p in step_sizes(q)]
    calib = [collate([(r[0], r[2]) for r in rows[i : i + 16]]) for i in range(0, 64, 16)]
    report = calibrate_modular(student, q, calib, QuantSettings(granularity="per-channel", steps_per_block=50))
    moved = [float((a - b.detach()).abs().max()) for a, b in zip(before, step_sizes(q))]
    assert max(moved) > 0
    errs = report["modules"]
    assert all(e["mse_after"] <= e["mse_before"] for e in errs.values())
    assert any(e["mse_after"] < e["mse_before"] for e in errs.values())
    d = to_deploy(q)
    b = calib[0]
    assert torch.allclose(d(b["input_ids"], b["attention_mask"])["logits"], q(b["input_ids"], b["attention_mask"])["logits"],
                          atol=1e-5)


def test_mixed_precision_packs_int4_ffn_and_fp16_embeddings(tiny):
    import onnx

    int8 = run(tiny)
    mixed = run(tiny, quant=QuantSettings(granularity="per-channel", mixed=True, steps_per_block=20))
    assert mixed["stages"]["student"]["cache_hit"]  # same student, another quantization
    assert mixed["max_logit_diff_vs_torch"] < LOGIT_TOL
    inits = {i.name: i for i in onnx.load(str(Path(mixed["artifact_dir"]) / "model.onnx")).graph.initializer}
    packed = [n for n, i in inits.items() if n.endswith("w_uint4x2")]
    assert len(packed) == 2 and all(inits[n].data_type == onnx.TensorProto.UINT8 for n in packed)
    assert inits["student.embeddings.word.w_fp16"].data_type == onnx.TensorProto.FLOAT16
    # INT4 halves the feed-forward bytes; FP16 doubles the embedding bytes.
    assert mixed["parts"]["embeddings"] > int8["parts"]["embeddings"] and mixed["parts"]["encoder"] < int8["parts"]["encoder"]


def test_an_int4_artifact_stays_packed_runs_matmulnbits_and_accounts_for_its_bytes(tiny):
    """bits: 4 with block-wise steps: every linear layer's weights packed two per byte in MatMulNBits (the integer
    check passes), the logits equal the torch model's under the same activation quantization, the manifest's
    bytes equal the files', and fewer encoder bytes than INT8 for the same student (at this toy size the graph's
    own nodes outweigh what packing saves)."""
    from eibert.export import load_deploy_model
    from eibert.intcheck import float_weight_paths, optimised_graph

    int8 = run(tiny)
    int4 = run(tiny, quant=QuantSettings(granularity="per-channel", bits=4, block=16, steps_per_block=20))
    art = Path(int4["artifact_dir"])
    assert int4["stages"]["student"]["cache_hit"] and int4["parts"]["encoder"] < int8["parts"]["encoder"]
    assert int4["max_logit_diff_vs_torch"] < LOGIT_TOL
    assert float_weight_paths(art / "model.onnx") == []
    assert {n.op_type for n in optimised_graph(art / "model.onnx").node} >= {"MatMulNBits"}
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["quant"]["bits"] == 4 and manifest["quant"]["block"] == 16
    assert manifest["size_bytes"] == sum((art / n).stat().st_size for n, f in manifest["files"].items() if f["deployed"])
    model = load_deploy_model(art)  # deploy.pt rebuilds (TVM's path): INT4 buffers, float matmul
    assert any(type(m).__name__ == "DeployLinear4" and m.block == 16 for m in model.modules())


def test_int4_packing_round_trips(tiny, tmp_path):
    from eibert.deploy_layers import DeployLinear4
    from eibert.quant import QuantLinear

    lin = torch.nn.Linear(7, 3)  # odd input width: one padding nibble per row
    step = torch.nn.Parameter(lin.weight.detach().abs().amax(1, keepdim=True) / 7)
    q = QuantLinear(lin, step, 7, act=False)
    d = DeployLinear4(q)
    assert d.w_uint4x2.shape == (3, 4) and d.w_uint4x2.dtype == torch.uint8
    x = torch.randn(5, 7)
    assert torch.allclose(d(x), q(x), atol=1e-6)


@pytest.mark.integration
def test_artifact_rebuilds_for_torch_export_and_tvm(tiny):
    """The TVM path consumes an artifact through torch.export; its logits equal onnxruntime's."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from eibert.export import load_deploy_model

    res = run(tiny, quant=QuantSettings(granularity="per-channel", mixed=True, steps_per_block=20))
    model = load_deploy_model(res["artifact_dir"])
    tok = load_tokenizer(res["artifact_dir"])
    ids, _ = encode(tok, tiny["data"].dev.select(range(1)), 32)[0]
    x = torch.tensor([ids])
    mask = torch.ones_like(x)
    ort = ort_logits(res["artifact_dir"], [(ids, 0)])
    assert np.abs(model(x, mask).detach().numpy() - ort).max() < LOGIT_TOL
    ep = torch.export.export(model, (x, mask))
    ex = tvm.compile(from_exported_program(ep, keep_params_as_input=False),
                     target=tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu"}))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()), tvm.runtime.tensor(mask.numpy()))
    out = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
    assert np.abs(out - ort).max() < LOGIT_TOL
