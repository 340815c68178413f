"""A sweep on a two-node Ray cluster whose nodes share no disk: a head, and a worker in its own mount
namespace with a private tmpfs over this test's whole folder (inputs, cache, artifacts, reports), so a
stage that reads a path written on the other node finds nothing there. Custom resources put the
student and artifact stages on the worker and everything else, the pinned device's measurements
included, on the head; the results equal a single-node run's."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.store import Store
from tests.test_harness import _free_port
from tests.test_pipeline import edit_config, eib, write_config

pytestmark = pytest.mark.integration  # real Ray nodes, a real database or full `eib run`s: not in make test-fast

RAY = str(Path(sys.executable).with_name("ray"))


def _config(folder: Path, inputs: Path, cluster: bool) -> Path:
    """test_pipeline's tiny sweep, on an inventory of its own (the local device pinned to the head) and, for the
    cluster, with the stages placed."""
    folder.mkdir(parents=True)
    (folder / "inventory.yaml").write_text(f"""
devices:
  local: {{transport: local, workdir: {folder / 'device'}, ray_resource: {'head' if cluster else 'null'}}}
""")
    cfg = write_config(folder, inputs / "teacher", {"train": inputs / "train.tsv", "dev": inputs / "dev.tsv"})
    resources = {"teacher": "head", "importance": "head", "vocab": "head", "student": "worker", "artifact": "worker"}
    return edit_config(cfg, {"inventory": "inventory.yaml"}, add={"cluster": {"resources": resources}} if cluster else None)


def _results(folder: Path) -> tuple[dict, list[dict]]:
    store = Store(str(folder / "db.sqlite"))
    run = store.latest_run()
    assert run["status"] == "done", run
    names = {v["variant_id"]: v["name"] for v in store.variants(run["run_id"])}
    rows = {(m["subject"], names.get(m["variant_id"], ""), m["device"], m["runtime"]): (m["accuracy"], m["size_bytes"], m["n"])
            for m in store.measurements(run["run_id"])}
    return rows, store.stage_results(run["run_id"])


@pytest.fixture
def two_nodes(tmp_path):
    """(address, {"head": node id, "worker": node id}); the worker cannot see tmp_path's files."""
    port = _free_port()
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token"}
    subprocess.run([RAY, "get-auth-token", "--generate"], capture_output=True, timeout=60, env=env)
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    try:
        head = subprocess.run([RAY, "start", "--head", "--port", str(port), "--resources", '{"head": 1}', "--include-dashboard",
                               "false",
                               *common], capture_output=True, text=True, timeout=180, env=env, cwd="/")
        assert head.returncode == 0, head.stderr
        joined = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                                 f"mount -t tmpfs tmpfs {tmp_path} && exec {RAY} start --address 127.0.0.1:{port} "
                                 f"--resources '{{\"worker\": 1}}' {' '.join(common)}"],
                                capture_output=True, text=True, timeout=180, env=env, cwd="/")
        assert joined.returncode == 0, joined.stderr
        code = (f"import json, ray; ray.init(address='127.0.0.1:{port}', logging_level='ERROR');"
                "print(json.dumps({r: n['NodeID'] for n in ray.nodes() if n['Alive'] for r in ('head', 'worker') if r in "
                "n['Resources']}))")
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd="/")
        nodes = json.loads(probe.stdout.strip().splitlines()[-1])
        assert set(nodes) == {"head", "worker"} and nodes["head"] != nodes["worker"], probe.stdout + probe.stderr
        yield f"127.0.0.1:{port}", nodes
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=env)


def test_sweep_on_two_nodes_without_a_shared_disk(two_nodes, tiny_bert, task_files, tmp_path):
    address, ids = two_nodes
    inputs = tmp_path / "in"  # the worker sees an empty tmpfs here: inputs reach it by content
    inputs.mkdir()
    shutil.copytree(tiny_bert, inputs / "teacher")
    for split in ("train", "dev"):
        shutil.copy(task_files[split], inputs / f"{split}.tsv")
    one = _config(tmp_path / "one", inputs, cluster=False)
    out = eib("run", str(one), "--quiet", "--executor", "inline", cwd=one.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    two = _config(tmp_path / "two", inputs, cluster=True)
    out = eib("run", str(two), "--quiet", "--executor", "ray", "--address", address, cwd=two.parent)
    assert out.returncode == 0, out.stdout + out.stderr

    single, _ = _results(one.parent)
    multi, stages = _results(two.parent)
    assert multi == single  # same accuracies and sizes, measurement by measurement (1 thread per stage in both)
    want = {"teacher": "head", "importance": "head", "vocab": "head", "student": "worker", "artifact": "worker",
            "measure": "head"}
    for r in stages:
        assert r["status"] == "ok", r
        assert r["output"]["ray_node"] == ids[want[r["stage"]]], (r["stage"], r["output"]["ray_node"])
    assert sum(r["stage"] == "measure" for r in stages) == 3  # the teacher and two artifacts, on the pinned device
    # the worker's disk is its own: what it wrote and nobody needed here never reached the head
    students = [r["output"] for r in stages if r["stage"] == "student"]
    assert students and not any(Path(s["dir"]).exists() for s in students)
    artifacts = [r["output"] for r in stages if r["stage"] == "artifact"]
    assert all((Path(a["artifact_dir"]) / "manifest.json").exists() for a in artifacts)  # travelled to the measuring head
