"""The EI-BERT compression stages, each cached by content so nothing is computed twice.

    from eibert.compress import VocabSettings, compress
    res = compress(teacher_dir, data, student=dict(layers=2, hidden=256, heads=8, ffn=512, embedding_size=128),
                   vocab=VocabSettings(size=8000), distill=DistillSettings(mode="cross"),
                   quant=QuantSettings(granularity="per-channel"), cache_dir=".eib-cache")
    res["artifact_dir"], res["size_bytes"], res["dev_accuracy"]

importance (teacher, train data) -> vocab (top-K tokenizer) -> student (init from teacher + training)
-> artifact (quantization, export, onnxruntime accuracy). A stage's key hashes its settings and the
key of the stage before, so changing only the quantization reuses the trained student, and a second
run with the same settings is all cache hits.
"""

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from eibert.cache import Cache
from eibert.distill import DistillSettings, pair_rows, train_student
from eibert.export import export_artifact, ort_logits
from eibert.intlinear import integer_graph
from eibert.hub import load_classifier, load_tokenizer, model_fingerprint
from eibert.quant import QuantSettings, calibrate_modular, quantize, to_deploy
from eibert.augment import AugmentSettings
from eibert.phased import train_phased
from eibert.student import Student, StudentSpec, fold_head, init_from_teacher, parameter_bytes, pick_hidden_dims
from eibert.textcls import accuracy, collate, encode, predict_logits
from eibert.vocab import attention_importance, build_pruned_tokenizer, coverage, select_tokens, token_frequency, unk_rate

CODE_VERSION = 1  # bump when a stage's output changes for the same inputs
EXPORT_VERSION = 2  # the artifact's file format alone (2: INT8 linear layers as integer ops)


@dataclass(frozen=True)
class VocabSettings:
    size: int | None = 8000
    method: str = "attention"  # attention | frequency
    importance_rows: int | None = 2000
    keep_alphabet: bool = True

    def to_json(self) -> dict:
        return asdict(self)


def _partial(stages: dict, t_start: float) -> dict:
    last = list(stages)[-1]
    return {"stages": stages, "cache_hit": all(s["cache_hit"] for s in stages.values()), "cache_key": stages[last]["key"],
            "wall_s": time.perf_counter() - t_start}


def compress(teacher_dir: str, data, *, student: dict, vocab: VocabSettings, distill: DistillSettings,
             quant: QuantSettings | None, cache_dir: str, max_seq_len: int = 64, calib_rows: int = 512,
             progress: bool = True, until: str = "artifact", augment: AugmentSettings | None = None, fold: bool = False,
             on_step=None) -> dict:
    """Run importance -> vocab -> student -> artifact with caching; returns the result record.

    `until` ("importance" | "student" | "artifact") stops after that stage, so a scheduler can run the
    stages that several variants share once, before the variants that start from them. With
    `distill.phases` the student is trained phase by phase from cached teacher outputs over the train
    rows and their `augment`ed copies (eibert.phased); `fold` folds the integrated head's bridge into
    its pooler before quantization (eibert.student.fold_head).
    """
    cache = Cache(cache_dir)
    t_start = time.perf_counter()
    stages: dict[str, dict] = {}
    teacher_fp = model_fingerprint(teacher_dir)
    t_tok = load_tokenizer(teacher_dir)
    teacher = None

    def get_teacher():
        nonlocal teacher
        if teacher is None:
            teacher = load_classifier(teacher_dir).eval()
        return teacher

    # 1. importance scores over the task's train sentences
    n_imp = min(len(data.train), vocab.importance_rows or len(data.train))
    imp_key = cache.key("importance", {"v": CODE_VERSION, "teacher": teacher_fp, "train": data.checksums["train"],
                                       "train_rows": len(data.train), "method": vocab.method, "rows": n_imp, "max_seq_len": max_seq_len})
    t0 = time.perf_counter()
    hit = cache.get("importance", imp_key) is not None
    if not hit:
        rows = encode(t_tok, data.train.select(range(n_imp)), max_seq_len)
        if vocab.method == "attention":
            scores = attention_importance(get_teacher(), rows, pad_id=t_tok.pad_token_id, progress=progress)
        elif vocab.method == "frequency":
            scores = token_frequency(rows, len(t_tok))
        else:
            raise ValueError(f"unknown vocabulary method {vocab.method!r}; allowed: attention, frequency")
        with cache.publish("importance", imp_key, {"rows": n_imp}) as tmp:
            np.save(tmp / "scores.npy", scores)
    scores = np.load(cache.path("importance", imp_key) / "scores.npy")
    stages["importance"] = {"cache_hit": hit, "wall_s": time.perf_counter() - t0, "key": imp_key}
    if until == "importance":
        return _partial(stages, t_start)

    # 2. the pruned vocabulary and its tokenizer
    voc_key = cache.key("vocab", {"v": CODE_VERSION, "importance": imp_key, "size": vocab.size, "alphabet": vocab.keep_alphabet})
    t0 = time.perf_counter()
    hit = cache.get("vocab", voc_key) is not None
    dev_t = encode(t_tok, data.dev, max_seq_len)
    if not hit:
        keep = select_tokens(t_tok, scores, vocab.size, vocab.keep_alphabet)
        with cache.publish("vocab", voc_key) as tmp:
            s_tok, old_ids = build_pruned_tokenizer(t_tok, keep, tmp / "tokenizer")
            dev_s = encode(s_tok, data.dev, max_seq_len)
            stats = {"size": len(old_ids), "coverage": coverage(dev_t, old_ids), "unk_rate": unk_rate(dev_s, s_tok.unk_token_id)}
            (tmp / "old_ids.json").write_text(json.dumps(old_ids))
            (tmp / "stats.json").write_text(json.dumps(stats))
    vdir = cache.path("vocab", voc_key)
    s_tok = load_tokenizer(str(vdir / "tokenizer"))
    old_ids = json.loads((vdir / "old_ids.json").read_text())
    vstats = json.loads((vdir / "stats.json").read_text())
    stages["vocab"] = {"cache_hit": hit, "wall_s": time.perf_counter() - t0, "key": voc_key, **vstats}

    # 3. the student, initialised from the teacher and trained
    t_cfg = json.loads((Path(teacher_dir) / "config.json").read_text())
    spec = StudentSpec(vocab_size=len(old_ids), num_labels=data.num_labels, teacher_hidden=t_cfg["hidden_size"],
                       max_positions=max(student.get("max_positions") or max_seq_len, 8),
                       **{k: v for k, v in student.items() if k not in ("init", "max_positions")})
    init = student.get("init", "teacher")
    stu_spec = {"v": CODE_VERSION, "vocab": voc_key, "teacher": teacher_fp, "spec": spec.to_json(), "init": init,
                "distill": distill.to_json(), "data": data.checksums, "train_rows": len(data.train), "max_seq_len": max_seq_len,
                **({"augment": augment.to_json()} if augment and distill.phases else {})}
    stu_key = cache.key("student", stu_spec)
    # phase checkpoints live under the key without the phase list: lists with a common prefix share phases
    ckpt_dir = cache.root / "checkpoints" / (cache.key("phased", {**stu_spec, "distill": {**distill.to_json(), "phases": []}})
                                             if distill.phases else stu_key)
    t0 = time.perf_counter()
    hit = cache.get("student", stu_key) is not None
    dev_s = encode(s_tok, data.dev, max_seq_len)
    sel_s = encode(s_tok, data.selection, max_seq_len) if data.selection is not None else []  # the selection split, if any
    if not hit:
        teacher_model = copy.deepcopy(get_teacher())  # cross-distillation trains the teacher: keep the cached one intact
        train_t = encode(t_tok, data.train, max_seq_len)
        train_s = encode(s_tok, data.train, max_seq_len)
        model = Student(spec)
        dims = pick_hidden_dims(teacher_model, train_t, spec.hidden, t_tok.pad_token_id)
        init_report = init_from_teacher(model, teacher_model, old_ids, dims) if init == "teacher" else {"init": "random"}
        if progress:
            print(f"student: {sum(p.numel() for p in model.parameters()):,} parameters; int8 bytes per part {parameter_bytes(model, 8)}", flush=True)
        if distill.phases:
            fit = train_phased(model, teacher_model, data, t_tok, s_tok, old_ids, distill, augment, cache=cache, dims=dims,
                               max_seq_len=max_seq_len, teacher_fp=teacher_fp, ckpt_dir=ckpt_dir, progress=progress, on_step=on_step)
        else:
            fit = train_student(model, teacher_model, pair_rows(train_s, train_t, old_ids), distill,
                                dims=dims if init == "teacher" else None, pad_id=s_tok.pad_token_id, ckpt_dir=ckpt_dir, progress=progress,
                                on_step=on_step)
        metrics = {"torch_dev_accuracy": accuracy(predict_logits(model, dev_s), [y for _, y in dev_s]), "fit": fit, "init": init_report,
                   "torch_selection_accuracy": accuracy(predict_logits(model, sel_s), [y for _, y in sel_s]) if sel_s else None}
        if distill.mode == "cross":
            metrics["teacher_dev_accuracy_after"] = accuracy(predict_logits(teacher_model, dev_t), [y for _, y in dev_t])
        with cache.publish("student", stu_key) as tmp:
            torch.save(model.state_dict(), tmp / "student.pt")
            (tmp / "spec.json").write_text(json.dumps(spec.to_json()))
            (tmp / "metrics.json").write_text(json.dumps(metrics, default=str))
    sdir = cache.path("student", stu_key)
    model = Student(spec)
    model.load_state_dict(torch.load(sdir / "student.pt", weights_only=True))
    model.eval()
    smetrics = json.loads((sdir / "metrics.json").read_text())
    stages["student"] = {"cache_hit": hit, "wall_s": time.perf_counter() - t0, "key": stu_key,
                         "torch_dev_accuracy": smetrics["torch_dev_accuracy"], "steps": smetrics["fit"]["steps"],
                         "torch_selection_accuracy": smetrics.get("torch_selection_accuracy"), "fit": smetrics["fit"],
                         **({"teacher_dev_accuracy_after": smetrics["teacher_dev_accuracy_after"]} if "teacher_dev_accuracy_after" in smetrics else {})}

    if until == "student":
        return _partial(stages, t_start)

    # 4. quantization, export, and accuracy of the exported artifact under onnxruntime
    qjson = quant.to_json() if quant else None
    art_key = cache.key("artifact", {"v": CODE_VERSION, "export": EXPORT_VERSION, "student": stu_key, "quant": qjson, "calib_rows": calib_rows, **({"fold": True} if fold else {})})
    t0 = time.perf_counter()
    hit = cache.get("artifact", art_key) is not None
    if not hit:
        qreport = None
        if fold:
            model = fold_head(model).eval()
            spec = model.spec
        if quant is None:
            deploy = model
        else:
            qmodel = quantize(copy.deepcopy(model), quant)
            calib_src = encode(s_tok, data.train.select(range(min(calib_rows, len(data.train)))), max_seq_len)
            calib = [collate(calib_src[i : i + quant.batch_size], s_tok.pad_token_id) for i in range(0, len(calib_src), quant.batch_size)]
            qreport = calibrate_modular(model, qmodel, calib, quant, progress=progress)
            deploy = to_deploy(qmodel, half_float=quant.mixed)
        with cache.publish("artifact", art_key) as tmp:
            manifest = export_artifact(deploy, spec.to_json(), vdir / "tokenizer", tmp,
                                       extra={"quant": qjson, "vocab": {**vocab.to_json(), **vstats}, "distill": distill.to_json(),
                                              "quant_report": qreport, "keys": {"student": stu_key, "vocab": voc_key}})
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
    adir = cache.path("artifact", art_key)
    manifest = json.loads((adir / "manifest.json").read_text())
    dev_correct = _correct_bits(adir / "predictions.json", [y for _, y in dev_s])
    stages["artifact"] = {"cache_hit": hit, "wall_s": time.perf_counter() - t0, "key": art_key}
    return {
        "artifact_dir": str(adir),
        "size_bytes": manifest["size_bytes"],
        "parts": manifest["parts"],
        "dev_accuracy": manifest["accuracy"]["dev_accuracy"],
        "dev_n": manifest["accuracy"]["n"],
        "selection_accuracy": manifest["accuracy"].get("selection_accuracy"),
        "max_logit_diff_vs_torch": manifest["accuracy"]["max_logit_diff_vs_torch"],
        "float_dev_accuracy": smetrics["torch_dev_accuracy"],
        "dev_correct": dev_correct,
        "stages": stages,
        "cache_hit": all(s["cache_hit"] for s in stages.values()),
        "cache_key": art_key,
        "wall_s": time.perf_counter() - t_start,
    }


def _correct_bits(predictions: Path, labels: list[int]) -> str | None:
    """'1'/'0' per dev row: whether the artifact got it right (what a paired test between variants needs)."""
    try:
        preds = json.loads(predictions.read_text())["dev"]
    except (OSError, ValueError, KeyError):
        return None
    return "".join("1" if p == y else "0" for p, y in zip(preds, labels)) if len(preds) == len(labels) else None
