"""bench/workers.py: a benchmark's jobs in parallel worker processes; what each worker is handed and what the parent
reads back."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.workers import count, parse_job, run_jobs, worker_argv  # noqa: E402

SCRIPT = """import json, sys, time
args = sys.argv[1:]
job, threads = args[args.index("--only") + 1], args[args.index("--threads") + 1]
out = __import__("pathlib").Path(args[args.index("--trace") + 1])
with out.open("a") as f:
    f.write(json.dumps({"job": job, "start": time.time(), "threads": threads, "argv": args}) + "\\n")
time.sleep(0.6)
with out.open("a") as f:
    f.write(json.dumps({"job": job, "end": time.time()}) + "\\n")
if job.startswith("bad"):
    sys.exit(3)
print(json.dumps({"job": job, "key": "k-" + job, "wall_s": 1.5}))
"""


def test_the_parent_only_flags_stay_with_the_parent():
    argv = ["--rungs", "+mixed", "--workers", "2", "--budget-minutes=30", "--seeds", "0", "1", "--threads", "2"]
    assert worker_argv(argv) == ["--rungs", "+mixed", "--seeds", "0", "1"]


def test_jobs_run_at_most_n_at_a_time_with_one_thread_and_failures_are_left_out(tmp_path):
    script, trace = tmp_path / "job.py", tmp_path / "trace.jsonl"
    script.write_text(SCRIPT)
    done: list[tuple[str, float, float]] = []
    walls = run_jobs(script, ["--trace", str(trace), "--workers", "2"], ["a:0", "b:0", "bad:0"], workers=2,
                     log_dir=tmp_path / "logs", on_done=lambda job, wall: done.append((job, wall, time.time())))
    assert walls == {"a:0": 1.5, "b:0": 1.5}  # the failed job is the parent's to run
    assert sorted(d[:2] for d in done) == [("a:0", 1.5), ("b:0", 1.5)]
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    starts = {e["job"]: e for e in events if "start" in e}
    assert set(starts) == {"a:0", "b:0", "bad:0"} and all(e["threads"] == "1" for e in starts.values())
    assert all("--workers" not in e["argv"] for e in starts.values())
    ends = {e["job"]: e["end"] for e in events if "end" in e}
    running = max(sum(starts[j]["start"] <= t < ends[j] for j in starts) for t in [e["start"] for e in starts.values()])
    assert running == 2  # two side by side, never three
    assert min(d[2] for d in done) < ends["bad:0"]  # each finished job is handed over while the others still run
    assert (tmp_path / "logs" / "bad_0.log").is_file()


def test_past_the_deadline_no_job_starts_and_running_ones_are_stopped(tmp_path):
    script, trace = tmp_path / "job.py", tmp_path / "trace.jsonl"
    script.write_text(SCRIPT.replace("time.sleep(0.6)", "time.sleep(30)"))
    t0 = time.time()
    walls = run_jobs(script, ["--trace", str(trace)], ["a:0", "b:0", "c:0"], workers=2, log_dir=tmp_path / "logs",
                     deadline=time.time() + 3)
    assert walls == {} and time.time() - t0 < 20
    assert {json.loads(line)["job"] for line in trace.read_text().splitlines()} == {"a:0", "b:0"}


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_counts_and_jobs_are_checked(bad):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        count(bad)
    assert parse_job("4x256-f384-int4:1") == ("4x256-f384-int4", 1) and parse_job("+mixed:0") == ("+mixed", 0)
    with pytest.raises(SystemExit, match="--only"):
        parse_job("+mixed")
