"""Independent trainings of a benchmark in parallel worker processes, one torch thread each.

    from bench.workers import run_jobs, job_done
    walls = run_jobs(Path(__file__), sys.argv[1:], ["+mixed:0", "+mixed:1"], workers=2, log_dir=Cache(d).area("logs") / "x")

The small students of this project scale poorly over threads: on the 2-core machines here one student trained with
2 threads took 48-58 ms a step, two students side by side with 1 thread each 66-73 ms a step each, so two workers
do ~1.5x the steps. Each job runs as `python SCRIPT ARGS --only JOB --threads 1` (its log in `log_dir`), prints one
JSON line `{"job", "key", "wall_s"}` as it ends (`job_done`) and writes no result file; the parent then runs its own
loop, where every stage of a finished job is a cache hit, and takes each job's wall time from that line; `on_done(job,
wall_s)` lets the parent record each job as it ends, so a long run's results file grows while the others train. Stages that
several jobs share (teacher outputs, targets) are computed once: the cache's entry locks make the others wait.
A job that fails is left to the parent's loop, which trains it itself and reports its error there. Interrupting the
parent (Ctrl-C, SIGTERM) stops the workers; their phases resume from their last checkpoints.
"""

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

POLL_S = 2.0
DROP = {"--workers": 1, "--budget-minutes": 1, "--only": 1, "--threads": 1}  # parent flags a worker does not take


def worker_argv(argv: list[str]) -> list[str]:
    """The parent's arguments without the flags (and their values) that only the parent acts on."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
        elif a.split("=")[0] in DROP:
            skip = 0 if "=" in a else DROP[a]
        else:
            out.append(a)
    return out


def run_jobs(script: Path, argv: list[str], jobs: list[str], *, workers: int, log_dir: Path,
             deadline: float | None = None, on_done: Callable[[str, float], None] | None = None) -> dict[str, float]:
    """Run `jobs` at most `workers` at a time; {job: wall seconds} of those that finished (exit 0), each handed to
    `on_done(job, wall_s)` as it ends (the others keep running meanwhile). Past `deadline` (time.time()) no job
    starts and the running ones are stopped."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running, walls = list(jobs), {}, {}
    try:
        while pending or running:
            while pending and len(running) < workers and (deadline is None or time.time() < deadline):
                job = pending.pop(0)
                log = log_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', job)}.log"
                cmd = [sys.executable, str(script), *worker_argv(argv), "--only", job, "--threads", "1"]
                print(f"worker: {job} (log {log})", flush=True)
                running[job] = (subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT), log)
            if deadline is not None and time.time() >= deadline:
                pending.clear()
                break
            time.sleep(POLL_S)
            for job, (p, log) in list(running.items()):
                if p.poll() is not None:
                    del running[job]
                    if p.returncode == 0 and (line := _last_json(log)) is not None:
                        walls[job] = line["wall_s"]
                        if on_done is not None:
                            on_done(job, line["wall_s"])
                    else:
                        print(f"worker: {job} failed (exit {p.returncode}; {log}): the main loop will run it", flush=True)
    finally:
        for p, _ in running.values():
            p.terminate()
        for p, _ in running.values():
            p.wait()
    return walls


def job_done(job: str, key: str, wall_s: float) -> None:
    """A worker's last line: what the parent reads back."""
    print(json.dumps({"job": job, "key": key, "wall_s": wall_s}), flush=True)


def count(text: str) -> int:
    """An argparse type: an integer >= 1 (--workers, --threads)."""
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return int(text)


def parse_job(job: str) -> tuple[str, int]:
    """'NAME:SEED' -> (NAME, SEED); one line naming the flag otherwise."""
    name, _, seed = job.rpartition(":")
    if not name or not seed.isdigit():
        raise SystemExit(f"--only: expected NAME:SEED, got {job!r}")
    return name, int(seed)


def _last_json(log: Path) -> dict | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and '"job"' in line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None
