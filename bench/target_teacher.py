"""The target teacher of the ladder's target rungs (MPNet): its cache key, its targets over each rung's rows, its row.

    key = prepare_targets(args, data, rungs, tdir)   # fine-tunes and labels here only what the cache lacks

The rungs' rows extend one another (train, augmented copies, then transfer sources in order), so the longest is
labelled once and the others are its prefixes. Targets labelled on another machine (bench/label_targets.py
--export, copied into the cache) are used as they are: the teacher's weights are needed only for rows that no
cached entry covers. Fine-tuning checkpoints (on_step may stop it) and labelling resumes per shard.

The longest rung's targets (~3 MB for 397 k rows) are also kept in a store in the work tree (STORE, git-ignored):
a machine whose cache is empty takes them from there and labels nothing; the prefix rungs are sliced from them. The
entry's key hashes the rows, whose augmented copies come from the fine-tuned structural teacher: on a CPU whose
fine-tune differs they may differ too, and then the key misses and the rows are labelled here as before.
"""

import json
import shutil
from pathlib import Path

from bench.ladder import MAX_SEQ_LEN, TEACHER_HP, transfer_texts
from eibutil import UserError
from eibutil.cache import Cache
from eibutil.stats import wilson

STORE = Path(__file__).resolve().parent / "results" / "targets"  # targets entries by key: logits.npy, entry.json
STORE_HELP = ("where the target teacher's labelled rows are kept and taken from (local, git-ignored: an empty cache takes "
              "them instead of labelling again wherever its rows are the same ones)")


def target_key(args, data) -> str | None:
    """The cache key of the fine-tuned target teacher (computed without fine-tuning it), or None when absent."""
    from eibert.teacher import DEFAULT_HP, teacher_key

    if not (args.target_teacher / "config.json").is_file():
        return None
    return teacher_key(Cache(args.cache_dir), str(args.target_teacher.resolve()), data, {**DEFAULT_HP, **TEACHER_HP}, MAX_SEQ_LEN)


def rung_rows(rung: dict, data, tdir: Path, cache_dir: Path) -> tuple[list[str], list[str]]:
    """(every text the rung's student trains on, its transfer texts): train rows, augmented rows, transfer rows."""
    from eibert.cached_stages import _teacher
    from eibert.hub import load_tokenizer, model_fingerprint
    from eibert.phase_data import cached_augmentation, training_rows

    transfer, _ = transfer_texts(rung.get("transfer"), data)
    aug, _ = cached_augmentation(Cache(cache_dir), _teacher(str(tdir)), load_tokenizer(str(tdir)), data, rung["augment"],
                                 model_fingerprint(str(tdir)))
    return training_rows(data, aug + transfer)[0], transfer


def target_settings(rung: dict, mpnet_key: str | None):
    from eibert.targets import TargetSettings

    names = rung.get("targets", ())
    if "mpnet" in names and mpnet_key is None:
        raise SystemExit(f"rung {rung['variant']}: the target teacher is missing (scripts/get-teacher.sh mpnet)")
    return TargetSettings(tuple(mpnet_key if n == "mpnet" else n for n in names)) if names else None


def target_teacher_row(cache_dir: Path, mpnet_key: str | None) -> dict | None:
    """MPNet's row, from the report its targets carry (its weights need not be on this machine)."""
    if mpnet_key is None:
        return None
    for entry in sorted(Cache(cache_dir).area("targets").glob("*/entry.json")):
        t = json.loads(entry.read_text()).get("report", {}).get("teacher") or {}
        if t.get("key") == mpnet_key:
            return {"variant": "mpnet teacher",
                    "lever": f"all-mpnet-base-v2 fine-tuned {TEACHER_HP['epochs']:g} epochs ({t.get('device')})",
                    "stage": "teacher", "seed": 0, "size_bytes": 437_971_872, "dev_accuracy": t["dev_accuracy"], "dev_n": 872,
                    "dev_ci95": wilson(t["dev_accuracy"], 872), "selection_accuracy": t["selection_accuracy"],
                    "teacher": "all-mpnet-base-v2",
                    "teacher_dev_accuracy": t["dev_accuracy"], "wall_s": t.get("train_s", 0), "key": mpnet_key, "predictions": {}}
    return None


def rows_to_label(rungs: list[dict], data, tdir: Path, cache_dir: Path) -> tuple[list[str], dict[str, int]]:
    """(the longest target rung's rows, {rung name: its row count}): every other target rung's rows are a prefix."""
    lists = {r["variant"].lstrip("+"): rung_rows(r, data, tdir, cache_dir)[0] for r in rungs
             if "mpnet" in r.get("targets", ())}
    if not lists:
        return [], {}
    longest = max(lists.values(), key=len)
    for name, texts in lists.items():
        if longest[: len(texts)] != texts:
            raise SystemExit(f"rung {name}: its rows are not a prefix of the longest rung's: label them separately")
    return longest, {k: len(v) for k, v in lists.items()}


def dump_texts(args, rungs, data, tdir: Path) -> None:
    """One file for bench/label_targets.py: the longest target-teacher rung's rows, with every target rung's row
    count as a prefix."""
    import gzip

    longest, prefixes = rows_to_label(rungs, data, tdir, args.cache_dir)
    args.dump_texts.mkdir(parents=True, exist_ok=True)
    f = args.dump_texts / "rows.json.gz"
    f.write_bytes(gzip.compress(json.dumps({"texts": longest, "prefixes": prefixes}).encode(), 6))
    print(f"{f}: {len(longest):,} rows; prefixes {prefixes}", flush=True)


def publish_prefix(cache, teacher_key: str, texts: list[str], logits, n: int, report: dict) -> str:
    """The targets entry of the first n rows, sliced from the labelled whole (the same logits: rows are labelled
    independently)."""
    import numpy as np

    from eibert.targets import targets_key

    key = targets_key(cache, teacher_key, texts[:n], MAX_SEQ_LEN)
    if cache.get("targets", key) is None:
        with cache.publish("targets", key, {"report": {**report, "rows": n, "prefix_of": report.get("key")}}) as tmp:
            np.save(tmp / "logits.npy", logits[:n])
    return key


def teacher_info(t) -> dict:
    """What a targets entry's report says of its teacher (eibert.teacher.TeacherResult): target_teacher_row reads it."""
    return {"ref": t.model_ref, "key": t.cache_key, "dev_accuracy": t.dev_accuracy, "selection_accuracy": t.selection_accuracy,
            "dev_correct": t.dev_correct, "train_s": t.train_s, "device": t.device, "train_rows": t.train_rows}


def label_rows(teacher, texts: list[str], prefixes: dict[str, int], cache, device: str | None = None) -> list[dict]:
    """Label `texts` with a fine-tuned teacher (eibert.teacher.TeacherResult) and publish each prefix's entry: one
    record per entry ({"texts"|"prefix", "rows", "key", ...})."""
    from eibert.hub import load_classifier, load_tokenizer
    from eibert.targets import label_texts

    model, tok = load_classifier(teacher.model_dir), load_tokenizer(teacher.model_dir)
    if device:
        model.to(device)
    logits, rep = label_texts(model, tok, texts, cache=cache, teacher_key=teacher.cache_key, max_seq_len=MAX_SEQ_LEN,
                              teacher=teacher_info(teacher))
    out = [{"rows": rep["rows"], "key": rep["key"], "label_s": rep["label_s"]}]
    report = {k: v for k, v in rep.items() if k != "cache_hit"}
    for name, n in prefixes.items():
        out.append({"prefix": name, "rows": n, "key": publish_prefix(cache, teacher.cache_key, texts, logits, int(n), report)})
    return out


def import_store(cache, store: Path | None) -> list[str]:
    """Copy into the cache the store's targets entries that it lacks; their keys."""
    got = []
    for entry in sorted(store.glob("*/entry.json")) if store is not None and store.is_dir() else []:
        key = entry.parent.name
        if cache.get("targets", key) is None:
            meta = json.loads(entry.read_text())
            if meta.get("kind") != "targets" or meta.get("key") != key:
                raise UserError(f"{entry}: not the targets entry {key} (kind {meta.get('kind')!r}, key {meta.get('key')!r})")
            meta = {k: v for k, v in meta.items() if k not in ("kind", "key", "created_at")}
            with cache.publish("targets", key, meta) as tmp:
                shutil.copy2(entry.parent / "logits.npy", tmp / "logits.npy")
            got.append(key)
    return got


def keep_in_store(cache, key: str, store: Path | None) -> None:
    """Copy one cached targets entry into the store (written whole, then renamed into place)."""
    if store is None or (store / key / "entry.json").is_file():
        return
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".tmp-{key}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cache.path("targets", key), tmp)
    tmp.rename(store / key)


def prepare_targets(args, data, rungs: list[dict], tdir: Path, on_step=None) -> str | None:
    """The target teacher's key, after fine-tuning it and labelling the target rungs' rows here wherever neither the
    cache nor the store (args.targets_store, None for none) covers them (~1.2 h an epoch and ~0.9 h per 250 k rows
    on 2 CPU cores); None without its folder."""
    from eibert.targets import cached_targets, targets_key
    from eibert.teacher import finetune_teacher

    key = target_key(args, data)
    texts, prefixes = rows_to_label(rungs, data, tdir, args.cache_dir) if key else ([], {})
    cache, store = Cache(args.cache_dir), getattr(args, "targets_store", None)
    for k in import_store(cache, store):
        print(f"target teacher: targets {k} taken from {store}", flush=True)
    todo = [n for n, k in prefixes.items() if cache.get("targets", targets_key(cache, key, texts[:k], MAX_SEQ_LEN)) is None]
    if todo and (whole := cached_targets(cache, key, texts, MAX_SEQ_LEN)) is not None:  # sliced, no teacher needed
        report = {k: v for k, v in whole[1].items() if k != "cache_hit"}
        for name in todo:
            publish_prefix(cache, key, texts, whole[0], int(prefixes[name]), report)
    elif todo:
        print(f"target teacher: rows of {', '.join(todo)} not labelled: fine-tuning it (cached) and labelling "
              f"{len(texts):,} rows here", flush=True)
        t = finetune_teacher(str(args.target_teacher), data, cache_dir=str(args.cache_dir), hp=TEACHER_HP,
                             max_seq_len=MAX_SEQ_LEN, on_step=on_step)
        if t.cache_key != key:
            raise RuntimeError(f"target teacher: fine-tuned under key {t.cache_key}, expected {key}")
        for rec in label_rows(t, texts, prefixes, cache):
            print(json.dumps(rec), flush=True)
    if texts:
        keep_in_store(cache, targets_key(cache, key, texts, MAX_SEQ_LEN), store)
    return key
