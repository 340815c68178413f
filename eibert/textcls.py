"""Text classification plumbing: tokenise, batch with dynamic padding, predict, fine-tune.

    from eibert.textcls import encode, predict_logits, accuracy
    enc = encode(tokenizer, data.dev, max_seq_len=64)       # list of (ids, label)
    logits = predict_logits(model, enc)                     # (N, C) numpy
    accuracy(logits, [y for _, y in enc])
"""

import math
import os
import random
from pathlib import Path

import numpy as np
import torch

from eibert.trainloop import TrainLoop, adamw


def encode(tokenizer, ds, max_seq_len: int) -> list[tuple[list[int], int]]:
    """Token ids (with [CLS]/[SEP], truncated) and the label of every row."""
    a = list(ds["text_a"])
    b = list(ds["text_b"]) if "text_b" in ds.column_names else None
    enc = tokenizer(a, b, truncation=True, max_length=max_seq_len) if b else tokenizer(a, truncation=True, max_length=max_seq_len)
    return list(zip(enc["input_ids"], ds["label"]))


def collate(rows: list[tuple[list[int], int]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest row: input_ids, attention_mask (B, T) and labels (B,)."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, _) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    labels = torch.tensor([y for _, y in rows], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_grouped(lengths: list[int], batch_size: int, seed: int, group: int = 50) -> list[list[int]]:
    """Shuffled batches of indices whose members have similar lengths: shuffle, sort inside windows of
    `group` batches, cut, shuffle the batches. Padding waste drops several-fold on short-sentence tasks."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    win = batch_size * group
    for i in range(0, len(order), win):
        chunk = sorted(order[i : i + win], key=lambda j: lengths[j])
        out += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def index_batches(rows: list, batch_size: int, shuffle: bool = False, seed: int = 0, grouped: bool = False) -> list[list[int]]:
    """The row indices of each batch: in order, shuffled, or (`grouped`) shuffled and length-grouped."""
    if grouped:
        return length_grouped([len(r[0]) for r in rows], batch_size, seed)
    order = list(range(len(rows)))
    if shuffle:
        random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batches(rows: list, batch_size: int, shuffle: bool = False, seed: int = 0, pad_id: int = 0, grouped: bool = False):
    """Batches of `rows` in order, shuffled, or (`grouped`) shuffled and length-grouped."""
    for idx in index_batches(rows, batch_size, shuffle, seed, grouped):
        yield collate([rows[j] for j in idx], pad_id)


def model_device(model) -> torch.device:
    """Where the model's tensors are (a deployed model may hold buffers only); the CPU when it has none."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _autocast(dev: torch.device):
    """bf16 autocast on a GPU (the CPU path stays fp32, bit for bit as before)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_logits(model, rows: list, batch_size: int = 128, pad_id: int = 0) -> np.ndarray:
    """Logits (N, C) for every row, in order; sorted by length inside for speed. Works for a
    transformers classifier (`.logits`) and for the student (`["logits"]`), on the model's device."""
    model.eval()
    dev = model_device(model)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    out = None
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        b = collate([rows[j] for j in idx], pad_id)
        with _autocast(dev):
            res = model(input_ids=b["input_ids"].to(dev), attention_mask=b["attention_mask"].to(dev))
        logits = res["logits"] if isinstance(res, dict) else res.logits
        if out is None:
            out = np.zeros((len(rows), logits.shape[-1]), dtype=np.float32)
        out[idx] = logits.float().cpu().numpy()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def accuracy(logits: np.ndarray, labels) -> float:
    labels = np.asarray(labels)
    return float((logits.argmax(-1) == labels).mean()) if len(labels) else float("nan")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def finetune(
    model,
    rows: list,
    *,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_steps: int | None = None,
    seed: int = 0,
    pad_id: int = 0,
    progress: bool = True,
    desc: str = "fine-tune",
    length_grouped_batches: bool = False,
    ckpt: "str | os.PathLike | None" = None,
    ckpt_every: int = 200,
    on_step=None,
) -> dict:
    """Plain cross-entropy fine-tuning with AdamW and linear warm-up/decay (eibert.trainloop); returns step
    count and loss. With `ckpt` (a file) a restarted run resumes at its last save (same batches, same dropout
    masks); `on_step(step)` runs after each step, after any save."""

    set_seed(seed)
    per_epoch = math.ceil(len(rows) / batch_size)
    total = max_steps or max(1, math.ceil(epochs * per_epoch))
    opt = adamw([model], lr=learning_rate, weight_decay=weight_decay, total=total, warmup_ratio=warmup_ratio)
    dev = model_device(model)

    def step(idx: list[int]):
        batch = collate([rows[j] for j in idx], pad_id)
        with _autocast(dev):
            loss = model(**{k: v.to(dev) for k, v in batch.items()}).loss
        return {"model": loss}, {"loss": loss}

    model.train()
    loop = TrainLoop(total=total, per_epoch=per_epoch, ckpt=Path(ckpt) if ckpt is not None else None, ckpt_every=ckpt_every,
                     desc=desc, progress=progress, on_step=on_step)
    fit = loop.run({"model": model}, {"model": opt}, step=step,
                   batches=lambda epoch: index_batches(rows, batch_size, True, seed + epoch, length_grouped_batches))
    model.eval()
    return {"steps": fit["steps"], "train_loss": fit["losses"].get("loss"), "train_s": fit["train_s"],
            "resumed_from": fit["resumed_from"]}
