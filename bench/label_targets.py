"""Fine-tune a target teacher on the full SST-2 (selection split carved as in bench/quality.py) and label texts.

    python bench/label_targets.py --teacher ~/.cache/eibert/teachers/all-mpnet-base-v2 --texts rows.json.gz [--device cuda]

Both steps are cached by content under --cache-dir (eibert.teacher: the teacher key; eibert.targets: the
targets of that key over each texts file), checkpointed and resumable: on 2 CPU cores MPNet takes ~1.2 h
an epoch and ~0.9 h per 250 k rows; on a lent GPU, minutes. Each --texts file is a JSON list of strings
(bench/quality.py --dump-texts writes the rows of its target-teacher rungs). Prints one JSON line per
labelled file and the teacher's accuracies; --export DIR copies the targets entries (not the teacher's
weights) to DIR for another machine's cache.
"""

import argparse
import gzip
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ladder import MAX_SEQ_LEN, TEACHER_HP, load_split
from bench.target_teacher import label_rows, teacher_info
from eibutil.errors import run_script
from eibutil.logs import configure


def read_texts(path: Path) -> tuple[list[str], dict[str, int]]:
    """(texts, {name: n}): a JSON list of strings, or {"texts": [...], "prefixes": {name: n}} whose first n rows are
    another rung's rows (the rungs of bench/quality.py extend one another: label the longest once)."""
    raw = json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    texts, prefixes = (raw, {}) if isinstance(raw, list) else (raw.get("texts"), raw.get("prefixes", {}))
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise SystemExit(f"{path}: not a JSON list of strings (or texts + prefixes)")
    return texts, prefixes


def main() -> None:
    configure()  # the labelling shards' progress lines
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="a model folder (BERT, MPNet, sentence-transformers) or a Hugging Face id")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/sst2")
    ap.add_argument("--teacher-epochs", type=float, default=TEACHER_HP["epochs"])
    ap.add_argument("--selection-sentences", type=int, default=600)
    ap.add_argument("--texts", type=Path, nargs="*", default=[])
    ap.add_argument("--device", default=None, help="cuda where one is lent (default: the CPU)")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EIB_CACHE", "~/.cache/eibert")).expanduser())
    ap.add_argument("--export", type=Path, default=None)
    args = ap.parse_args()

    from eibert.teacher import finetune_teacher
    from eibutil.cache import Cache

    data = load_split(args.data, args.selection_sentences)
    t0 = time.perf_counter()
    hp = {**TEACHER_HP, "epochs": args.teacher_epochs}
    t = finetune_teacher(args.teacher, data, cache_dir=str(args.cache_dir), hp=hp, max_seq_len=MAX_SEQ_LEN, device=args.device)
    teacher = teacher_info(t)
    print(json.dumps({"teacher": teacher, "wall_s": round(time.perf_counter() - t0, 1)}), flush=True)
    cache = Cache(args.cache_dir)
    keys = []
    for f in args.texts:
        t1 = time.perf_counter()
        texts, prefixes = read_texts(f)
        for rec in label_rows(t, texts, prefixes, cache, device=args.device):
            keys.append(rec["key"])
            print(json.dumps({"texts": str(f), **rec, "wall_s": round(time.perf_counter() - t1, 1)}), flush=True)
    if args.export:
        for k in keys:
            dest = args.export / "targets" / k
            if not dest.exists():
                shutil.copytree(cache.path("targets", k), dest)
        (args.export / "teacher.json").write_text(json.dumps(teacher))


if __name__ == "__main__":
    run_script(main, "bench/label_targets.py")
