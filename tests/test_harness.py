"""The harness engine on a tiny sweep: the inline and Ray executors give the same rows; a driver killed
with SIGKILL mid-sweep resumes without recomputing a completed stage (counted in the database); a
Ray worker killed mid-task is retried; a sweep runs on a cluster started with `ray start --head`;
the stage graph shares work between variants."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results.store import Store
from harness.stages.state import Payload
from tests.test_pipeline import edit_config, eib, write_config

ROOT = Path(__file__).resolve().parents[1]


def rows(store: Store, run_id: str) -> list[tuple]:
    """What a result is, without when, where or how fast: stage rows and measurements' accuracy and size,
    by variant name (ids hash the config, whose cache and database paths differ between the two runs)."""
    names = {v["variant_id"]: v["name"] for v in store.variants(run_id)}
    st = sorted((r["stage"], names.get(r["variant_id"], "(shared)"), r["status"] in ("ok", "cached"), r["error"] is None)
                for r in store.stage_results(run_id))
    ms = sorted((names.get(m["variant_id"], "(shared)"), m["subject"], m["device"], m["runtime"], m["accuracy"], m["n"],
                 m["size_bytes"])
                for m in store.measurements(run_id))
    return st + ms


def test_graph_shares_teacher_importance_and_students(tiny_bert, task_files, tmp_path):
    from devices.inventory import load_inventory
    from harness.config.load import load_raw, validate_config
    from harness.config.variants import expand
    from harness.engine.graph import build_graph

    cfg_path = write_config(tmp_path, tiny_bert, task_files)
    edit_config(cfg_path,
                {"sweep.grid": {"compress.vocab.size": [300, 400], "compress.quant.granularity": ["per-tensor", "per-channel"]}})
    raw = load_raw(cfg_path)
    cfg = validate_config(raw, cfg_path)
    nodes = build_graph(expand(cfg, cfg_path, raw), load_inventory(ROOT / "inventory.yaml").devices)
    count = {s: sum(n.stage == s for n in nodes) for s in ("teacher", "importance", "vocab", "student", "artifact", "measure")}
    # 4 artifact measurements and one of the teacher on the device, shared by every variant
    assert count == {"teacher": 1, "importance": 1, "vocab": 2, "student": 2, "artifact": 4, "measure": 5}
    # edges carry data: each node names the stage of every input, as the registry declares them
    from harness.stages.registry import REGISTRY

    by_key = {n.key: n for n in nodes}
    for n in nodes:
        assert [by_key[d].stage for d in n.deps] == n.dep_stages and set(n.dep_stages) <= set(REGISTRY[n.stage].inputs)
    (ref,) = [n for n in nodes if n.stage == "measure" and n.payload.subject == "teacher"]
    assert len(ref.variant_ids) == 4 and ref.variant_id == ""
    students = [n for n in nodes if n.stage == "student"]
    assert all(len(n.variant_ids) == 2 for n in students)  # each trained student feeds two quantization variants
    # quantization-aware training puts the quantization into the student: then each variant trains its own
    edit_config(cfg_path, add={"compress.distill.qat": True})
    raw = load_raw(cfg_path)
    qat = build_graph(expand(validate_config(raw, cfg_path), cfg_path, raw), load_inventory(ROOT / "inventory.yaml").devices)
    q_students = [n for n in qat if n.stage == "student"]
    assert len(q_students) == 4 and all(len(n.variant_ids) == 1 for n in q_students)
    assert not {n.key for n in q_students} & {n.key for n in students}
    assert {n.key for n in qat if n.stage == "teacher"} == {n.key for n in nodes if n.stage == "teacher"}


@pytest.mark.integration
def test_inline_and_ray_executors_give_the_same_rows(tiny_bert, task_files, tmp_path):
    results = {}
    for ex in ("inline", "ray"):
        d = tmp_path / ex
        d.mkdir()
        cfg = write_config(d, tiny_bert, task_files)
        out = eib("run", str(cfg), "--quiet", "--executor", ex, cwd=d)
        assert out.returncode == 0, out.stdout + out.stderr
        store = Store(str(d / "db.sqlite"))
        run = store.latest_run()
        results[ex] = rows(store, run["run_id"])
        if ex == "inline":  # the driver's own time excludes the stages the inline executor ran inside submit()
            stages_s = sum(r["wall_s"] for r in store.stage_results(run["run_id"]))
            assert 0 <= run["summary"]["driver_overhead_s"] <= run["summary"]["wall_s"] - stages_s + 0.5
    assert results["inline"] == results["ray"]
    assert len(results["ray"]) > 10


@pytest.mark.integration
def test_driver_killed_mid_sweep_resumes_without_recomputing(tiny_bert, task_files, tmp_path):
    cfg = write_config(tmp_path, tiny_bert, task_files)
    db = tmp_path / "db.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(cfg), "--quiet", "--executor", "inline"],
                            cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    done_before: list = []
    while time.monotonic() < deadline:
        if db.exists():
            try:
                run = Store(str(db)).latest_run()
                done_before = [r for r in Store(str(db)).stage_results(run["run_id"])
                               if r["status"] in ("ok", "cached")] if run else []
            except Exception:  # noqa: BLE001 - the schema may be half made
                done_before = []
            if len(done_before) >= 4:  # teacher, importance and at least two more
                break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(str(db))
    run = store.latest_run()
    assert run["status"] == "running"  # it never finished
    before = {r["id"] for r in store.stage_results(run["run_id"])}
    finished = {r["node_key"] for r in store.stage_results(run["run_id"]) if r["status"] in ("ok", "cached")}
    assert len(finished) >= 4

    out = eib("run", str(cfg), "--quiet", "--executor", "inline", "--resume", run["run_id"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    after = [r for r in store.stage_results(run["run_id"]) if r["id"] not in before]
    recomputed = [r for r in after if r["node_key"] in finished]
    assert recomputed == []  # counted: no stage that had completed ran again
    assert {r["stage"] for r in after} >= {"artifact", "measure"}
    assert store.run(run["run_id"])["status"] == "done" and store.run(run["run_id"])["summary"]["resumed"] == len(finished)
    ok = [r["node_key"] for r in store.stage_results(run["run_id"]) if r["status"] in ("ok", "cached")]
    assert len(ok) == len(set(ok))  # every stage completed exactly once


def _ray_workers_running(pattern: str = "ray::_remote_run") -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if pattern in line]


@pytest.mark.integration
def test_ray_worker_killed_mid_task_is_retried(tiny_bert, task_files, tmp_path):
    cfg = write_config(tmp_path, tiny_bert, task_files)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(cfg), "--quiet", "--executor", "ray"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        pids = _ray_workers_running()
        if pids:
            time.sleep(0.3)  # well into the task
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=600)
    assert killed is not None, "no Ray worker was seen running a stage"
    assert proc.returncode == 0, out
    store = Store(str(tmp_path / "db.sqlite"))
    run = store.latest_run()
    assert run["status"] == "done" and run["summary"]["failed"] == 0
    rows_ = store.stage_results(run["run_id"])
    again = [r for r in rows_ if (r["output"] or {}).get("attempts")]
    # the killed stage ran a second time, on a new worker, and is recorded once, as done on attempt 2
    assert len(again) == 1 and again[0]["output"]["attempts"] == 2 and again[0]["status"] == "ok", again
    assert run["summary"]["retried"] == 1
    ok = [r["node_key"] for r in rows_ if r["status"] in ("ok", "cached")]
    assert len(ok) == len(set(ok)) == len(rows_)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_sweep_runs_on_a_cluster_started_with_ray_start(tiny_bert, task_files, tmp_path):
    port = _free_port()
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token"}  # as Ray recommends; the client finds the token
    ray_bin = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_bin, "get-auth-token", "--generate"], capture_output=True, timeout=60, env=env)
    start = subprocess.run([ray_bin, "start", "--head", "--port", str(port), "--num-cpus", "2",
                            "--include-dashboard", "false", "--disable-usage-stats"], capture_output=True, text=True,
                           timeout=120, env=env)
    assert start.returncode == 0, start.stderr
    try:
        cfg = write_config(tmp_path, tiny_bert, task_files)
        out = eib("run", str(cfg), "--executor", "ray", "--address", f"127.0.0.1:{port}", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ray executor" in out.stdout
        run = Store(str(tmp_path / "db.sqlite")).latest_run()
        assert run["status"] == "done" and run["summary"]["executor"] == "ray"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, env=env)



def test_devices_on_this_machines_cpus_are_measured_alone():
    """local and farm devices (shares_host_cpus) take every CPU for a measurement; a remote device none."""
    from types import SimpleNamespace

    from devices.inventory import DeviceSpec
    from harness.engine.graph import Node
    from harness.engine.scheduler import Scheduler

    class Fake:
        name, parallel = "fake", 2

        def __init__(self):
            self.cpus = {}

        def submit(self, node, deps, ctx, num_cpus=1, resources=None):
            self.cpus[ctx.device] = num_cpus

    inv = {"local": DeviceSpec(transport="local"),
           "ns": DeviceSpec(transport="ssh", host="10.77.1.2", user="farm", use_agent=True, shares_host_cpus=True),
           "pi": DeviceSpec(transport="ssh", host="pi.lan", user="pi", use_agent=True)}
    cfg = SimpleNamespace(measure=SimpleNamespace(reuse=False))
    nodes = [Node(f"m-{d}", "measure", ["v"], [], Payload(cfg, device=d, runtime="onnxruntime")) for d in inv]
    pool = SimpleNamespace(acquire=lambda device, runtime, holder: device)
    ex = Fake()
    sched = Scheduler(nodes, ex, None, "run", pool, inv, None)
    for n in nodes:
        assert sched._submit(n.key)
    assert ex.cpus == {"local": 2, "ns": 2, "pi": 0}


@pytest.mark.integration
def test_address_where_no_ray_listens_fails_in_seconds_and_leaves_no_run_row(tiny_bert, task_files, tmp_path):
    cfg = write_config(tmp_path, tiny_bert, task_files)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    out = eib("run", str(cfg), "--quiet", "--address", f"127.0.0.1:{port}", cwd=tmp_path)
    assert time.perf_counter() - t0 < 60  # ray.init alone would retry for minutes; the probe gives up after 5 s
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "no Ray cluster" in err[0] and "Traceback" not in out.stderr
    db = tmp_path / "db.sqlite"
    assert not db.exists() or Store(str(db)).runs() == []
