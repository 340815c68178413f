"""The harness on 2 CPUs: parallel speedup of independent compress stages, and the harness's own overhead.

    python bench/sweep.py                  # 4 independent students (vocabulary 1000..4000), inline then Ray

The same sweep (teacher and importance scores cached beforehand; four students and their artifacts
new in each run, by a distillation seed of their own) runs once on the inline executor (one stage at a
time) and once on Ray with this machine's CPUs. Each stage gets one CPU (one torch thread) in both, so
the work per stage is the same. Speedup: the inline run's student+artifact phase divided by Ray's.
Overhead: the driver's own time (building the graph aside: scheduling, leasing, recording rows) plus
starting and stopping the executor, as a share of the Ray run's wall time.
Writes bench/results/sweep.json and a section of docs/results.md.
"""

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mdsection import replace_section  # noqa: E402
from eibutil import atomic_write_json  # noqa: E402
from harness.results.store import Store  # noqa: E402

OUT = ROOT / "bench/results/sweep.json"
WORK = ROOT / ".eib-cache" / "bench-sweep"


def config(seed: int, vocab: list[int], epochs: float) -> dict:
    base = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    base["name"] = "bench-sweep"
    base["compress"]["distill"].update(seed=seed, epochs=epochs)
    base["sweep"] = {"grid": {"compress.vocab.size": vocab}}
    base["inventory"] = str(ROOT / "inventory.yaml")
    base["results"] = {"database": str(WORK / "eib.sqlite"), "reports_dir": str(WORK / "reports")}
    base["cache_dir"] = str(ROOT / ".eib-cache")
    return base


def run(executor: str, seed: int, args) -> dict:
    cfg = WORK / f"sweep-{executor}-{seed}.yaml"
    cfg.write_text(yaml.safe_dump(config(seed, args.vocab, args.epochs)))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "harness.cli", "compress", str(cfg), "--quiet", "--executor", executor],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{executor} sweep failed:\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    store = Store(str(WORK / "eib.sqlite"))
    r = store.latest_run("bench-sweep")
    rows = store.stage_results(r["run_id"])
    phase = [x for x in rows if x["stage"] in ("student", "artifact")]
    # Ray records each result as it arrives, so a row's time minus its wall time is when it started; the inline
    # executor runs stages one after another inside submit() and records them later: its phase is their sum.
    start = min(x["created_at"] - x["wall_s"] for x in phase)
    end = max(x["created_at"] for x in phase)
    span = sum(x["wall_s"] for x in phase) if executor == "inline" else end - start
    s = r["summary"]
    return {"executor": executor, "run_id": r["run_id"], "wall_s": round(wall, 1), "phase_s": round(span, 1),
            "stage_s": round(sum(x["wall_s"] for x in phase), 1), "students": sum(x["stage"] == "student" for x in phase),
            "driver_overhead_s": s["driver_overhead_s"], "executor_setup_s": s["executor_setup_s"],
            "run_wall_s": s["wall_s"], "cached": s["cached"], "done": s["done"]}


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[1000, 2000, 3000, 4000])
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000, help="distillation seed (new students every run)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    # teacher and importance scores first, so both measured runs start from the same cached state
    print("warming the shared stages (teacher, importance) ...", flush=True)
    run("inline", args.seed, argparse.Namespace(vocab=args.vocab[:1], epochs=args.epochs))
    inline = run("inline", args.seed + 1, args)
    print(json.dumps(inline), flush=True)
    ray = run("ray", args.seed + 2, args)
    print(json.dumps(ray), flush=True)
    write(inline, ray, args)
    return 0


def write(inline: dict, ray: dict, args) -> None:
    speedup = inline["phase_s"] / ray["phase_s"]
    overhead = (ray["driver_overhead_s"] + ray["executor_setup_s"]) / ray["wall_s"]
    result = {"command": "python bench/sweep.py " + shlex.join(sys.argv[1:]), "inline": inline, "ray": ray,
              "speedup": round(speedup, 3), "overhead_share": round(overhead, 4), "speedup_target": 1.8, "overhead_target": 0.10}
    atomic_write_json(OUT, result)
    body = (f"## Sweep engine (bench/sweep.py)\n\n`{result['command'].strip()}`: {inline['students']} independent students "
            f"(vocabulary {', '.join(map(str, args.vocab))}; 2x256 student, {args.epochs:g} epoch on the embedded "
            "sample) and their INT8 artifacts, each stage on one CPU.\n\n"
            "| executor | student+artifact phase s | sum of stage s | wall s | driver overhead s | executor start/stop s "
            "|\n|---|---:|---:|---:|---:|---:|\n"
            + "".join(f"| {x['executor']} | {x['phase_s']} | {x['stage_s']} | {x['wall_s']} | {x['driver_overhead_s']} | "
                      f"{x['executor_setup_s']} |\n"
                      for x in (inline, ray))
            + f"\nParallel speedup of the independent stages: **{speedup:.2f}x** on 2 CPUs (target 1.8x). Harness overhead "
            f"(driver + Ray start/stop) **{overhead:.1%}** of the Ray run's wall time (target at most 10%).")
    replace_section(ROOT / "docs/results.md", "sweep", body)
    print(f"speedup {speedup:.2f}x, overhead {overhead:.1%}")


if __name__ == "__main__":
    sys.exit(main())
