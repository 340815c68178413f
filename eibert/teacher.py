"""Fine-tune the teacher on the task, once: cached by (model, data checksums, hyper-parameters, seed).

    from eibert.data import load_task
    from eibert.teacher import finetune_teacher
    data = load_task(source="embedded", name="sst2")
    res = finetune_teacher("bundled", data, cache_dir=".eib-cache", hp={"epochs": 3}, max_seq_len=64)
    res.dev_accuracy, res.model_dir, res.cache_hit

A second call with the same inputs returns the cached model and its recorded accuracy without training.
"""

import time
from dataclasses import asdict, dataclass

from eibert import versions
from eibert.hub import load_classifier, load_tokenizer, model_fingerprint, resolve_model
from eibutil.cache import Cache

DEFAULT_HP = {
    "epochs": 3.0,
    "batch_size": 32,
    "learning_rate": 5e-5,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "max_steps": None,
    "seed": 0,
    "length_grouped": True,  # batches of similar lengths: ~2.5x faster on SST-2's short rows
}


@dataclass
class TeacherResult:
    model_dir: str
    dev_accuracy: float
    dev_n: int
    train_rows: int
    steps: int
    train_s: float
    cache_hit: bool
    cache_key: str
    wall_s: float
    model_ref: str
    selection_accuracy: float | None = None
    selection_n: int = 0
    dev_correct: str | None = None  # '1'/'0' per dev row (None from teachers cached before it was kept)
    device: str = "cpu"  # where it was fine-tuned

    def to_json(self) -> dict:
        return asdict(self)


def teacher_key(cache: Cache, model_path: str, data, hp: dict, max_seq_len: int) -> str:
    return cache.key(
        "teacher",
        {
            "code": versions.TEACHER_TRAINING,
            "model": model_fingerprint(model_path),
            "data": data.checksums,
            "train_rows": len(data.train),
            "num_labels": data.num_labels,
            "hp": hp,
            "max_seq_len": max_seq_len,
        },
    )


def finetune_teacher(
    model_ref: str,
    data,
    *,
    cache_dir: str,
    hp: dict | None = None,
    max_seq_len: int = 64,
    progress: bool = True,
    on_step=None,
    device: str | None = None,
    ckpt_every: int = 200,
) -> TeacherResult:
    """Fine-tune `model_ref` on `data.train`, score it on `data.dev`, and cache both (see module doc).
    `device` ("cuda" where one is lent; default the CPU) is not part of the key: the same training."""
    from eibert.textcls import accuracy, encode, finetune, predict_logits, set_seed

    t0 = time.perf_counter()
    hp = {**DEFAULT_HP, **(hp or {})}
    path = resolve_model(model_ref)
    cache = Cache(cache_dir)
    key = teacher_key(cache, path, data, hp, max_seq_len)
    if (hit := cache.get("teacher", key)) is not None:
        meta = cache.meta("teacher", key)
        return TeacherResult(**{**meta["result"], "model_dir": str(hit), "cache_hit": True, "wall_s": time.perf_counter() - t0})

    set_seed(hp["seed"])
    tok = load_tokenizer(path)
    model = load_classifier(path, data.num_labels)
    if device:
        model.to(device)
    train_rows = encode(tok, data.train, max_seq_len)
    dev_rows = encode(tok, data.dev, max_seq_len)
    fit = finetune(
        model,
        train_rows,
        epochs=hp["epochs"],
        batch_size=hp["batch_size"],
        learning_rate=hp["learning_rate"],
        weight_decay=hp["weight_decay"],
        warmup_ratio=hp["warmup_ratio"],
        max_steps=hp["max_steps"],
        seed=hp["seed"],
        pad_id=tok.pad_token_id or 0,
        progress=progress,
        desc="teacher",
        length_grouped_batches=hp["length_grouped"],
        ckpt=cache.area("checkpoints") / f"teacher-{key}" / "train.pt",
        ckpt_every=ckpt_every,
        on_step=on_step,
    )
    pad = tok.pad_token_id or 0
    dev_logits = predict_logits(model, dev_rows, pad_id=pad)
    dev_acc = accuracy(dev_logits, [y for _, y in dev_rows])
    sel_rows = encode(tok, data.selection, max_seq_len) if data.selection is not None else []
    sel_acc = accuracy(predict_logits(model, sel_rows, pad_id=pad), [y for _, y in sel_rows]) if sel_rows else None
    result = {
        "dev_accuracy": dev_acc,
        "dev_n": len(dev_rows),
        "dev_correct": "".join("1" if p == y else "0" for p, (_, y) in zip(dev_logits.argmax(-1).tolist(), dev_rows)),
        "train_rows": len(train_rows),
        "steps": fit["steps"],
        "train_s": fit["train_s"],
        "cache_key": key,
        "model_ref": model_ref,
        "selection_accuracy": sel_acc,
        "selection_n": len(sel_rows),
    }
    result["device"] = str(device or "cpu")
    with cache.publish("teacher", key, {"result": result, "hp": hp, "data": data.checksums}) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return TeacherResult(**result, model_dir=str(cache.path("teacher", key)), cache_hit=False, wall_s=time.perf_counter() - t0)
