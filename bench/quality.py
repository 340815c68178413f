"""Accuracy at 2 MB on the full SST-2: the ladder of levers, one added per rung, every rung an INT8 artifact but `+int4`.

    python bench/quality.py                              # everything; resumes where a previous run stopped
    python bench/quality.py --budget-minutes 60          # stop cleanly at the first checkpoint after an hour
    python bench/quality.py --rungs kd +epochs --seeds 0

A selection split (600 whole train sentences; their sub-phrases leave train) chooses everything:
early stopping, checkpoints, the headline. The teacher trains on the reduced train rows too. Dev
accuracy (872 rows, onnxruntime on the exported artifact) is reported once per rung with its 95%
Wilson interval and an exact McNemar test against the rung before, on dev and on selection rows.
Every stage is cached under --cache-dir (default ~/.cache/eibert) by content, phases checkpoint every
200 steps, labelling resumes per shard: a killed run continues where it stopped and redoes nothing
finished. Each finished row is written at once to bench/results/quality.json and docs/results.md.
"""

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ladder import (
    CKPT_EVERY,
    MAX_SEQ_LEN,
    MPNET,
    RECIPE,
    STUDENT,
    TEACHER_HP,
    artifact_row,
    ladder,
    load_split,
    transfer_texts,
    weights_recipe,
)
from bench.mdsection import replace_section
from bench.quality_report import add_paired_tests, commit_of_tree, markdown, ship
from bench.target_teacher import STORE, STORE_HELP, dump_texts, prepare_targets, target_key, target_settings, target_teacher_row
from bench.workers import count, job_done, parse_job, run_jobs
from eibutil import atomic_write_json
from eibutil.cache import Cache
from eibutil.errors import run_script
from eibutil.logs import configure
from eibutil.stats import wilson


class BudgetReached(Exception):
    pass


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/sst2")
    ap.add_argument("--teacher", default="bundled", help="the structural teacher")
    ap.add_argument("--teacher-epochs", type=float, default=TEACHER_HP["epochs"])
    ap.add_argument("--target-teacher", type=Path, default=MPNET,
                    help="the target teacher of the +mpnet rungs (scripts/get-teacher.sh mpnet)")
    ap.add_argument("--targets-store", type=Path, default=STORE, help=STORE_HELP)
    ap.add_argument("--selection-sentences", type=int, default=600)
    ap.add_argument("--epochs", type=float, default=RECIPE["epochs"], help="prediction-phase epochs")
    ap.add_argument("--inter-epochs", type=float, default=RECIPE["inter_epochs"], help="intermediate-phase epochs")
    ap.add_argument("--cross-epochs", type=float, default=RECIPE["cross_epochs"])
    ap.add_argument("--aug-copies", type=float, default=RECIPE["aug_copies"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                    help="seeds of the last rung (the headline); others use the first")
    ap.add_argument("--rungs", nargs="+", help="only these variants (the stored rows of the others are kept)")
    ap.add_argument("--student", type=json.loads, default={}, help='JSON overrides of the 2x256 student, e.g. {"hidden": 128}')
    ap.add_argument("--budget-minutes", type=float, default=None, help="stop cleanly at the first checkpoint after this long")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EIB_CACHE", "~/.cache/eibert")).expanduser())
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/quality.json")
    ap.add_argument("--md", type=Path, default=ROOT / "docs/results.md")
    ap.add_argument("--ship", type=Path, default=ROOT / "models/sst2-2mb", help="where the headline artifact is copied")
    ap.add_argument("--ship-only", action="store_true", help="copy the headline of the rows in --out now (a run cut short)")
    ap.add_argument("--workers", type=count, default=1, help="train the planned rungs and seeds in this many processes "
                    "side by side, 1 torch thread each (~1.5x the steps on 2 cores; bench/workers.py)")
    ap.add_argument("--threads", type=count, default=None, help="torch threads of this process (default: torch's)")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)  # a worker's job, VARIANT:SEED
    ap.add_argument("--dump-texts", type=Path, default=None, help="write the rows each target-teacher rung needs labelled "
                    "(JSON lists, for bench/label_targets.py on another machine) and stop")
    return ap.parse_args()


def main() -> None:
    configure()  # the eibert stages' progress lines (teacher outputs, targets shards)
    args = parse_args()
    if args.ship_only:
        return ship_only(args)
    command = " ".join(["python bench/quality.py", shlex.join(sys.argv[1:])]).strip()
    deadline = time.time() + 60 * args.budget_minutes if args.budget_minutes else None

    def on_step(step: int) -> None:  # called right after a checkpoint when step % CKPT_EVERY == 0
        if deadline is not None and step % CKPT_EVERY == 0 and time.time() > deadline:
            raise BudgetReached

    import torch

    from eibert.teacher import finetune_teacher

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_split(args.data, args.selection_sentences)
    run = Ladder(args, data, command)
    try:
        teacher = finetune_teacher(args.teacher, data, cache_dir=str(args.cache_dir),
                                   hp={**TEACHER_HP, "epochs": args.teacher_epochs},
                                   max_seq_len=MAX_SEQ_LEN, on_step=on_step)
        tdir = Path(teacher.model_dir)
        if args.dump_texts:
            return dump_texts(args, run.rungs, data, tdir)
        if args.only:  # a worker: train one job, say so, write nothing
            return work(args, run.rungs, data, tdir, target_key(args, data), on_step)
        run.start(teacher, prepare_targets(args, data, [r for r, _ in run.plan], tdir, on_step), on_step)
        run_plan(run.plan, args, deadline, run.record, run.done)
        ship(run.rows, args.ship, command, run.commit)
        run.flush()
    except BudgetReached:
        run.flush()
        print(f"budget of {args.budget_minutes:g} min reached: stopped at a checkpoint; run the same command to continue",
              flush=True)


class Ladder:
    """One run's rows and stage times, the stored rows of the rungs it does not redo kept; each finished row goes to
    --out and docs/results.md at once."""

    def __init__(self, args, data, command: str):
        import torch

        self.args, self.data, self.command, self.t_start = args, data, command, time.perf_counter()
        self.host = f"{os.cpu_count()} CPU cores ({torch.get_num_threads()} torch threads), no GPU"
        if args.workers > 1:
            self.host += f"; students trained by {args.workers} workers side by side, 1 torch thread each"
        stored = json.loads(args.out.read_text()) if args.out.is_file() else {}
        self.old = {r["key"]: r for r in stored.get("rows", []) if r.get("key")}
        self.rungs = ladder(args)
        self.plan = plan_of(self.rungs, args.seeds)
        self.rows, self.stages = kept(stored, {(r["variant"], s) for r, s in self.plan})
        self.commit = commit_of_tree()
        self.order = {r["variant"]: i for i, r in enumerate(ladder(argparse.Namespace(**{**vars(args), "rungs": None})))}
        self.done: set[tuple[str, int]] = set()

    def flush(self) -> None:
        rows, split = self.rows, self.data.split_report
        rows.sort(key=lambda r: (-1 if r["stage"] == "teacher" else self.order.get(r["variant"], 99), r["seed"]))
        add_paired_tests(rows, self.args.seeds[0], list(self.data.dev["label"]), list(self.data.selection["label"]))
        atomic_write_json(self.args.out, {"command": self.command, "commit": self.commit, "host": self.host, "split": split,
                                          "rows": rows, "stages": self.stages})
        replace_section(self.args.md, "quality", markdown(rows, self.stages, self.command, split, self.host))

    def start(self, teacher, mpnet_key: str | None, on_step) -> None:
        """The teachers' rows and stage time first."""
        self.teacher, self.tdir, self.mpnet_key, self.on_step = teacher, Path(teacher.model_dir), mpnet_key, on_step
        self.rows.insert(0, teacher_row(teacher, self.args.teacher_epochs))
        if (mrow := target_teacher_row(self.args.cache_dir, mpnet_key)) is not None:
            self.rows.insert(1, mrow)
        self.mrow = mrow
        stage = {"stage": "teacher fine-tune", "rows": teacher.train_rows, "wall_s": teacher.train_s}
        self.stages[:0] = [stage] if stage not in self.stages else []
        self.flush()
        print(f"teacher: dev {teacher.dev_accuracy:.4f}, selection {teacher.selection_accuracy} "
              f"({time.perf_counter() - self.t_start:.0f} s)", flush=True)

    def record(self, rung: dict, seed: int, wall: float | None = None) -> None:
        """Train (or, for a worker's finished job, load from the cache) one rung and seed; its row goes out at once."""
        print(f"[{len(self.done) + 1}/{len(self.plan)}] {rung['variant']} seed {seed} "
              f"({time.perf_counter() - self.t_start:.0f} s elapsed)", flush=True)
        t1 = time.perf_counter()
        res, t_report = train_rung(rung, seed, self.args, self.data, self.tdir, self.mpnet_key, self.on_step)
        row = artifact_row(rung, seed, res, self.old, wall or time.perf_counter() - t1, self.teacher, self.mrow, t_report)
        row["command"] = self.command  # the file's own command is only its last writer's: rows are kept across commands
        self.rows.append(row)
        self.stages.extend(stage_times(row, res))
        self.done.add((rung["variant"], seed))
        self.flush()
        print(json.dumps({k: row[k] for k in ("variant", "seed", "size_bytes", "dev_accuracy", "selection_accuracy", "wall_s")}),
              flush=True)


def ship_only(args) -> None:
    """--ship-only: the headline of the rows already in --out copied to --ship (a run cut short)."""
    stored = json.loads(args.out.read_text())
    ship(stored["rows"], args.ship, stored["command"], stored.get("commit"))
    atomic_write_json(args.out, stored)
    replace_section(args.md, "quality",
                    markdown(stored["rows"], stored["stages"], stored["command"], stored["split"], stored["host"]))


def plan_of(rungs: list[dict], seeds: list[int]) -> list[tuple[dict, int]]:
    """The headline (last rung) runs first, so an interrupted session has it; then the ladder; then its other seeds."""
    return [(rungs[-1], seeds[0])] + [(r, seeds[0]) for r in rungs[:-1]] + [(rungs[-1], s) for s in seeds[1:]]


def kept(stored: dict, planned: set[tuple[str, int]]) -> tuple[list[dict], list[dict]]:
    """The stored rows and stage times of the rungs this run does not redo (the ladder grows; one command need not
    redo it all); the teacher's row is made anew."""
    rows = [r for r in stored.get("rows", []) if r["stage"] != "teacher" and (r["variant"], r["seed"]) not in planned]
    stages = [st for st in stored.get("stages", [])
              if not any(st["stage"].startswith(f"{v}:") or st["stage"].startswith(f"{v} seed {s}:") for v, s in planned)]
    return rows, stages


def teacher_row(teacher, epochs: float) -> dict:
    tdir = Path(teacher.model_dir)
    size = sum((tdir / f).stat().st_size for f in ("model.safetensors", "vocab.txt") if (tdir / f).is_file())
    return {"variant": "teacher", "lever": f"all-MiniLM-L6-v2 fine-tuned {epochs:g} epochs (length-grouped)",
            "stage": "teacher", "seed": 0, "size_bytes": size, "dev_accuracy": teacher.dev_accuracy,
            "teacher": "all-MiniLM-L6-v2", "dev_ci95": wilson(teacher.dev_accuracy, teacher.dev_n),
            "selection_accuracy": teacher.selection_accuracy, "teacher_dev_accuracy": teacher.dev_accuracy,
            "wall_s": teacher.train_s, "key": teacher.cache_key, "predictions": {}}


def run_plan(plan: list[tuple[dict, int]], args, deadline: float | None, record, done: set) -> None:
    """With --workers, the jobs in worker processes, each recorded (`record(rung, seed, wall_s)`, its stages cache
    hits) as it ends; then, here, every job not in `done` (no worker finished it)."""

    def worker_done(job: str, wall: float) -> None:  # a worker's job: its own time
        name, seed = parse_job(job)
        record(next(r for r, s in plan if (r["variant"], s) == (name, seed)), seed, wall)

    if args.workers > 1:
        run_jobs(Path(__file__), sys.argv[1:], [f"{r['variant']}:{s}" for r, s in plan], workers=args.workers,
                 log_dir=Cache(args.cache_dir).area("logs") / "quality-workers", deadline=deadline, on_done=worker_done)
    if deadline is not None and time.time() > deadline:
        raise BudgetReached
    for rung, seed in plan:
        if (rung["variant"], seed) not in done:
            record(rung, seed)


def work(args, rungs: list[dict], data, tdir: Path, mpnet_key: str | None, on_step) -> None:
    """A worker's job (--only VARIANT:SEED): train it, print the line the parent reads back."""
    name, seed = parse_job(args.only)
    rung = next((r for r in rungs if r["variant"] == name), None)
    if rung is None:
        raise SystemExit(f"--only: no rung {name!r} among {[r['variant'] for r in rungs]}")
    t1 = time.perf_counter()
    res, _ = train_rung(rung, seed, args, data, tdir, mpnet_key, on_step)
    job_done(args.only, res["cache_key"], time.perf_counter() - t1)


def train_rung(rung: dict, seed: int, args, data, tdir: Path, mpnet_key: str | None, on_step) -> tuple[dict, dict]:
    """One rung and seed through compress (every stage cached by content): (its artifact record, transfer report)."""
    from eibert.compress import VocabSettings, compress
    from eibert.distill import DistillSettings

    targets = target_settings(rung, mpnet_key)
    transfer, t_report = transfer_texts(rung.get("transfer"), data)
    quant, phases, qat = weights_recipe(rung["phases"], rung.get("bits", 8))
    res = compress(str(tdir), data, student={**STUDENT, **rung.get("student", {}), **args.student},
                   vocab=VocabSettings(size=rung["vocab"], importance_rows=20000),
                   distill=DistillSettings(mode="cross", seed=seed, phases=phases, ckpt_every=CKPT_EVERY, qat=qat),
                   quant=quant, cache_dir=str(args.cache_dir), max_seq_len=MAX_SEQ_LEN, augment=rung["augment"],
                   fold=rung["fold"], on_step=on_step, targets=targets, transfer=transfer)
    return res, t_report


def stage_times(row: dict, res: dict) -> list[dict]:
    fit = res["stages"]["student"].get("fit") or {}
    out = []
    if "augment" in fit and fit["augment"].get("rows"):
        out.append({"stage": f"{row['variant']}: augmentation", "rows": fit["augment"]["rows"],
                    "wall_s": fit["augment"].get("augment_s", 0)})
    if "teacher_outputs" in fit:
        out.append({"stage": f"{row['variant']}: teacher outputs ({fit['teacher_outputs']['bytes'] / 2**20:.0f} MiB)",
                    "rows": fit["teacher_outputs"]["rows"], "wall_s": fit["teacher_outputs"]["label_s"]})
    for p in fit.get("phases", []):
        out.append({"stage": f"{row['variant']} seed {row['seed']}: {p['kind']} phase", "rows": p.get("steps"),
                    "wall_s": p.get("train_s", 0)})
    return out


if __name__ == "__main__":
    run_script(main, "bench/quality.py")
