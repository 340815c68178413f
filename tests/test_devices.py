"""The device side without a farm: inventory errors, quoting, the local transport's error kinds, latency
statistics, the agent on the local device (blob reuse, cleanup) and TVM build errors."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from devices.agent import Agent
from devices.errors import CommandError, DeviceTimeoutError, KilledError
from devices.inventory import DeviceSpec, load_inventory
from devices.transport import LocalTransport, command_line
from eibutil import ConfigError
from eibutil.stats import nearest_rank, summarize


@pytest.mark.parametrize("body, key, message", [
    ("devices:\n  pi:\n    transport: ssh\n    user: pi\n    key_file: k\n", "devices.pi", "needs host"),
    ("devices:\n  pi:\n    transport: ssh\n    host: h\n    key_file: k\n", "devices.pi", "needs user"),
    ("devices:\n  pi:\n    transport: ssh\n    host: h\n    user: u\n", "devices.pi", "key_file, key_env or use_agent"),
    ("devices:\n  pi:\n    transport: local\n    target: riscv\n", "devices.pi.target", "x86-64"),
    ("devices:\n  pi:\n    transport: local\n    arch: aarch64\n    target: x86-64\n", "devices.pi", "builds for x86_64"),
    ("devices:\n  'pi;reboot':\n    transport: local\n", "devices", "pattern"),
    ("devices:\n  pi:\n    transport: local\n    port: 0\n", "devices.pi.port", "greater than or equal to 1"),
    ("devices:\n  pi:\n    transport: local\n    colour: red\n", "devices.pi.colour", "unknown key"),
    ("devices:\n  pi:\n    transport: local\n    connect_timeout_s: .inf\n", "devices.pi.connect_timeout_s",
     "less than or equal to 3600"),
    ("devices:\n  pi:\n    transport: local\n    link_timeout_s: 1e300\n", "devices.pi.link_timeout_s",
     "less than or equal to 3600"),
])
def test_inventory_errors_name_file_device_and_key(tmp_path, body, key, message):
    path = tmp_path / "inventory.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_inventory(path)
    text = str(e.value)
    assert str(path) in text and key in text and message in text, text


PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACANARYKEY\n-----END OPENSSH PRIVATE KEY-----\n"


def test_key_file_must_be_an_existing_file_and_pasted_key_text_is_refused_unechoed(tmp_path, monkeypatch):
    path = tmp_path / "inventory.yaml"
    ssh = "devices:\n  pi:\n    transport: ssh\n    host: h\n    user: u\n"
    path.write_text(ssh + "    key_file: " + json.dumps(PEM) + "\n")
    with pytest.raises(ConfigError) as e:
        load_inventory(path)
    assert "devices.pi.key_file" in str(e.value) and "not the key itself" in str(e.value)
    assert "CANARYKEY" not in str(e.value) and "\n" not in str(e.value)
    path.write_text(ssh + "    key_file: missing_key\n")
    with pytest.raises(ConfigError, match=r"devices\.pi\.key_file: no such key file: .*missing_key"):
        load_inventory(path)
    (tmp_path / "id").write_text("key")
    monkeypatch.setenv("HOME", str(tmp_path))
    path.write_text(ssh + "    key_file: ~/id\n")
    assert load_inventory(path).devices["pi"].key_file == tmp_path / "id"  # ~ is the user's home, not the inventory's folder


def test_key_from_the_environment_that_is_key_text_or_missing_is_an_auth_error_of_the_device(monkeypatch):
    from devices.errors import AuthError
    from devices.transport import SSHTransport

    spec = DeviceSpec(transport="ssh", host="127.0.0.1", user="u", key_env="EIB_TEST_KEY")
    t = SSHTransport.__new__(SSHTransport)  # _key only: no connection needed to judge the key reference
    t.name, t.spec = "pi", spec
    monkeypatch.setenv("EIB_TEST_KEY", PEM)
    with pytest.raises(AuthError) as e:
        t._key()
    assert "CANARYKEY" not in str(e.value) and "holds key text" in str(e.value)
    monkeypatch.setenv("EIB_TEST_KEY", "/nonexistent/key")
    with pytest.raises(AuthError, match="no readable key file"):
        t._key()
    assert not AuthError.infrastructure  # a device's key problem never quarantines it nor moves work to a sibling


def test_shipped_inventory_loads_and_has_the_local_device():
    inv = load_inventory("inventory.yaml")
    assert inv.devices["local"].transport == "local"


def test_command_line_quotes_every_argument(tmp_path):
    marker = tmp_path / "pwned"
    nasty = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "a'b\"c", "\n touch x"]
    line = command_line(["printf", "%s|", *nasty], cwd=str(tmp_path), env={"X": f"$(touch {marker})"})
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout
    assert out == "".join(f"{a}|" for a in nasty) and not marker.exists()
    assert line.startswith(f"cd {shlex.quote(str(tmp_path))} && exec env")


def test_local_transport_tells_timeout_killed_and_failed_apart():
    t = LocalTransport("local", DeviceSpec(transport="local"))
    assert t.run([sys.executable, "-c", "print('hi')"], timeout_s=30) == b"hi\n"
    with pytest.raises(DeviceTimeoutError):
        t.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    with pytest.raises(KilledError):
        t.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], timeout_s=30)
    with pytest.raises(CommandError) as e:
        t.run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], timeout_s=30)
    assert e.value.exit_status == 3 and "boom" in e.value.stderr and e.value.kind == "failed"


def test_nearest_rank_percentiles():
    xs = [float(i) for i in range(1, 101)]
    assert nearest_rank(xs, 50) == 50 and nearest_rank(xs, 90) == 90 and nearest_rank(xs, 99) == 99
    assert nearest_rank([7.0], 99) == 7.0
    s = summarize([5.0, 1.0, 3.0])
    assert (s["p50_ms"], s["p99_ms"], s["min_ms"], s["count"]) == (3.0, 5.0, 1.0, 3)


def test_local_agent_reuses_blobs_and_leaves_no_run_behind(tmp_path, tiny_artifact):
    import numpy as np

    art, data, _ = tiny_artifact
    spec = DeviceSpec(transport="local", workdir=str(tmp_path / "work"), runtimes=["onnxruntime"])
    npz = tmp_path / "inputs.npz"
    np.savez(npz, input_ids=np.ones((3, 8), np.int64), attention_mask=np.ones((3, 8), np.int64), labels=np.zeros(3, np.int64))
    with Agent("local", spec) as agent:
        first = agent.run_model({"model.onnx": art / "model.onnx", "inputs.npz": npz}, "onnxruntime", model="model.onnx",
                                inputs="inputs.npz", warmup=1, min_count=3, min_duration_s=0, threads=1)
        second = agent.run_model({"model.onnx": art / "model.onnx", "inputs.npz": npz}, "onnxruntime", model="model.onnx",
                                 inputs="inputs.npz", warmup=1, min_count=3, min_duration_s=0, threads=1)
    assert first["uploaded_bytes"] > 0 and second["uploaded_bytes"] == 0
    assert len(first["latencies_ns"]) >= 3 and len(first["logits"]) == 3 and first["min_met"]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["blobs", "runs"]
    assert not list((tmp_path / "work" / "runs").iterdir())  # every run folder removed with its run


def _inputs(tmp_path):
    import numpy as np

    npz = tmp_path / "inputs.npz"
    np.savez(npz, input_ids=np.ones((3, 8), np.int64), attention_mask=np.ones((3, 8), np.int64), labels=np.zeros(3, np.int64))
    return npz


def test_device_cleanup_spares_foreign_runs_and_processes_and_a_swapped_blob_is_refused(tmp_path, tiny_artifact):
    import os

    from devices.errors import IntegrityError

    art, _, _ = tiny_artifact
    work = tmp_path / "work"
    spec = DeviceSpec(transport="local", workdir=str(work), runtimes=["onnxruntime"])
    files = {"model.onnx": art / "model.onnx", "inputs.npz": _inputs(tmp_path)}
    opts = dict(model="model.onnx", inputs="inputs.npz", warmup=1, min_count=3, min_duration_s=0, threads=1)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with Agent("local", spec) as agent:
            agent.run_model(files, "onnxruntime", **opts)  # creates the work dir
            runs = work / "runs"
            foreign = runs / "someone-elses-results"  # another host's run: no owner token of ours, lease long expired
            foreign.mkdir()
            (foreign / "results.json").write_text("{}")
            (foreign / "lease").write_text("0")
            (foreign / "pid").write_text(f"{victim.pid} 0")
            mine = runs / "my-stale-run"  # this host's own crashed run: ours, expired, its pid file planted
            mine.mkdir()
            (mine / "owner").write_text(agent.token)
            (mine / "lease").write_text("0")
            (mine / "pid").write_text(f"{victim.pid} 12345")  # the pid of a process this script never started
            agent.run_model(files, "onnxruntime", **opts)
            assert foreign.is_dir() and (foreign / "results.json").is_file()  # the foreign folder survives
            assert not mine.exists()  # the host's own stale run is still cleaned
            assert victim.poll() is None  # the planted process lives

            def swap(agent_, run_dir):  # after every check, before the load
                blob = (Path(run_dir) / "model.onnx").resolve()
                os.chmod(blob, 0o600)
                blob.write_bytes(b"not the model that was verified")

            agent._on_staged = swap
            with pytest.raises(IntegrityError, match="between its check and its load"):
                agent.run_model(files, "onnxruntime", **opts)
    finally:
        victim.kill()
        victim.wait()


def test_device_work_dir_must_be_absolute_and_ours_alone(tmp_path, tiny_artifact):
    import os

    from devices.errors import WorkdirError

    art, _, _ = tiny_artifact
    files = {"model.onnx": art / "model.onnx", "inputs.npz": _inputs(tmp_path)}
    opts = dict(model="model.onnx", inputs="inputs.npz", warmup=1, min_count=3, min_duration_s=0, threads=1)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    for workdir, why in ((str(shared), "writable by group or others"), ("relative/work", "absolute")):
        spec = DeviceSpec(transport="ssh", host="h", user="u", use_agent=True, workdir=workdir)  # ssh: ~ is the device's
        agent = Agent("dev", DeviceSpec(transport="local", workdir=workdir, runtimes=["onnxruntime"]))
        agent.workdir = spec.workdir  # as an ssh device would pass it, unexpanded
        with pytest.raises(WorkdirError, match=why):
            agent.run_model(files, "onnxruntime", **opts)
        agent.close()
    made = tmp_path / "fresh"
    with Agent("local", DeviceSpec(transport="local", workdir=str(made), runtimes=["onnxruntime"])) as agent:
        agent.run_model(files, "onnxruntime", **opts)
    assert (made.stat().st_mode & 0o777) == 0o700


@pytest.mark.integration
def test_tvm_build_errors_are_typed(tmp_path):
    from compiler.build import BuildError, build

    prog = tmp_path / "broken.pt2"
    prog.write_bytes(b"not a program")
    with pytest.raises(BuildError) as e:
        build(prog, "riscv", tmp_path)
    assert e.value.kind == "bad-target"
    with pytest.raises(BuildError) as e:
        build(prog, "x86-64", tmp_path)
    assert e.value.kind == "build-failed" and e.value.log
    with pytest.raises(BuildError) as e:
        build(prog, "x86-64", tmp_path, timeout_s=0.2)
    assert e.value.kind == "build-timeout"
    assert not list((tmp_path / "tvm").rglob("model.so"))  # nothing half-built is left in the cache


def test_measuring_beyond_the_artifacts_positions_is_a_clear_error(tmp_path):
    import shutil

    from eibutil import UserError
    from harness.measure.run import MeasureSettings, measure_on_device

    art = tmp_path / "artifact"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models/sst2-2mb", art)  # 64 positions
    spec = DeviceSpec(transport="local", workdir=str(tmp_path / "work"))
    with pytest.raises(UserError, match="seq_len 128 exceeds the 64 positions of"):
        measure_on_device(art, "local", spec, "onnxruntime", None, MeasureSettings(seq_len=128), tmp_path / "cache")


def test_fake_transport_runs_the_agents_failure_paths_without_root(tmp_path, tiny_artifact):
    from devices.errors import AuthError, DeviceTimeoutError, UnreachableError
    from devices.transport import TRANSPORTS, FakeTransport

    assert TRANSPORTS["fake"] is FakeTransport
    art, _, _ = tiny_artifact
    files = {"model.onnx": art / "model.onnx", "inputs.npz": _inputs(tmp_path)}
    opts = dict(model="model.onnx", inputs="inputs.npz", warmup=1, min_count=3, min_duration_s=0, threads=1)
    work = tmp_path / "work"

    def agent(*faults):
        return Agent("fake", DeviceSpec(transport="fake", workdir=str(work), runtimes=["onnxruntime"], faults=list(faults)))

    with pytest.raises(AuthError, match="injected auth at probe"):
        agent({"on": "probe", "error": "auth"}).probe()
    a = agent({"on": "run", "error": "unreachable"})
    with pytest.raises(UnreachableError):
        a.run_model(files, "onnxruntime", **opts)
    assert len(a.pending_cleanup) == 1 and list((work / "runs").iterdir())  # the link died: cleaned at the next connection
    a.probe()
    assert not a.pending_cleanup and not list((work / "runs").iterdir())
    b = agent({"on": "put", "error": "timeout"})
    for blob in (work / "blobs").iterdir():  # nothing to reuse: every file is uploaded
        blob.unlink()
    with pytest.raises(DeviceTimeoutError):
        b.run_model(files, "onnxruntime", **opts)
    assert not list((work / "runs").iterdir())  # the device still answered: the failed run was removed at once
    assert agent({"on": "run", "error": "killed", "times": 0}).run_model(files, "onnxruntime", **opts)["min_met"]
