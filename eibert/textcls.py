"""Text classification plumbing: tokenise, batch with dynamic padding, predict, fine-tune.

    from eibert.textcls import encode, predict_logits, accuracy
    enc = encode(tokenizer, data.dev, max_seq_len=64)       # list of (ids, label)
    logits = predict_logits(model, enc)                     # (N, C) numpy
    accuracy(logits, [y for _, y in enc])
"""

import math
import random
import time

import numpy as np
import torch


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


def batches(rows: list, batch_size: int, shuffle: bool = False, seed: int = 0, pad_id: int = 0):
    order = list(range(len(rows)))
    if shuffle:
        random.Random(seed).shuffle(order)
    for i in range(0, len(order), batch_size):
        yield collate([rows[j] for j in order[i : i + batch_size]], pad_id)


@torch.no_grad()
def predict_logits(model, rows: list, batch_size: int = 128, pad_id: int = 0) -> np.ndarray:
    """Logits (N, C) for every row, in order; sorted by length inside for speed. Works for a
    transformers classifier (`.logits`) and for the student (`["logits"]`)."""
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    out = None
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        b = collate([rows[j] for j in idx], pad_id)
        res = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        logits = res["logits"] if isinstance(res, dict) else res.logits
        if out is None:
            out = np.zeros((len(rows), logits.shape[-1]), dtype=np.float32)
        out[idx] = logits.float().numpy()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def linear_schedule(opt, total: int, warmup_ratio: float):
    """Linear warm-up over `warmup_ratio` of `total` steps, then linear decay to zero."""
    warm = int(warmup_ratio * total)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )


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
) -> dict:
    """Plain cross-entropy fine-tuning with AdamW and linear warm-up/decay; returns step count and loss."""
    from tqdm.auto import tqdm

    set_seed(seed)
    steps_per_epoch = math.ceil(len(rows) / batch_size)
    total = max_steps or max(1, math.ceil(epochs * steps_per_epoch))
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=learning_rate)
    sched = linear_schedule(opt, total, warmup_ratio)
    model.train()
    step, epoch, ema, t0 = 0, 0, None, time.perf_counter()
    bar = tqdm(total=total, desc=desc, disable=not progress, unit="step", mininterval=1.0)
    while step < total:
        for batch in batches(rows, batch_size, shuffle=True, seed=seed + epoch, pad_id=pad_id):
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.4f}", refresh=False)
            if step >= total:
                break
        epoch += 1
    bar.close()
    model.eval()
    return {"steps": step, "train_loss": ema, "train_s": time.perf_counter() - t0}
