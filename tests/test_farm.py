"""Real SSH devices on this machine (see devices/testfarm): an x86 device in a network namespace and an
aarch64 device whose programs run under qemu, each running a model built for it; faults that really
happen (a cut link, a killed sshd, a killed process, a corrupted upload, a run past its timeout), each
surfacing as its own kind of error within 10 s with nothing left behind; host keys and shell quoting.

Needs root and network namespaces; skipped with the reason elsewhere, but under CI=true it must run.
"""

import hashlib
import itertools
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from devices.agent import Agent
from devices.errors import DeviceTimeoutError, HostKeyError, IntegrityError, KilledError, UnreachableError
from devices.inventory import DeviceSpec
from devices.testfarm.hostenv import missing_requirements
from harness.measure.run import MeasureSettings, measure_on_device

pytestmark = pytest.mark.farm
FAULT_BUDGET_S = 10.0
SETTINGS = MeasureSettings(seq_len=32, rows=16, warmup=2, min_count=10, min_duration_s=0.2, max_duration_s=30)


def _need(arm: bool = False) -> None:
    why = missing_requirements(arm)
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, and the device farm cannot run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def farm():
    _need()
    from devices.testfarm.farm import Farm

    f = Farm()
    yield f
    f.close()


def _spec(farm, name: str, **over) -> DeviceSpec:
    return DeviceSpec(**farm.spec(name, **over))


@pytest.fixture(scope="module")
def x86(farm):
    farm.add("x86a")
    yield "x86a"
    farm.remove("x86a")


@pytest.fixture(scope="module")
def arm(farm):
    _need(arm=True)
    farm.add("arm1", arch="aarch64")
    yield "arm1"
    farm.remove("arm1")


_count = itertools.count()


@pytest.fixture
def fresh(farm):
    """A device of its own for a test that breaks it."""
    name = f"fault{next(_count)}"
    farm.add(name)
    yield name
    farm.remove(name)


# The host reference is onnxruntime on the artifact's integer kernels (activations quantized per call). TVM on the
# x86 farm device (an x86-64-v3 target, no VNNI) runs the dequantized float graph, TVM on aarch64 the sdot kernels,
# and onnxruntime on another architecture runs other integer kernels (aarch64's round differently): each differs
# from the host by its rounding, never in its predictions.
DRIFT_TOL = {("onnxruntime", "x86_64"): 1e-4, ("onnxruntime", "aarch64"): 3e-2, ("tvm", "x86_64"): 1e-2, ("tvm", "aarch64"): 1e-2}


def _check_measurement(rec: dict, n: int) -> None:
    m = rec["metrics"]
    assert rec["n"] == n and m["predictions_agree"] == n  # identical to the host's onnxruntime predictions
    key = (rec["runtime"], m["device_facts"].get("machine"))
    assert m["max_logit_drift"] < DRIFT_TOL[key], (key, m["max_logit_drift"])
    assert 0 < rec["p50_ms"] <= rec["p90_ms"] <= rec["p99_ms"] and m["count"] >= SETTINGS.min_count
    assert len(rec["samples"]) == m["count"]
    assert rec["peak_rss_bytes"] >= m["rss_loaded_bytes"] >= m["rss_runtime_bytes"] > 0


@pytest.mark.parametrize("runtime", ["tvm", "onnxruntime"])
def test_x86_namespace_device_runs_the_artifact(farm, x86, tiny_artifact, runtime):
    art, data, cache = tiny_artifact
    rec = measure_on_device(art, x86, _spec(farm, x86), runtime, data.dev, SETTINGS, cache)
    _check_measurement(rec, 16)
    assert rec["metrics"]["device_facts"]["hostname"] == x86 and rec["metrics"]["device_facts"]["machine"] == "x86_64"
    if runtime == "tvm":
        assert rec["metrics"]["build"]["target_dict"]["mtriple"] == "x86_64-linux-gnu"


@pytest.mark.parametrize("runtime", ["tvm", "onnxruntime"])
def test_emulated_aarch64_device_runs_the_cross_compiled_artifact(farm, arm, tiny_artifact, runtime):
    art, data, cache = tiny_artifact
    rec = measure_on_device(art, arm, _spec(farm, arm), runtime, data.dev, SETTINGS, cache)
    _check_measurement(rec, 16)
    assert rec["metrics"]["device_facts"]["machine"] == "aarch64"  # every program there really is aarch64
    assert rec["verdict"] == "INVALID" and "emulated" in rec["verdict_reason"]
    if runtime == "tvm":
        assert rec["metrics"]["build"]["target_dict"]["mtriple"] == "aarch64-linux-gnu"
        assert rec["metrics"]["build"]["int8_path"] == "sdot"  # the farm's ARM target is a Cortex-A76 (+dotprod)
        sha = rec["metrics"]["build"]["lib_sha256"]  # the library that was built is the one that reached the device
        assert sha and (farm.devices[arm].host_workdir / "blobs" / f"{sha}.so").is_file()


@pytest.mark.parametrize("where", ["x86", "arm"])
def test_tvm_builds_and_runs_an_int4_artifact_and_says_how(farm, request, tiny_int4_artifact, where):
    """bits: 4 on both architectures: INT4 layers with a step per row reach TVM as int8 values and run on the INT8
    path (sdot on the ARM device; float on the x86 one, whose target has no VNNI), block-wise ones as fp32 constants
    unpacked at build time; the build record names them; predictions equal the host's onnxruntime, logits within
    its activation rounding."""
    device = request.getfixturevalue(where)
    art, data, cache = tiny_int4_artifact
    rec = measure_on_device(art, device, _spec(farm, device), "tvm", data.dev, SETTINGS, cache)
    build = rec["metrics"]["build"]
    # every linear layer whose input width is a multiple of 16: the layer's six, the bridge, pooler and classifier;
    # those 16 wide (one block: a step per row) run as int8 values on the INT8 path, the 32-wide ones (two blocks) float
    assert build["int4_path"] == "int8+float" and len(build["int4_layers"]) == 9, build.get("int4_layers")
    assert len(build["int4_as_int8"]) == 6 and not any(n.endswith(("ffn_out", "pooler", "classifier"))
                                                       for n in build["int4_as_int8"]), build["int4_as_int8"]
    assert build["int8_path"] == {"x86": "float", "arm": "sdot"}[where]  # the farm's x86 target has no VNNI
    if where == "arm":  # on the sdot kernels with the INT8 embedding projection: q, k, v, o and ffn_in (the bridge
        # reads [CLS] alone, one row, which does not tile: float like any such layer)
        assert sorted((x["n"], x["k"]) for x in build["int8_layers"]) == [(16, 8)] + [(16, 16)] * 4 + [(32, 16)]
    assert rec["metrics"]["device_facts"]["machine"] == {"x86": "x86_64", "arm": "aarch64"}[where]
    assert rec["n"] == 16 and rec["metrics"]["predictions_agree"] == 16
    assert rec["metrics"]["max_logit_drift"] < 5e-2, rec["metrics"]["max_logit_drift"]


@pytest.mark.parametrize("target,path,instruction", [("arm64-cortex-a76", "sdot", "sdot"), ("arm64-cortex-a72", "neon", "smull")])
def test_arm_builds_run_the_shipped_models_dense_layers_on_integer_kernels(farm, arm, tmp_path, target, path, instruction,
                                                                          shipped_dense):
    """The shipped model built for a `+dotprod` core computes its dense layers with `sdot`, for a NEON-only core with
    `smull`/`saddlp` (the kernels named in the build record contain the instruction in aarch64-linux-gnu-objdump's
    disassembly), and on the emulated ARM device (qemu runs both) its predictions equal onnxruntime's on the host."""
    from compiler.disasm import functions_using
    from eibert.data import load_task
    from harness.measure.run import build_for

    model = Path(__file__).resolve().parents[1] / "models/sst2-2mb"
    st = MeasureSettings(seq_len=64, rows=24, warmup=1, min_count=3, min_duration_s=0.1, null_floor=False, end_to_end=False)
    rec = build_for(model, target, st, tmp_path / "cache")
    assert rec["int8_path"] == path and len(rec["int8_layers"]) == shipped_dense, rec.get("int8_reason")
    kernels = {layer["kernel"] for layer in rec["int8_layers"]}
    with_it = functions_using(rec["lib"], instruction, "aarch64")
    assert all(any(f.startswith(k) for f in with_it) for k in kernels), (kernels, with_it)
    assert rec["int8_verified"] == {"instruction": instruction, "kernels": len(kernels), "kernels_with": len(kernels),
                                    "tool": "aarch64-linux-gnu-objdump"}
    out = measure_on_device(model, arm, _spec(farm, arm, target=target), "tvm", load_task().dev, st, tmp_path / "cache",
                            build=rec)
    assert out["metrics"]["device_facts"]["machine"] == "aarch64"
    assert out["metrics"]["predictions_agree"] == out["n"] == 24
    assert out["metrics"]["max_logit_drift"] < 2e-2, out["metrics"]["max_logit_drift"]


def test_local_device_works_without_ssh(tiny_artifact, tmp_path):
    art, data, cache = tiny_artifact
    spec = DeviceSpec(transport="local", target="x86-64-host", workdir=str(tmp_path / "local"), threads=1)
    for runtime in ("onnxruntime", "tvm"):
        rec = measure_on_device(art, "local", spec, runtime, data.dev, SETTINGS, cache)
        _check_measurement(rec, 16)
        # the TVM runner loads the runtime alone: no compiler library, no torch (tvm_ffi imports it if it can)
        if runtime == "tvm":
            assert rec["metrics"]["rss_runtime_bytes"] < 160 * 2**20, rec["metrics"]["rss_runtime_bytes"]


# faults ---------------------------------------------------------------------------------------

def _assert_clean(farm, name: str) -> None:
    """No run directory, no partial upload, and every cached blob is what its name says."""
    entries = farm.workdir_entries(name)
    assert entries["runs"] == [] and entries["other"] == [], entries
    blobs = farm.devices[name].host_workdir / "blobs"
    for b in blobs.iterdir() if blobs.is_dir() else []:
        assert hashlib.sha256(b.read_bytes()).hexdigest() == b.name.split(".")[0], b
    assert not [p for p, cmd in farm.cmdlines(name).items() if b"eib_device.py" in cmd]


def _wait_for_runner(farm, name: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for cmd in farm.cmdlines(name).values():
            if b"eib_device.py\0run" in cmd:
                time.sleep(0.5)  # past its imports, in the timing loop
                return
        time.sleep(0.05)
    raise AssertionError("the runner never started on the device")


def _long_run(agent: Agent, tiny_artifact, tmp_path):
    art, _, _ = tiny_artifact
    npz = tmp_path / "inputs.npz"
    np.savez(npz, input_ids=np.ones((2, 8), np.int64), attention_mask=np.ones((2, 8), np.int64), labels=np.zeros(2, np.int64))
    return agent.run_model({"model.onnx": art / "model.onnx", "inputs.npz": npz}, "onnxruntime", model="model.onnx",
                           inputs="inputs.npz", warmup=1, min_count=1, min_duration_s=120, max_duration_s=120, threads=1)


def _fault_during_run(farm, name, tiny_artifact, tmp_path, fault, spec=None):
    """Start a long run, apply `fault` once the runner is timing; returns (error, seconds from fault to error)."""
    agent = Agent(name, spec or _spec(farm, name))
    agent.probe()
    box: dict = {}

    def go():
        try:
            _long_run(agent, tiny_artifact, tmp_path)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            box["error"], box["at"] = e, time.monotonic()

    th = threading.Thread(target=go, daemon=True)
    th.start()
    _wait_for_runner(farm, name)
    t0 = time.monotonic()
    fault()
    th.join(timeout=60)
    assert not th.is_alive(), "the agent hung after the fault"
    return agent, box.get("error"), box.get("at", time.monotonic()) - t0


def test_link_cut_during_a_run_is_unreachable_within_seconds(farm, fresh, tiny_artifact, tmp_path):
    agent, err, took = _fault_during_run(farm, fresh, tiny_artifact, tmp_path, lambda: farm.cut_link(fresh))
    assert isinstance(err, UnreachableError) and took < FAULT_BUDGET_S, (err, took)
    farm.restore_link(fresh)
    agent.probe()  # the next connection removes the failed run and kills its orphaned process
    agent.close()
    _assert_clean(farm, fresh)


def test_link_cut_during_an_upload_is_unreachable_within_seconds(farm, fresh, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20))
    agent = Agent(fresh, _spec(farm, fresh))
    agent.probe()
    farm.limit_rate(fresh, "4mbit")  # ~12 s for the file: long enough to cut in the middle
    box: dict = {}

    def go():
        try:
            agent.run_model({"big.bin": big}, "onnxruntime", model="big.bin")
        except Exception as e:  # noqa: BLE001
            box["error"], box["at"] = e, time.monotonic()

    th = threading.Thread(target=go, daemon=True)
    th.start()
    part = farm.devices[fresh].host_workdir / "runs"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(part.glob("*/upload/big.bin")):
        time.sleep(0.05)
    time.sleep(1.0)
    uploading = list(part.glob("*/upload/big.bin"))
    assert uploading and 0 < uploading[0].stat().st_size < big.stat().st_size, "not cut during the upload"
    t0 = time.monotonic()
    farm.cut_link(fresh)
    th.join(timeout=60)
    assert not th.is_alive()
    took = box["at"] - t0
    assert isinstance(box["error"], UnreachableError) and took < FAULT_BUDGET_S, (box, took)
    farm.limit_rate(fresh, None)
    farm.restore_link(fresh)
    agent.probe()
    agent.close()
    _assert_clean(farm, fresh)
    assert not list((farm.devices[fresh].host_workdir / "blobs").glob(".*"))


def test_killed_sshd_is_unreachable_within_seconds(farm, fresh, tiny_artifact, tmp_path):
    agent, err, took = _fault_during_run(farm, fresh, tiny_artifact, tmp_path, lambda: farm.kill_all(fresh))
    assert isinstance(err, UnreachableError) and took < FAULT_BUDGET_S, (err, took)
    farm.start(fresh)
    agent.probe()
    agent.close()
    _assert_clean(farm, fresh)


def test_killed_remote_process_is_reported_as_killed(farm, fresh, tiny_artifact, tmp_path):
    agent, err, took = _fault_during_run(farm, fresh, tiny_artifact, tmp_path,
                                         lambda: farm.kill_matching(fresh, "eib_device.py"))
    assert isinstance(err, KilledError) and err.exit_status == -1 and took < FAULT_BUDGET_S, (err, took)
    agent.close()
    _assert_clean(farm, fresh)  # the link was alive: cleaned up at once


def test_run_past_its_timeout_is_a_timeout_and_is_killed(farm, fresh, tiny_artifact, tmp_path):
    spec = _spec(farm, fresh, run_timeout_s=4)
    agent = Agent(fresh, spec)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeoutError):
        _long_run(agent, tiny_artifact, tmp_path)
    assert time.monotonic() - t0 < 4 + FAULT_BUDGET_S
    agent.close()
    _assert_clean(farm, fresh)


def test_corrupted_upload_is_an_integrity_error(farm, fresh, tiny_artifact, tmp_path):
    art, _, _ = tiny_artifact

    def flip_a_byte(agent, remote_path):  # a real corruption of the file on the device's disk
        with open(remote_path, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xFF]))

    agent = Agent(fresh, _spec(farm, fresh), on_uploaded=flip_a_byte)
    t0 = time.monotonic()
    with pytest.raises(IntegrityError) as e:
        agent.run_model({"model.onnx": art / "model.onnx"}, "onnxruntime", model="model.onnx")
    assert time.monotonic() - t0 < FAULT_BUDGET_S and "sha256" in str(e.value)
    agent.close()
    _assert_clean(farm, fresh)
    assert not list((farm.devices[fresh].host_workdir / "blobs").glob("*.onnx"))  # the bad copy never became a blob


# host keys and quoting ------------------------------------------------------------------------

def test_unknown_host_key_is_refused_by_default(farm, x86, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="not in"):
        Agent(x86, _spec(farm, x86, known_hosts=str(empty))).probe()
    assert Agent(x86, _spec(farm, x86, known_hosts=str(empty), accept_unknown_host=True)).probe()["hostname"] == x86


def test_changed_host_key_is_refused(farm, x86, tmp_path):
    import paramiko

    other = paramiko.Ed25519Key.from_private_key_file(str(farm.client_key))  # any key but the device's
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{farm.devices[x86].address} {other.get_name()} {other.get_base64()}\n")
    with pytest.raises(HostKeyError, match="does not match"):
        Agent(x86, _spec(farm, x86, known_hosts=str(wrong))).probe()


def test_shell_metacharacters_in_paths_execute_nothing(farm, x86, tiny_artifact, tmp_path):
    marker = Path("/tmp") / f"eib-pwned-{os.getpid()}"
    base = farm.devices[x86].host_workdir
    workdir = f"{base}/w;touch {marker};/$(touch {marker})/`touch {marker}`/a'b\"c"
    art, data, cache = tiny_artifact
    rec = measure_on_device(art, x86, _spec(farm, x86, workdir=workdir), "onnxruntime", data.dev, SETTINGS, cache)
    assert rec["n"] == 16 and not marker.exists()
    assert Path(workdir, "blobs").is_dir()  # the literal path was used


# command line ---------------------------------------------------------------------------------

def test_eib_devices_check_and_measure_over_ssh(farm, x86, tiny_artifact, tmp_path):
    import subprocess
    import sys

    import yaml

    from harness.results.store import Store

    inv = farm.write_inventory(tmp_path / "inventory.yaml")
    doc = yaml.safe_load(inv.read_text())
    doc["devices"]["gone"] = {**doc["devices"][x86], "host": "10.77.254.2"}  # inside the unreachable route
    inv.write_text(yaml.safe_dump(doc))
    eib = [sys.executable, "-m", "harness.cli"]
    p = subprocess.run([*eib, "devices", "check", "--inventory", str(inv)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr  # one device is down
    lines = {ln.split()[0]: ln for ln in p.stdout.splitlines()[1:]}
    assert " ok " in lines[x86] and "x86_64" in lines[x86] and "onnxruntime=" in lines[x86]
    assert " down " in lines["gone"] and "unreachable" in lines["gone"]
    assert " ok " in lines["local"]

    art, _, cache = tiny_artifact
    db = tmp_path / "eib.sqlite"
    dev_file = Path(__file__).resolve().parents[1] / "eibert/data/sst2/validation.tsv"
    p = subprocess.run([*eib, "measure", str(art), "--device", x86, "--runtime", "onnxruntime", "--inventory", str(inv),
                        "--data", str(dev_file), "--rows", "8", "--seq-len", "32", "--min-count", "5", "--min-duration-s", "0.1",
                        "--db", str(db), "--cache-dir", str(cache)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "8/8 predictions agree" in p.stdout
    store = Store(str(db))
    run = store.latest_run("measure")
    (row,) = store.measurements(run["run_id"])
    assert row["device"] == x86 and row["runtime"] == "onnxruntime" and row["n"] == 8 and row["p50_ms"] > 0
    assert row["verdict"] in ("VALID", "INVALID") and store.provenance(run["run_id"])[0]["git_sha"]

    p = subprocess.run([*eib, "measure", str(art), "--device", "nope", "--inventory", str(inv)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "no device named 'nope'" in p.stderr and "Traceback" not in p.stderr


# the harness on the farm --------------------------------------------------------------------------

def test_device_killed_mid_measurement_is_retried_on_a_sibling_and_recorded_once(farm, tiny_bert, task_files, tmp_path):
    """Two x86 devices with the same tags; the one the sweep asks for dies while its runner is timing."""
    import subprocess
    import sys

    import yaml

    from harness.results.store import Store
    from tests.test_pipeline import edit_config, write_config

    farm.add("sib-a")
    farm.add("sib-b")
    try:
        inv = farm.write_inventory(tmp_path / "inventory.yaml")
        cfg = write_config(tmp_path, tiny_bert, task_files)
        edit_config(cfg, {"inventory": str(inv), "measure.min_duration_s": 5}, add={"devices": ["sib-a"]})
        db = tmp_path / "db.sqlite"
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(cfg), "--executor", "inline"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for_runner(farm, "sib-a", timeout_s=400)  # a measurement is in flight on sib-a
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.communicate()[0]) from None
        farm.kill_all("sib-a")
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        store = Store(str(db))
        run = store.latest_run()
        on_device = [m for m in store.measurements(run["run_id"]) if m["device"] not in ("host",)]
        siblings = {n for n, d in farm.devices.items() if n != "sib-a" and d.arch == "x86_64"}  # same tags and target
        measure_rows = [r for r in store.stage_results(run["run_id"]) if r["stage"] == "measure"]
        keys = {r["node_key"] for r in measure_rows}
        # the in-flight measurement failed once as unreachable (a retried row), then ran again on a sibling
        retried = [r for r in measure_rows if r["status"] == "retried"]
        assert len(retried) == 1 and retried[0]["error_kind"] == "infrastructure" and retried[0]["output"]["device"] == "sib-a"
        assert sorted(r["node_key"] for r in measure_rows if r["status"] == "ok") == sorted(keys)  # each done once
        # recorded once each: the teacher's reference and the two artifacts
        assert len(on_device) == len(keys) == 3 and {m["device"] for m in on_device} <= siblings
        assert all(m["metrics"]["requested_device"] == "sib-a" for m in on_device)
        assert run["summary"]["retried"] == 1 and run["summary"]["failed"] == 0
        import sqlalchemy as sa

        with store.engine.connect() as c:
            q = c.execute(sa.text("select device, reason from device_quarantine where run_id = :r"), {"r": run["run_id"]}).all()
        assert [d for d, _ in q] == ["sib-a"] and "unreachable" in q[0][1]
        assert "quarantined" in out
        tags = {n: d["tags"] for n, d in yaml.safe_load(inv.read_text())["devices"].items()}
        assert all(tags[m["device"]] == tags["sib-a"] for m in on_device)
    finally:
        farm.remove("sib-a")
        farm.remove("sib-b")
