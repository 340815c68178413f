"""The artifact stage, and `compress`: all four EI-BERT stages in a row (eibert.cached_stages has the others).

    from eibert.compress import VocabSettings, compress
    res = compress(teacher_dir, data, student=dict(layers=2, hidden=256, heads=8, ffn=512, embedding_size=128),
                   vocab=VocabSettings(size=8000), distill=DistillSettings(mode="cross"),
                   quant=QuantSettings(granularity="per-channel"), cache_dir=".eib-cache")
    res["artifact_dir"], res["size_bytes"], res["dev_accuracy"]

importance (teacher, train data) -> vocab (top-K tokenizer) -> student (init from teacher + training)
-> artifact (quantization, export, onnxruntime accuracy); each cached by content.
"""

import copy
import json
import time
from pathlib import Path

import numpy as np

from eibert import versions
from eibert.cached_stages import ArtifactRecord, StudentRecord, VocabSettings, importance, student_key, student_spec
from eibert.cached_stages import student as student_stage
from eibert.cached_stages import vocab as vocab_stage
from eibert.hub import load_tokenizer, model_fingerprint
from eibert.textcls import accuracy, collate, encode, predict_logits
from eibutil.cache import Cache

__all__ = ["VocabSettings", "ArtifactRecord", "artifact", "compress"]


def artifact_key(cache, student_key: str, quant, calib_rows: int, fold: bool) -> str:
    return cache.key("artifact", {"v": versions.STAGES, "export": versions.EXPORT, "student": student_key,
                                  "quant": quant.to_json() if quant else None, "calib_rows": calib_rows,
                                  **({"fold": True} if fold else {})})


def artifact(stu: StudentRecord, data, quant, *, cache_dir: str, calib_rows: int = 512, fold: bool = False,
             max_seq_len: int = 64, progress: bool = True) -> ArtifactRecord:
    """Quantize (modular INT8, learned step sizes), export the deployable folder, and score it under
    onnxruntime; `fold` folds the integrated head's bridge into its pooler first."""
    cache, t0 = Cache(cache_dir), time.perf_counter()
    key = artifact_key(cache, stu.key, quant, calib_rows, fold)
    vdir = Path(stu.vocab.dir)
    s_tok = load_tokenizer(str(vdir / "tokenizer"))
    dev_s = encode(s_tok, data.dev, max_seq_len)
    hit = cache.get("artifact", key) is not None
    if not hit:
        sel_s = encode(s_tok, data.selection, max_seq_len) if data.selection is not None else []
        _export(cache, key, stu, s_tok, data, dev_s, sel_s, quant, calib_rows, fold, max_seq_len, progress)
    adir = cache.path("artifact", key)
    manifest = json.loads((adir / "manifest.json").read_text())
    acc = manifest["accuracy"]
    v = stu.vocab
    stages = {"vocab": {"key": v.key, "cache_hit": v.cache_hit, "wall_s": v.wall_s, "size": v.size, "coverage": v.coverage,
                        "unk_rate": v.unk_rate},
              "student": {"key": stu.key, "cache_hit": stu.cache_hit, "wall_s": stu.wall_s,
                          "torch_dev_accuracy": stu.torch_dev_accuracy,
                          "steps": stu.steps, "torch_selection_accuracy": stu.torch_selection_accuracy, "fit": stu.fit,
                          **({"teacher_dev_accuracy_after": stu.teacher_dev_accuracy_after}
                             if stu.teacher_dev_accuracy_after is not None else {})},
              "artifact": {"key": key, "cache_hit": hit, "wall_s": time.perf_counter() - t0}}
    return ArtifactRecord(key, str(adir), manifest["size_bytes"], manifest["parts"], acc["dev_accuracy"], acc["n"],
                          acc["max_logit_diff_vs_torch"], stu.torch_dev_accuracy, acc.get("selection_accuracy"),
                          _correct_bits(adir / "predictions.json", [y for _, y in dev_s]), stages, hit, time.perf_counter() - t0)


def _export(cache, key, stu, s_tok, data, dev_s, sel_s, quant, calib_rows, fold, max_seq_len, progress) -> None:
    import torch

    from eibert.deploy_layers import to_deploy
    from eibert.export import export_artifact, ort_logits
    from eibert.intlinear import integer_graph
    from eibert.quant import calibrate_modular, quantize
    from eibert.student import Student, StudentSpec, fold_head

    sdir = Path(stu.dir)
    spec = StudentSpec(**json.loads((sdir / "spec.json").read_text()))
    model = Student(spec)
    model.load_state_dict(torch.load(sdir / "student.pt", weights_only=True))
    model.eval()
    qreport, qjson = None, quant.to_json() if quant else None
    if fold:
        model = fold_head(model).eval()
        spec = model.spec
    if (sdir / "qat.pt").is_file():  # quantization-aware training learned the weights and step sizes together
        qmodel = _qat_model(model, sdir, stu, quant, fold)
        qreport = {"method": "qat", "modules": {}}
        deploy = to_deploy(qmodel, half_float=quant.mixed)
    elif quant is None:
        deploy = model
    else:
        qmodel = quantize(copy.deepcopy(model), quant)
        calib_src = encode(s_tok, data.train.select(range(min(calib_rows, len(data.train)))), max_seq_len)
        calib = [collate(calib_src[i : i + quant.batch_size], s_tok.pad_token_id)
                 for i in range(0, len(calib_src), quant.batch_size)]
        qreport = calibrate_modular(model, qmodel, calib, quant, progress=progress)
        deploy = to_deploy(qmodel, half_float=quant.mixed)
    v = stu.vocab
    with cache.publish("artifact", key) as tmp:
        manifest = export_artifact(deploy, spec.to_json(), Path(v.dir) / "tokenizer", tmp,
                                   extra={"quant": qjson,
                                          "vocab": {**v.settings, "size": v.size, "coverage": v.coverage, "unk_rate": v.unk_rate},
                                          "distill": stu.distill, "quant_report": qreport,
                                          "keys": {"student": stu.key, "vocab": v.key}})
        ort = ort_logits(tmp, dev_s, pad_id=s_tok.pad_token_id)
        with torch.no_grad(), integer_graph():  # the same activation quantisation as the exported graph
            ref = predict_logits(deploy, dev_s, batch_size=1)
        labels = [y for _, y in dev_s]
        manifest["accuracy"] = {"dev_accuracy": accuracy(ort, labels), "n": len(labels), "runtime": "onnxruntime",
                                "data_sha256": data.checksums["dev"], "torch_dev_accuracy": accuracy(ref, labels),
                                "max_logit_diff_vs_torch": float(np.abs(ort - ref).max())}
        preds = {"dev": ort.argmax(-1).tolist()}
        if sel_s:
            sel = ort_logits(tmp, sel_s, pad_id=s_tok.pad_token_id)
            manifest["accuracy"].update(selection_accuracy=accuracy(sel, [y for _, y in sel_s]), selection_n=len(sel_s))
            preds["selection"] = sel.argmax(-1).tolist()
        (tmp / "predictions.json").write_text(json.dumps(preds))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))


def _qat_model(model, sdir: Path, stu, quant, fold: bool):
    """The QAT student as it trained: its quantization must be the artifact's (steps and rounding were learned for
    it), its head folded exactly when the artifact folds it."""
    import torch

    from eibert.qat import QatSettings, load_trained

    qs = QatSettings.from_json(stu.distill["qat"])
    if quant is None or qs.quant != quant or qs.fold != fold:
        raise ValueError(f"the student was trained quantization-aware for quant {qs.quant.to_json()} (fold {qs.fold}); "
                         f"the artifact asks for {quant.to_json() if quant else None} (fold {fold}): they must agree")
    return load_trained(model, torch.load(sdir / "qat.pt", weights_only=True), quant).eval()


def compress(teacher_dir: str, data, *, student: dict, vocab: VocabSettings, distill, quant, cache_dir: str,
             max_seq_len: int = 64, calib_rows: int = 512, progress: bool = True, augment=None, fold: bool = False,
             on_step=None, targets=None, transfer: list[str] = ()) -> dict:
    """importance -> vocab -> student -> artifact in one call; the artifact's record as JSON, with the
    importance stage added to its `stages`."""
    t0 = time.perf_counter()
    imp = importance(teacher_dir, data, vocab, cache_dir=cache_dir, max_seq_len=max_seq_len, progress=progress)
    voc = vocab_stage(teacher_dir, imp, data, vocab, cache_dir=cache_dir, max_seq_len=max_seq_len)
    stu = student_stage(teacher_dir, voc, data, student=student, distill=distill, cache_dir=cache_dir, augment=augment,
                        max_seq_len=max_seq_len, progress=progress, on_step=on_step, targets=targets, transfer=transfer)
    art = artifact(stu, data, quant, cache_dir=cache_dir, calib_rows=calib_rows, fold=fold, max_seq_len=max_seq_len,
                   progress=progress)
    out = art.to_json()
    out["stages"] = {"importance": {"key": imp.key, "cache_hit": imp.cache_hit, "wall_s": imp.wall_s}, **out["stages"]}
    out.update(cache_hit=all(s["cache_hit"] for s in out["stages"].values()), cache_key=art.key, wall_s=time.perf_counter() - t0)
    return out


def planned_key(teacher_dir: str, data, *, student: dict, vocab: VocabSettings, distill, quant, cache_dir: str,
                max_seq_len: int = 64, calib_rows: int = 512, augment=None, fold: bool = False, targets=None,
                transfer: list[str] = ()) -> str:
    """The key `compress` with these arguments gives its artifact, without training: the importance and vocabulary
    stages run (cached, minutes), the student and artifact keys are only computed. A stored result of that key
    (bench/frontier.py --out) is that artifact's, whether or not this cache still holds it."""
    cache = Cache(cache_dir)
    imp = importance(teacher_dir, data, vocab, cache_dir=cache_dir, max_seq_len=max_seq_len, progress=False)
    voc = vocab_stage(teacher_dir, imp, data, vocab, cache_dir=cache_dir, max_seq_len=max_seq_len)
    spec, init = student_spec(teacher_dir, voc, data, student, max_seq_len)
    s_key, _ = student_key(cache, voc.key, model_fingerprint(teacher_dir), spec, init, distill, data, max_seq_len, augment,
                           targets, transfer)
    return artifact_key(cache, s_key, quant, calib_rows, fold)


def _correct_bits(predictions: Path, labels: list[int]) -> str | None:
    """'1'/'0' per dev row: whether the artifact got it right (what a paired test between variants needs)."""
    try:
        preds = json.loads(predictions.read_text())["dev"]
    except (OSError, ValueError, KeyError):
        return None
    return "".join("1" if p == y else "0" for p, y in zip(preds, labels)) if len(preds) == len(labels) else None
