"""Soft targets: the logits a student learns, from any fine-tuned teacher or an ensemble of them.

    from eibert.targets import label_texts, cached_targets, ensemble
    logits, report = label_texts(model, tok, texts, cache=cache, teacher_key=t.cache_key, max_seq_len=64)
    cached_targets(cache, t.cache_key, texts, 64)          # the same array, or None before it is computed
    ensemble([mpnet_logits, minilm_logits], [1.0, 1.0])      # mean of the members' temperature-scaled logits

The "target teacher" (whose predictions the student learns) need not be the structural teacher (whose
tokenizer, attention and weights shape the student, eibert.cached_stages). Targets are cached per (teacher
key, rows): the key of a fine-tuned teacher (eibert.teacher.teacher_key: base model fingerprint, data,
hyper-parameters) and the sha256 of the texts, so they can be looked up without the teacher's weights.
Labelling runs in shards of SHARD_ROWS rows; a killed run keeps its finished shards and labels only
the rest.
"""

import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from eibert import versions
from eibert.teacher_outputs import hash_texts
from eibutil import UserError

log = logging.getLogger(__name__)

SHARD_ROWS = 16384


def targets_key(cache, teacher_key: str, texts: list[str], max_seq_len: int) -> str:
    return cache.key("targets", {"v": versions.TARGETS, "teacher": teacher_key, "texts": hash_texts(texts), "rows": len(texts),
                                 "max_seq_len": max_seq_len})


def cached_targets(cache, teacher_key: str, texts: list[str], max_seq_len: int) -> tuple[np.ndarray, dict] | None:
    """(logits, report) when the targets of `teacher_key` over `texts` are cached; else None."""
    key = targets_key(cache, teacher_key, texts, max_seq_len)
    hit = cache.get("targets", key)
    if hit is None:
        return None
    return np.load(hit / "logits.npy"), {**cache.meta("targets", key)["report"], "cache_hit": True, "key": key}


def label_texts(model, tok, texts: list[str], *, cache, teacher_key: str, max_seq_len: int, batch_size: int = 256,
                progress: bool = True, teacher: dict | None = None) -> tuple[np.ndarray, dict]:
    """Logits (N, C) of `model` over `texts`, cached (see module doc); `teacher` (its accuracies) rides in the report."""
    if (hit := cached_targets(cache, teacher_key, texts, max_seq_len)) is not None:
        return hit
    key = targets_key(cache, teacher_key, texts, max_seq_len)
    with cache.lock("targets", key):  # a parallel process labelling the same rows: wait, then take its entry
        if (hit := cached_targets(cache, teacher_key, texts, max_seq_len)) is not None:
            return hit
        return _label(model, tok, texts, cache, teacher_key, key, max_seq_len, batch_size, progress, teacher)


def _label(model, tok, texts, cache, teacher_key, key, max_seq_len, batch_size, progress, teacher) -> tuple[np.ndarray, dict]:
    """Label `texts` shard by shard into a work folder (finished shards survive a kill), then publish the entry."""
    from eibert.textcls import model_device, predict_logits

    work = cache.area("targets") / f".work-{key}"
    work.mkdir(parents=True, exist_ok=True)
    n_shards = (len(texts) + SHARD_ROWS - 1) // SHARD_ROWS
    t0, label_s, resumed = time.perf_counter(), 0.0, 0
    for s in range(n_shards):
        shard = work / f"shard-{s:05d}.npy"
        if shard.is_file():
            resumed += 1
            continue
        t1 = time.perf_counter()
        chunk = texts[s * SHARD_ROWS : (s + 1) * SHARD_ROWS]
        enc = tok(chunk, truncation=True, max_length=max_seq_len)["input_ids"]
        logits = predict_logits(model, [(ids, 0) for ids in enc], batch_size=batch_size, pad_id=tok.pad_token_id or 0)
        np.save(work / f".shard-{s:05d}.tmp.npy", logits)
        os.replace(work / f".shard-{s:05d}.tmp.npy", shard)
        label_s += time.perf_counter() - t1
        if progress:
            log.info(f"targets: shard {s + 1}/{n_shards} ({time.perf_counter() - t0:.0f} s)")
    logits = np.concatenate([np.load(work / f"shard-{s:05d}.npy")
                             for s in range(n_shards)]) if n_shards else np.zeros((0, 2), np.float32)
    report = {"rows": len(texts), "shards": n_shards, "resumed_shards": resumed, "label_s": round(label_s, 2),
              "device": str(model_device(model)), "teacher_key": teacher_key, "teacher": teacher or {}}
    with cache.publish("targets", key, {"report": report}) as tmp:
        np.save(tmp / "logits.npy", logits)
        (tmp / "report.json").write_text(json.dumps(report))
    for f in work.glob("shard-*.npy"):
        f.unlink()
    work.rmdir()
    return logits, {**report, "cache_hit": False, "key": key}


def ensemble(members: list[np.ndarray], temperatures: list[float] | None = None) -> np.ndarray:
    """The mean of the members' temperature-scaled logits (logits / T); every member has the same rows."""
    temperatures = temperatures or [1.0] * len(members)
    if len(temperatures) != len(members) or not members:
        raise ValueError(f"{len(members)} ensemble members, {len(temperatures)} temperatures")
    if any(m.shape != members[0].shape for m in members):
        raise ValueError("ensemble members label different rows: " + ", ".join(str(m.shape) for m in members))
    return np.mean([m.astype(np.float32) / float(t) for m, t in zip(members, temperatures)], axis=0)


@dataclass(frozen=True)
class TargetSettings:
    """Which teachers' logits the student learns: cache keys of fine-tuned teachers (eibert.teacher.teacher_key),
    or "structural" for the structural teacher's own; several are averaged (`ensemble`) after dividing each by its
    temperature. Empty: the structural teacher's logits, as before."""

    teachers: tuple[str, ...] = ()
    temperatures: tuple[float, ...] = ()

    def to_json(self) -> dict:
        return {"teachers": list(self.teachers), "temperatures": list(self.temperatures) or [1.0] * len(self.teachers)}


def resolve_targets(st: TargetSettings, texts: list[str], structural: np.ndarray, *, cache, max_seq_len: int,
                    progress: bool = True) -> tuple[np.ndarray, dict]:
    """The logits the student learns over `texts`: each member cached, or labelled now by its cached fine-tuned
    teacher (slow on a CPU); a member neither cached nor labellable is one clear error."""
    members, reports = [], []
    for key in st.teachers:
        if key == "structural":
            members.append(structural)
            reports.append({"teacher": "structural"})
            continue
        got = cached_targets(cache, key, texts, max_seq_len)
        if got is None:
            got = _label_with_cached_teacher(cache, key, texts, max_seq_len, progress)
        members.append(got[0])
        reports.append(got[1])
    return ensemble(members, list(st.temperatures) or None), {"members": reports, **st.to_json()}


def _label_with_cached_teacher(cache, key: str, texts: list[str], max_seq_len: int, progress: bool):
    from eibert.hub import load_classifier, load_tokenizer

    folder = cache.get("teacher", key)
    if folder is None:
        raise UserError(f"target teacher {key}: neither its targets over these {len(texts):,} rows nor the fine-tuned teacher "
                        f"is in {cache.root} (fine-tune it first: bench/label_targets.py)")
    result = cache.meta("teacher", key).get("result", {})
    return label_texts(load_classifier(str(folder)), load_tokenizer(str(folder)), texts, cache=cache, teacher_key=key,
                       max_seq_len=max_seq_len, progress=progress, teacher=result)
