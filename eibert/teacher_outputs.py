"""What distillation needs from the teacher, computed once per row and cached by content.

    from eibert.teacher_outputs import teacher_outputs, word_slots
    out = teacher_outputs(teacher, tokenizer, texts, layers=[2, 5], cache=cache, key_spec={...})
    out.logits[i], out.hidden(i)       # (C,) fp32; (slots, len(layers), H) fp16, memory-mapped

The fine-tuned teacher (eval mode, no dropout) runs over every training row, original and augmented,
and stores its logits and its hidden states at the layers the student is mapped to, averaged over the
word pieces of each word: slot 0 is [CLS] (the representation that feeds the pooler, which the
integrated head reproduces), slot j+1 is word j. Word slots line up with the student's whatever its
pruned vocabulary does to a word, so the hidden-state loss covers every row, not only the rows whose
two tokenisations match piece for piece. Computed in shards (a killed run keeps finished shards),
stored as .npy and memory-mapped. A teacher that keeps training (the cross phase) makes these stale:
that phase runs the teacher live instead.
"""

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from eibert import versions

log = logging.getLogger(__name__)

SHARD_ROWS = 8192


def word_slots(word_ids: list[int | None], n_tokens: int) -> list[int]:
    """Slot of every token: [CLS] (the first token) 0, word j -> j + 1, [SEP]/[PAD] -> -1."""
    out = []
    for t in range(n_tokens):
        w = word_ids[t] if t < len(word_ids) else None
        out.append(0 if t == 0 else (-1 if w is None else w + 1))
    return out


def slot_means(h: torch.Tensor, slots: torch.Tensor, n_slots: int) -> torch.Tensor:
    """(B, T, H) token states -> (B, n_slots, H) means per slot (slots (B, T), -1 ignored)."""
    B, T, H = h.shape
    valid = (slots >= 0) & (slots < n_slots)
    idx = torch.where(valid, slots, torch.zeros_like(slots))
    onehot = torch.zeros(B, n_slots, T, dtype=h.dtype)
    onehot.scatter_(1, idx[:, None, :], valid[:, None, :].to(h.dtype))
    return (onehot @ h) / onehot.sum(-1, keepdim=True).clamp_min(1.0)


class TeacherOutputs:
    """A finished cache entry: logits for every row and memory-mapped word-level hidden states."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.index = json.loads((self.folder / "index.json").read_text())
        self.shard_rows = self.index["shard_rows"]
        self.logits = np.concatenate([np.load(self.folder / s / "logits.npy") for s in self.index["shards"]])
        self._hidden = [np.load(self.folder / s / "hidden.npy", mmap_mode="r") for s in self.index["shards"]]
        self._offsets = [np.load(self.folder / s / "offsets.npy") for s in self.index["shards"]]

    def __len__(self) -> int:
        return len(self.logits)

    def hidden(self, i: int) -> np.ndarray:
        s, r = divmod(i, self.shard_rows)
        o = self._offsets[s]
        return self._hidden[s][o[r] : o[r + 1]]

    def slots(self, i: int) -> int:
        s, r = divmod(i, self.shard_rows)
        return int(self._offsets[s][r + 1] - self._offsets[s][r])


@torch.no_grad()
def _shard(teacher, tokenizer, texts: list[str], layers: list[int], max_seq_len: int, batch_size: int = 128) -> dict:
    enc = tokenizer(texts, truncation=True, max_length=max_seq_len)
    order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
    logits = np.zeros((len(texts), teacher.config.num_labels), dtype=np.float32)
    per_row: list[np.ndarray | None] = [None] * len(texts)
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        width = max(len(enc["input_ids"][i]) for i in idx)
        ids = torch.zeros(len(idx), width, dtype=torch.long)
        mask = torch.zeros(len(idx), width, dtype=torch.long)
        slots = torch.full((len(idx), width), -1, dtype=torch.long)
        for b, i in enumerate(idx):
            n = len(enc["input_ids"][i])
            ids[b, :n] = torch.tensor(enc["input_ids"][i])
            mask[b, :n] = 1
            slots[b, :n] = torch.tensor(word_slots(enc.word_ids(i), n))
        out = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        logits[idx] = out.logits.float().numpy()
        n_slots = int(slots.max()) + 1
        hs = torch.stack([slot_means(out.hidden_states[i + 1], slots, n_slots) for i in layers], 2)  # (B, S, L, H)
        for b, i in enumerate(idx):
            per_row[i] = hs[b, : int(slots[b].max()) + 1].half().numpy()
    offsets = np.cumsum([0] + [len(h) for h in per_row]).astype(np.int64)
    return {"logits": logits, "offsets": offsets, "hidden": np.concatenate(per_row)}


def teacher_outputs(teacher, tokenizer, texts: list[str], *, layers: list[int], max_seq_len: int, cache, key_spec: dict,
                    progress: bool = True) -> tuple[TeacherOutputs, dict]:
    """Cached outputs of `teacher` over `texts` (see module doc); returns (outputs, report)."""
    key = cache.key("teacher_outputs", {"v": versions.TEACHER_OUTPUTS, **key_spec, "layers": layers, "max_seq_len": max_seq_len,
                                        "texts": hash_texts(texts), "shard_rows": SHARD_ROWS})
    if (hit := cache.get("teacher_outputs", key)) is not None:
        return TeacherOutputs(hit), {**cache.meta("teacher_outputs", key)["report"], "cache_hit": True, "key": key}
    with cache.lock("teacher_outputs", key):  # a parallel process computing it: wait, then take its entry
        if cache.get("teacher_outputs", key) is not None:
            return teacher_outputs(teacher, tokenizer, texts, layers=layers, max_seq_len=max_seq_len, cache=cache,
                                   key_spec=key_spec, progress=progress)
        return _compute(teacher, tokenizer, texts, layers, max_seq_len, cache, key, progress)


def _compute(teacher, tokenizer, texts, layers, max_seq_len, cache, key: str, progress: bool) -> tuple[TeacherOutputs, dict]:
    """Label `texts` shard by shard into a work folder (finished shards survive a kill), then publish the entry."""
    work = cache.area("teacher_outputs") / f".work-{key}"
    work.mkdir(parents=True, exist_ok=True)
    teacher.eval()
    t0, names = time.perf_counter(), []
    n_shards = (len(texts) + SHARD_ROWS - 1) // SHARD_ROWS
    for s in range(n_shards):
        name = f"shard-{s:05d}"
        names.append(name)
        if (work / name / "done").is_file():
            continue
        t1 = time.perf_counter()
        res = _shard(teacher, tokenizer, texts[s * SHARD_ROWS : (s + 1) * SHARD_ROWS], layers, max_seq_len)
        tmp = work / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for k, v in res.items():
            np.save(tmp / f"{k}.npy", v)
        (tmp / "done").write_text(f"{time.perf_counter() - t1:.3f}")
        os.replace(tmp, work / name)
        if progress:
            el = time.perf_counter() - t0
            log.info(f"teacher outputs: shard {s + 1}/{n_shards} ({el:.0f} s)")
    size = sum(f.stat().st_size for f in work.rglob("*.npy"))
    label_s = sum(float((work / n / "done").read_text() or 0) for n in names)  # resumed shards keep their time
    report = {"rows": len(texts), "bytes": size, "label_s": label_s, "layers": layers, "shards": n_shards}
    with cache.publish("teacher_outputs", key, {"report": report}) as tmp:
        for name in names:
            os.replace(work / name, tmp / name)
        (tmp / "index.json").write_text(json.dumps({"shards": names, "shard_rows": SHARD_ROWS, "rows": len(texts)}))
    shutil.rmtree(work, ignore_errors=True)
    return TeacherOutputs(cache.get("teacher_outputs", key)), {**report, "cache_hit": False, "key": key}


def hash_texts(texts: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()
