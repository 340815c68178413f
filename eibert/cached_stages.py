"""The EI-BERT compression stages, one function each: a stage takes the previous stage's record and
returns its own, so a caller (a graph node, `compress`) passes data along, not through the cache.

    imp = importance(teacher_dir, data, VocabSettings(size=8000), cache_dir=".eib-cache")
    voc = vocab(teacher_dir, imp, data, VocabSettings(size=8000), cache_dir=".eib-cache")
    stu = student(teacher_dir, voc, data, student=dict(layers=2, hidden=256, heads=8, ffn=512, embedding_size=128),
                  distill=DistillSettings(mode="cross"), cache_dir=".eib-cache")
    art = artifact(stu, data, QuantSettings(granularity="per-channel"), cache_dir=".eib-cache")
    art.artifact_dir, art.size_bytes, art.dev_accuracy

Each output is a folder in the content-addressed cache (`cache_dir/<stage>/<key>`); its record names
the folder (`dir`) and the folders it was made from, so a record with its folders is all the next stage
needs, on any machine. A key hashes the stage's settings and the key before it: changing only the
quantization reuses the trained student, and a second run is all cache hits.
"""

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from eibert import versions  # noqa: E402  (every version constant; read at call time, so a bump moves every key)
from eibert.hub import load_classifier, load_tokenizer, model_fingerprint
from eibutil.cache import Cache
from eibutil.records import Record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocabSettings:
    size: int | None = 8000
    method: str = "attention"  # attention | frequency
    importance_rows: int | None = 2000
    keep_alphabet: bool = True

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ImportanceRecord(Record):
    key: str
    dir: str
    rows: int
    method: str
    cache_hit: bool = False
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class VocabRecord(Record):
    key: str
    dir: str
    size: int
    coverage: float
    unk_rate: float
    settings: dict = field(default_factory=dict)
    cache_hit: bool = False
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class StudentRecord(Record):
    key: str
    dir: str
    vocab: VocabRecord
    torch_dev_accuracy: float
    steps: int
    fit: dict = field(default_factory=dict)
    torch_selection_accuracy: float | None = None
    teacher_dev_accuracy_after: float | None = None
    distill: dict = field(default_factory=dict)
    cache_hit: bool = False
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class ArtifactRecord(Record):
    key: str
    artifact_dir: str
    size_bytes: int
    parts: dict
    dev_accuracy: float
    dev_n: int
    max_logit_diff_vs_torch: float
    float_dev_accuracy: float
    selection_accuracy: float | None = None
    dev_correct: str | None = None
    stages: dict = field(default_factory=dict)  # key, cache hit and time of each stage behind it
    cache_hit: bool = False
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


def encode(tok, ds, max_seq_len):
    from eibert.textcls import encode as _encode

    return _encode(tok, ds, max_seq_len)


def _teacher(teacher_dir: str):
    """The structural teacher: its tokenizer, attention and weights shape the student, so it must be a BERT."""
    model = load_classifier(teacher_dir).eval()
    if not hasattr(model, "bert"):
        from eibutil import UserError

        raise UserError(f"{teacher_dir}: a {type(model).__name__}; the structural teacher (vocabulary pruning, initialisation, "
                        "integrated head) must be a BERT such as all-MiniLM-L6-v2. Other architectures (MPNet) serve as target "
                        "teachers: their logits are what the student learns (eibert.targets, bench/quality.py +mpnet)")
    return model


def importance(teacher_dir: str, data, settings: VocabSettings, *, cache_dir: str, max_seq_len: int = 64,
               progress: bool = True) -> ImportanceRecord:
    """Attention-based (or frequency) importance of every teacher token over the task's train sentences."""
    from eibert.vocab import attention_importance, token_frequency

    cache, t0 = Cache(cache_dir), time.perf_counter()
    n = min(len(data.train), settings.importance_rows or len(data.train))
    key = cache.key("importance",
                    {"v": versions.STAGES, "teacher": model_fingerprint(teacher_dir), "train": data.checksums["train"],
                                   "train_rows": len(data.train), "method": settings.method, "rows": n,
                     "max_seq_len": max_seq_len})
    hit = cache.get("importance", key) is not None
    if not hit:
        t_tok = load_tokenizer(teacher_dir)
        rows = encode(t_tok, data.train.select(range(n)), max_seq_len)
        if settings.method == "attention":
            scores = attention_importance(_teacher(teacher_dir), rows, pad_id=t_tok.pad_token_id, progress=progress)
        elif settings.method == "frequency":
            scores = token_frequency(rows, len(t_tok))
        else:
            raise ValueError(f"unknown vocabulary method {settings.method!r}; allowed: attention, frequency")
        with cache.publish("importance", key, {"rows": n}) as tmp:
            np.save(tmp / "scores.npy", scores)
    return ImportanceRecord(key, str(cache.path("importance", key)), n, settings.method, hit, time.perf_counter() - t0)


def vocab(teacher_dir: str, imp: ImportanceRecord, data, settings: VocabSettings, *, cache_dir: str,
          max_seq_len: int = 64) -> VocabRecord:
    """The top-K tokens by importance and the pruned tokenizer over them."""
    from eibert.vocab import build_pruned_tokenizer, coverage, select_tokens, unk_rate

    cache, t0 = Cache(cache_dir), time.perf_counter()
    key = cache.key("vocab",
                    {"v": versions.STAGES, "importance": imp.key, "size": settings.size, "alphabet": settings.keep_alphabet})
    hit = cache.get("vocab", key) is not None
    if not hit:
        t_tok = load_tokenizer(teacher_dir)
        scores = np.load(Path(imp.dir) / "scores.npy")
        keep = select_tokens(t_tok, scores, settings.size, settings.keep_alphabet)
        with cache.publish("vocab", key) as tmp:
            s_tok, old_ids = build_pruned_tokenizer(t_tok, keep, tmp / "tokenizer")
            dev_s = encode(s_tok, data.dev, max_seq_len)
            stats = {"size": len(old_ids), "coverage": coverage(encode(t_tok, data.dev, max_seq_len), old_ids),
                     "unk_rate": unk_rate(dev_s, s_tok.unk_token_id)}
            (tmp / "old_ids.json").write_text(json.dumps(old_ids))
            (tmp / "stats.json").write_text(json.dumps(stats))
    vdir = cache.path("vocab", key)
    stats = json.loads((vdir / "stats.json").read_text())
    return VocabRecord(key, str(vdir), stats["size"], stats["coverage"], stats["unk_rate"], settings.to_json(), hit,
                       time.perf_counter() - t0)


def student(teacher_dir: str, voc: VocabRecord, data, *, student: dict, distill, cache_dir: str, augment=None,
            max_seq_len: int = 64, progress: bool = True, on_step=None, targets=None, transfer: list[str] = ()) -> StudentRecord:
    """The student, initialised from the teacher over the pruned vocabulary and distilled.

    With `distill.phases` it is trained phase by phase from cached teacher outputs over the train rows
    and their `augment`ed copies (eibert.phase_data)."""
    cache, t0 = Cache(cache_dir), time.perf_counter()
    teacher_fp = model_fingerprint(teacher_dir)
    spec, init = student_spec(teacher_dir, voc, data, student, max_seq_len)
    key, stu_spec = student_key(cache, voc.key, teacher_fp, spec, init, distill, data, max_seq_len, augment, targets, transfer)
    hit = cache.get("student", key) is not None
    if not hit:
        with cache.lock("student", key):  # the same student training in a parallel process: wait for it, then load it
            hit = cache.get("student", key) is not None
            if not hit:
                # phase checkpoints live under the key without the phase list: lists with a common prefix share phases
                ckpt_dir = cache.area("checkpoints") / (
                    cache.key("phased", {**stu_spec, "distill": {**distill.to_json(), "phases": []}}) if distill.phases else key)
                _train_student(cache, key, spec, init, teacher_dir, teacher_fp, voc, data, distill, augment, max_seq_len,
                               ckpt_dir, progress, on_step, targets, transfer)
    sdir = cache.path("student", key)
    m = json.loads((sdir / "metrics.json").read_text())
    return StudentRecord(key, str(sdir), voc, m["torch_dev_accuracy"], m["fit"]["steps"], m["fit"],
                         m.get("torch_selection_accuracy"),
                         m.get("teacher_dev_accuracy_after"), distill.to_json(), hit, time.perf_counter() - t0)


class NonFiniteModel(RuntimeError):
    """Training diverged: a parameter is inf or NaN (the stage fails with this; nothing is cached or exported)."""


def check_finite(model) -> None:
    import torch

    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteModel(f"training diverged: {len(bad)} parameter tensor(s) hold inf or NaN ({', '.join(bad[:3])}); "
                             "lower the loss weights or learning rates")


def student_spec(teacher_dir: str, voc: VocabRecord, data, student: dict, max_seq_len: int):
    """(StudentSpec, init) of a student stage's `student` settings over the pruned vocabulary."""
    from eibert.student import StudentSpec

    t_cfg = json.loads((Path(teacher_dir) / "config.json").read_text())
    spec = StudentSpec(vocab_size=voc.size, num_labels=data.num_labels, teacher_hidden=t_cfg["hidden_size"],
                       max_positions=max(student.get("max_positions") or max_seq_len, 8),
                       **{k: v for k, v in student.items() if k not in ("init", "max_positions")})
    return spec, student.get("init", "teacher")


def student_key(cache, vocab_key: str, teacher_fp: str, spec, init: str, distill, data, max_seq_len: int, augment=None,
                targets=None,
                transfer=()) -> tuple[str, dict]:
    """(key, what it hashes): everything the trained student depends on, the versions of the code that made its
    inputs included."""
    from eibert.teacher_outputs import hash_texts

    phased = bool(distill.phases)
    stu_spec = {"v": versions.STAGES, "vocab": vocab_key, "teacher": teacher_fp, "spec": spec.to_json(), "init": init,
                "distill": distill.to_json(), "data": data.checksums, "train_rows": len(data.train), "max_seq_len": max_seq_len,
                **({"teacher_outputs_v": versions.TEACHER_OUTPUTS} if phased else {}),
                **({"augment": augment.to_json(), "augment_v": versions.AUGMENT} if augment and phased else {}),
                **({"targets": targets.to_json(), "targets_v": versions.TARGETS} if targets is not None and targets.teachers
                   and phased else {}),
                **({"transfer": hash_texts(list(transfer)), "transfer_rows": len(transfer)} if transfer and phased else {})}
    return cache.key("student", stu_spec), stu_spec


def _train_student(cache, key, spec, init, teacher_dir, teacher_fp, voc, data, distill, augment, max_seq_len, ckpt_dir, progress,
                   on_step, targets=None, transfer=()) -> None:
    import torch

    from eibert.distill import pair_rows, train_student
    from eibert.phase_data import train_phased
    from eibert.student import Student, init_from_teacher, parameter_bytes, pick_hidden_dims
    from eibert.textcls import accuracy, predict_logits

    t_tok, s_tok = load_tokenizer(teacher_dir), load_tokenizer(str(Path(voc.dir) / "tokenizer"))
    old_ids = json.loads((Path(voc.dir) / "old_ids.json").read_text())
    teacher_model = copy.deepcopy(_teacher(teacher_dir))  # cross-distillation trains the teacher
    dev_t, dev_s = encode(t_tok, data.dev, max_seq_len), encode(s_tok, data.dev, max_seq_len)
    sel_s = encode(s_tok, data.selection, max_seq_len) if data.selection is not None else []
    train_t = encode(t_tok, data.train, max_seq_len)
    model = Student(spec)
    dims = pick_hidden_dims(teacher_model, train_t, spec.hidden, t_tok.pad_token_id)
    init_report = init_from_teacher(model, teacher_model, old_ids, dims) if init == "teacher" else {"init": "random"}
    if progress:
        log.info(f"student: {sum(p.numel() for p in model.parameters()):,} parameters; int8 bytes per part "
                 f"{parameter_bytes(model, 8)}")
    if distill.phases:
        fit = train_phased(model, teacher_model, data, t_tok, s_tok, old_ids, distill, augment, cache=cache, dims=dims,
                           max_seq_len=max_seq_len, teacher_fp=teacher_fp, ckpt_dir=ckpt_dir, progress=progress, on_step=on_step,
                           targets=targets, transfer=transfer)
    else:
        train_s = encode(s_tok, data.train, max_seq_len)
        fit = train_student(model, teacher_model, pair_rows(train_s, train_t, old_ids), distill,
                            dims=dims if init == "teacher" else None, pad_id=s_tok.pad_token_id, ckpt_dir=ckpt_dir,
                            progress=progress,
                            on_step=on_step)
    model.eval()
    check_finite(model)
    metrics = {"torch_dev_accuracy": accuracy(predict_logits(model, dev_s), [y for _, y in dev_s]), "fit": fit,
               "init": init_report,
               "torch_selection_accuracy": accuracy(predict_logits(model, sel_s), [y for _, y in sel_s]) if sel_s else None}
    if distill.mode == "cross":
        metrics["teacher_dev_accuracy_after"] = accuracy(predict_logits(teacher_model, dev_t), [y for _, y in dev_t])
    from eibert.qat import float_state, is_quantized, step_state

    with cache.publish("student", key) as tmp:  # a QAT student: its latent float weights, its step sizes beside
        torch.save(float_state(model), tmp / "student.pt")
        if is_quantized(model):
            torch.save(step_state(model), tmp / "qat.pt")
        (tmp / "spec.json").write_text(json.dumps(model.spec.to_json()))  # QAT may have folded the head
        (tmp / "metrics.json").write_text(json.dumps(metrics, default=str))
