"""The accuracy-against-bytes frontier: at 1.0, 1.5 and 2.0 MB, the best student shape among INT8 and INT4 shapes,
chosen on the selection split, with two seeds, timed on the local device.

    python bench/frontier.py                             # everything; resumes where a previous run stopped
    python bench/frontier.py --budgets 2.0 --seeds 0 --budget-minutes 120
    python bench/frontier.py --candidates 2x256-int8 4x256-int4

Every student learns the +mixed rung of bench/quality.py (the headline's teacher targets and transfer set): MPNet's
prediction targets over the train rows, their augmented copies and the review and nlp-corpus transfer rows; an
intermediate phase toward MiniLM's hidden states, then the prediction phase; the head folded. INT8 shapes quantize
after training (per-channel LSQ, as the ladder); INT4 shapes (`bits: 4`, per-channel steps, so MatMulNBits' block
is the input width and its scales cost one float per row) train quantization-aware from the prediction phase on.

The plan: every candidate whose exact deployed bytes (model.onnx of the untrained shape, which has the trained one's
bytes, plus the pruned vocabulary's vocab.txt) fit the largest budget trains with the first seed; per budget the
best fitting candidate on selection accuracy, the best fitting INT8 and the best fitting INT4 one train with every seed;
every first-seed artifact is timed on the local device (onnxruntime and TVM, batch 1, 2 threads) in the same run,
before the other seeds train. Each finished row goes to bench/results/frontier.json and the frontier section of
docs/results.md at once. Stages are cached by content and phases checkpoint (`--budget-minutes` stops cleanly at one):
rerun to continue. A row whose exact artifact key a results file already holds (--out, --reuse: bench/quality.py's
rows of the same recipe) is taken from it, not trained again, so a cache that lost a student keeps its committed row
where the teacher fine-tunes to the same bytes (the same machine kind; bench/frontier_rows.py); the report names them.
"""

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.frontier_report import markdown, plot, summarize  # noqa: E402
from bench.frontier_rows import CANDIDATES, reuse, stored_rows, timed, train  # noqa: E402
from bench.ladder import (  # noqa: E402
    CKPT_EVERY,
    MAX_SEQ_LEN,
    MPNET,
    RECIPE,
    STUDENT,
    TEACHER_HP,
    ladder,
    load_split,
    transfer_texts,
    weights_recipe,
)
from bench.mdsection import replace_section  # noqa: E402
from bench.target_teacher import STORE, STORE_HELP, prepare_targets, target_key, target_settings, target_teacher_row  # noqa: E402
from bench.workers import count, job_done, parse_job, run_jobs  # noqa: E402
from eibutil import atomic_write_json  # noqa: E402
from eibutil.cache import Cache  # noqa: E402
from eibutil.errors import run_script  # noqa: E402
from eibutil.logs import configure  # noqa: E402


class BudgetReached(Exception):
    pass


def deployed_bytes(name: str, vocab_dir: Path, vocab: int, num_labels: int, teacher_hidden: int) -> int:
    """model.onnx of the untrained shape (folded, quantized: the same tensors and graph as the trained one) plus
    the pruned vocabulary's vocab.txt (`vocab` tokens: fewer than asked for where the data has fewer)."""
    import tempfile

    from eibert.deploy_layers import to_deploy
    from eibert.export import export_onnx
    from eibert.quant import quantize
    from eibert.student import Student, StudentSpec, fold_head

    shape, _, bits = CANDIDATES[name]
    spec = StudentSpec(vocab_size=vocab, num_labels=num_labels, teacher_hidden=teacher_hidden, max_positions=MAX_SEQ_LEN,
                       **{**STUDENT, **shape})
    import torch

    model = fold_head(Student(spec).eval())
    with torch.no_grad():  # distinct values: the ONNX exporter stores equal tensors (zero biases, unit norms) once
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    model = quantize(model, replace(weights_recipe((), bits)[0], method="minmax"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(to_deploy(model), path, vocab)
        return path.stat().st_size + (vocab_dir / "tokenizer" / "vocab.txt").stat().st_size


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/sst2")
    ap.add_argument("--teacher", default="bundled", help="the structural teacher")
    ap.add_argument("--target-teacher", type=Path, default=MPNET, help="the +mixed rung's target teacher")
    ap.add_argument("--targets-store", type=Path, default=STORE, help=STORE_HELP)
    ap.add_argument("--rung", default="+mixed", help="the ladder rung whose recipe every student follows (a smoke run: "
                    "+augment needs no target teacher or corpora)")
    ap.add_argument("--selection-sentences", type=int, default=600)
    ap.add_argument("--budgets", type=float, nargs="+", default=[1.0, 1.5, 2.0], help="MB (10^6 bytes)")
    ap.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--no-timing", action="store_true", help="leave out the latency runs (a machine shared with other work)")
    ap.add_argument("--budget-minutes", type=float, default=None, help="stop cleanly at the first checkpoint after this long")
    ap.add_argument("--workers", type=count, default=1, help="train the candidates in this many processes side by side, "
                    "1 torch thread each (~1.5x the steps on 2 cores; bench/workers.py)")
    ap.add_argument("--threads", type=count, default=None, help="torch threads of this process (default: torch's)")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)  # a worker's job, CANDIDATE:SEED
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EIB_CACHE", "~/.cache/eibert")).expanduser())
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/frontier.json")
    ap.add_argument("--reuse", type=Path, nargs="*", default=[ROOT / "bench/results/quality.json"],
                    help="results files besides --out whose rows of a candidate's exact key are taken, not trained again")
    ap.add_argument("--artifacts", type=Path, nargs="*", default=[ROOT / "models/sst2-2mb"],
                    help="artifact folders to time a stored row from when the cache no longer holds its own (by sha256)")
    ap.add_argument("--md", type=Path, default=ROOT / "docs/results.md")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs/frontier.png")
    return ap.parse_args()


def setup(args, on_step=None) -> dict:
    """The data, teachers, targets and transfer rows every candidate shares (each cached by content)."""
    from eibert.teacher import finetune_teacher

    data = load_split(args.data, args.selection_sentences)
    ns = argparse.Namespace(**RECIPE, rungs=[args.rung], target_teacher=args.target_teacher, cache_dir=args.cache_dir,
                            targets_store=args.targets_store)
    (rung,) = ladder(ns)
    teacher = finetune_teacher(args.teacher, data, cache_dir=str(args.cache_dir), hp=TEACHER_HP, max_seq_len=MAX_SEQ_LEN)
    if "mpnet" not in rung.get("targets", ()):
        mpnet = None
    else:  # a worker finds what the main process prepared
        mpnet = target_key(ns, data) if args.only else prepare_targets(ns, data, [rung], Path(teacher.model_dir), on_step)
    transfer, t_report = transfer_texts(rung.get("transfer"), data)
    teachers = {"all-MiniLM-L6-v2 (structural)" if args.teacher == "bundled" else f"{args.teacher} (structural)":
                teacher.dev_accuracy}
    if (mrow := target_teacher_row(args.cache_dir, mpnet)) is not None:
        teachers["all-mpnet-base-v2 (targets)"] = mrow["dev_accuracy"]
    return {"data": data, "rung": rung, "tdir": teacher.model_dir, "teachers": teachers,
            "targets": target_settings(rung, mpnet), "transfer": transfer, "transfer_report": t_report,
            "cache_dir": str(args.cache_dir)}


def sizes(names: list[str], ctx: dict) -> dict[str, int]:
    from eibert.cached_stages import VocabSettings, importance, vocab

    out = {}
    for name in names:
        v = VocabSettings(size=CANDIDATES[name][1], importance_rows=20000)
        imp = importance(ctx["tdir"], ctx["data"], v, cache_dir=ctx["cache_dir"], max_seq_len=MAX_SEQ_LEN, progress=False)
        voc = vocab(ctx["tdir"], imp, ctx["data"], v, cache_dir=ctx["cache_dir"], max_seq_len=MAX_SEQ_LEN)
        t_cfg = json.loads((Path(ctx["tdir"]) / "config.json").read_text())
        out[name] = deployed_bytes(name, Path(voc.dir), voc.size, ctx["data"].num_labels, t_cfg["hidden_size"])
    return out


class Frontier:
    """One run's plan and rows: each finished row goes to --out, the figure and docs/results.md at once."""

    def __init__(self, args, ctx: dict, command: str, deadline: float | None):
        self.args, self.ctx, self.command, self.deadline = args, ctx, command, deadline
        self.budgets = sorted(int(b * 1_000_000) for b in args.budgets)
        self.size = sizes(args.candidates, ctx)
        self.fitting = [n for n in args.candidates if self.size[n] <= self.budgets[-1]]
        self.stored = stored_rows([args.out, *args.reuse])  # a row of the same key: that artifact's row
        self.rows: list[dict] = []
        self.labels = {"dev": list(ctx["data"].dev["label"]), "selection": list(ctx["data"].selection["label"])}
        self.walls: dict[str, float] = {}  # a worker's job: its own time

    def flush(self, final: bool = False) -> None:
        a = self.args
        doc = {"command": self.command, "budgets": self.budgets,
               "candidates": {n: {"size_bytes": self.size[n], "fits": n in self.fitting} for n in a.candidates},
               "rung": a.rung, "transfer": self.ctx["transfer_report"], "teachers": self.ctx["teachers"], "rows": self.rows,
               "summary": summarize(self.rows, self.budgets, self.labels), "complete": final}
        atomic_write_json(a.out, doc)
        plot(doc, a.figure)
        replace_section(a.md, "frontier", markdown(doc, a.figure.relative_to(a.md.parent)))

    def add(self, name: str, seed: int, train_it: bool = True) -> dict | None:
        """The row of this candidate and seed: stored (same key) where it can be, else trained (unless not train_it)."""
        if (have := next((r for r in self.rows if (r["candidate"], r["seed"]) == (name, seed)), None)) is not None:
            return have
        row = reuse(name, seed, self.ctx, self.stored, self.args.artifacts, own=self.args.out)
        if row is None or (self.timing(seed) and row["latency"] is None and row["artifact_dir"] is None):
            if not train_it:
                return None
            print(f"{name} seed {seed}: {self.size[name]:,} bytes", flush=True)
            row = train(name, seed, self.ctx)
            old = self.stored.get(row["key"], ({}, None))[0]
            row.update(latency=old.get("latency"), wall_s=old.get("wall_s", self.walls.get(f"{name}:{seed}", row["wall_s"])))
        row["planned_bytes"] = self.size[name]  # the plan's bytes: equal to the artifact's (checked in the report)
        self.rows.append(row)
        self.rows.sort(key=lambda r: (list(CANDIDATES).index(r["candidate"]), r["seed"]))  # workers end in any order
        self.flush()
        return row

    def timing(self, seed: int) -> bool:
        return not self.args.no_timing and seed == self.args.seeds[0]

    def train_all(self, jobs: list[tuple[str, int]]) -> None:
        """`jobs` in --workers processes (each row out as its worker ends, the others still training), then here
        whatever no worker finished."""
        for n, s in jobs:
            self.add(n, s, train_it=False)  # stored rows of the same key first
        todo = [f"{n}:{s}" for n, s in jobs if not any((r["candidate"], r["seed"]) == (n, s) for r in self.rows)]
        if self.args.workers > 1 and todo:
            def worker_done(job: str, wall: float) -> None:
                self.walls[job] = wall
                self.add(*parse_job(job))

            run_jobs(Path(__file__), sys.argv[1:], todo, workers=self.args.workers, deadline=self.deadline,
                     on_done=worker_done, log_dir=Cache(self.ctx["cache_dir"]).area("logs") / "frontier-workers")
            if self.deadline is not None and time.time() > self.deadline:
                raise BudgetReached
        for name, seed in jobs:
            self.add(name, seed)

    def run(self) -> None:
        """Every fitting candidate with the first seed, timed (before anything else trains), then each budget's
        chosen shapes with the other seeds."""
        seeds = self.args.seeds
        self.train_all([(n, seeds[0]) for n in self.fitting])
        for r in self.rows:
            if self.timing(r["seed"]) and r.get("latency") is None:
                r["latency"] = timed(r, self.ctx)
                self.flush()
        chosen = [n for b in self.budgets for n in summarize(self.rows, [b], self.labels)[str(b)]["train_every_seed"]]
        self.train_all([(n, s) for n in dict.fromkeys(chosen) for s in seeds])
        self.flush(final=True)


def main() -> None:
    configure()
    args = parse_args()
    command = " ".join(["python bench/frontier.py", shlex.join(sys.argv[1:])]).strip()
    deadline = time.time() + 60 * args.budget_minutes if args.budget_minutes else None

    def on_step(step: int) -> None:
        if deadline is not None and step % CKPT_EVERY == 0 and time.time() > deadline:
            raise BudgetReached

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ctx = {**setup(args, on_step), "on_step": on_step}
    if args.only:  # a worker: train one job, say so, write nothing
        name, seed = parse_job(args.only)
        if name not in CANDIDATES:
            raise SystemExit(f"--only: no candidate {name!r}")
        row = train(name, seed, ctx)
        return job_done(args.only, row["key"], row["wall_s"])
    run = Frontier(args, ctx, command, deadline)
    try:
        run.run()
    except BudgetReached:
        run.flush()
        print(f"budget of {args.budget_minutes:g} min reached: stopped at a checkpoint; run the same command to continue")


if __name__ == "__main__":
    run_script(main, "bench/frontier.py")
