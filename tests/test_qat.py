"""Quantization-aware training (eibert.qat): the artifact's INT4/INT8 quantization in the student's forward pass while
it distils; the artifact is that model (no post-training calibration), its logits match it, and settings that
disagree with what the student trained for are refused. (Phased QAT and its SIGKILL resume: test_accuracy_levers.)"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from eibert.compress import VocabSettings, artifact, compress
from eibert.distill import DistillSettings
from eibert.export import ort_logits
from eibert.hub import load_tokenizer
from eibert.intcheck import float_weight_paths
from eibert.qat import QatSettings, clamp_steps, float_state, start_qat, step_groups, step_state
from eibert.quant import QuantSettings, _init_step, step_sizes
from eibert.student import Student, StudentSpec
from eibert.textcls import encode
from eibutil.cache import Cache
from tests.test_compress import LOGIT_TOL, STUDENT

INT4 = QuantSettings(granularity="per-channel", bits=4, block=16, steps_per_block=20)


def _run(tiny, quant=INT4, fold=False, qat=True, steps=6):
    distill = DistillSettings(mode="cross", max_steps=steps, batch_size=16,
                              qat=QatSettings(quant, fold).to_json() if qat else None)
    return compress(tiny["teacher"], tiny["data"], student=STUDENT, vocab=VocabSettings(size=400, importance_rows=64),
                    distill=distill, quant=quant, cache_dir=tiny["cache"], max_seq_len=32, calib_rows=32, progress=False,
                    fold=fold)


@pytest.mark.parametrize("fold", [False, True])
def test_a_qat_students_int4_artifact_is_the_trained_model(tiny, fold):
    res = _run(tiny, fold=fold)
    art = Path(res["artifact_dir"])
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["quant_report"]["method"] == "qat" and manifest["distill"]["qat"]["quant"]["bits"] == 4
    assert res["max_logit_diff_vs_torch"] < LOGIT_TOL  # onnxruntime = the deployed torch model (same activation rounding)
    assert float_weight_paths(art / "model.onnx") == []
    assert manifest["size_bytes"] == sum((art / n).stat().st_size for n, f in manifest["files"].items() if f["deployed"])
    spec = json.loads((art / "manifest.json").read_text())["spec"]
    assert spec["folded"] == fold
    # the fake-quantized training model and the artifact agree (they differ by MatMulNBits' int8 activations only)
    model = _trained(_student_dir(tiny, res), INT4)
    tok = load_tokenizer(res["artifact_dir"])
    rows = encode(tok, tiny["data"].dev, 32)
    with torch.no_grad():
        ref = np.concatenate([model(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long))["logits"].numpy()
                              for r, _ in rows])
    ort = ort_logits(art, rows)
    assert np.abs(ort - ref).max() < 0.05, np.abs(ort - ref).max()
    assert (ort.argmax(-1) == ref.argmax(-1)).mean() >= 0.9


def _student_dir(tiny, res) -> Path:
    return Cache(tiny["cache"]).path("student", res["stages"]["student"]["key"])


def _trained(stu: Path, quant):
    from eibert.qat import load_trained

    spec = StudentSpec(**json.loads((stu / "spec.json").read_text()))
    model = Student(spec)
    model.load_state_dict(torch.load(stu / "student.pt", weights_only=True))
    return load_trained(model, torch.load(stu / "qat.pt", weights_only=True), quant).eval()


def test_qat_trains_weights_and_step_sizes_through_the_quantizer():
    """One update moves the latent weights and the steps; steps keep their own learning rate and stay positive."""
    torch.manual_seed(0)
    s = Student(StudentSpec(vocab_size=50, hidden=16, heads=2, ffn=32, embedding_size=8, integrate=True, teacher_hidden=24,
                            max_positions=16))
    qs = QatSettings(INT4, fold=True)
    start_qat(s, qs)
    assert s.bridge is None and s.spec.folded  # folded before quantizing: the matrix that deploys is the one that trains
    steps = step_sizes(s)
    assert steps and all(p.requires_grad for p in steps)
    w0 = {k: v.clone() for k, v in float_state(s).items()}
    st0 = {k: v.clone() for k, v in step_state(s).items()}
    from eibert.trainloop import adamw

    o = adamw([s], lr=1e-3, weight_decay=0.01, total=10, warmup_ratio=0.0, groups=step_groups(s, qs), post=clamp_steps(s))
    groups = o.opt.param_groups
    assert len(groups) == 2 + len(steps) and all(g["weight_decay"] == 0.0 for g in groups[2:])
    assert sum(len(g["params"]) for g in groups) == len({id(p) for p in s.parameters()})  # each parameter once
    ids, mask = torch.randint(0, 50, (4, 12)), torch.ones(4, 12, dtype=torch.long)
    s(ids, mask)["logits"].pow(2).sum().backward()
    o.opt.step()
    o.post()
    assert not torch.equal(float_state(s)["layers.0.ffn_in.weight"], w0["layers.0.ffn_in.weight"])
    moved = [k for k, v in step_state(s).items() if not torch.equal(v, st0[k])]
    assert moved and all(bool((v > 0).all()) for v in step_state(s).values())
    # a block-wise INT4 layer's step: one per 16 inputs of each output, as MatMulNBits stores them
    assert step_state(s)["layers.0.ffn_out.step"].shape == (16, 2)
    assert _init_step(w0["layers.0.ffn_out.weight"], True, 7, 16).shape == (16, 2)


def test_an_artifact_that_disagrees_with_the_qat_settings_is_refused(tiny):
    from eibert.cached_stages import StudentRecord

    res = _run(tiny)
    assert (_student_dir(tiny, res) / "qat.pt").is_file()
    rec = _record(tiny, res)
    with pytest.raises(ValueError, match="trained quantization-aware"):
        artifact(rec, tiny["data"], replace(INT4, bits=8, block=None), cache_dir=tiny["cache"], max_seq_len=32,
                 calib_rows=32, progress=False)
    with pytest.raises(ValueError, match="fold"):
        artifact(rec, tiny["data"], INT4, cache_dir=tiny["cache"], max_seq_len=32, calib_rows=32, progress=False, fold=True)
    assert isinstance(rec, StudentRecord)


def _record(tiny, res):
    from eibert.cached_stages import importance, student, vocab

    v = VocabSettings(size=400, importance_rows=64)
    imp = importance(tiny["teacher"], tiny["data"], v, cache_dir=tiny["cache"], max_seq_len=32, progress=False)
    voc = vocab(tiny["teacher"], imp, tiny["data"], v, cache_dir=tiny["cache"], max_seq_len=32)
    distill = DistillSettings(mode="cross", max_steps=6, batch_size=16, qat=QatSettings(INT4, False).to_json())
    rec = student(tiny["teacher"], voc, tiny["data"], student=STUDENT, distill=distill, cache_dir=tiny["cache"],
                  max_seq_len=32, progress=False)
    assert rec.key == res["stages"]["student"]["key"] and rec.cache_hit
    return rec


def test_without_qat_the_student_key_and_training_are_unchanged(tiny):
    """distill.qat unset: no qat.pt, post-training LSQ as before, and the settings' JSON (the student key) has no qat."""
    res = _run(tiny, quant=QuantSettings(granularity="per-channel", steps_per_block=20), qat=False)
    assert not (_student_dir(tiny, res) / "qat.pt").exists()
    manifest = json.loads((Path(res["artifact_dir"]) / "manifest.json").read_text())
    assert manifest["quant_report"]["method"] == "lsq" and "qat" not in manifest["distill"]
