"""A driver that is gone leaves no run `running` and no lease held; placements no node can take are refused."""

import subprocess
import sys

import pytest

from eibutil import UserError
from harness.stages.state import Payload


def test_a_killed_drivers_run_is_marked_failed_and_its_leases_freed(tmp_path):
    import sqlalchemy as sa

    from harness.engine.devicepool import DevicePool, leases
    from harness.engine.driver import reap_dead_drivers
    from harness.results.store import Store, _j
    from harness.results.tables import runs

    store = Store(str(tmp_path / "db.sqlite"))
    live = store.create_run("cfg", {})
    dead = store.create_run("cfg", {})
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that no longer runs: the driver was SIGKILLed
    with store.transaction() as tx:
        driver = {"driver": {"host": __import__("socket").gethostname(), "pid": p.pid}}
        tx.conn.execute(runs.update().where(runs.c.run_id == dead).values(summary_json=_j(driver)))
    DevicePool(store, dead, {})  # creates the lease table
    with store.transaction() as tx:
        tx.conn.execute(leases.insert().values(device="local", holder="x", run_id=dead, expires_at=9e12))
    assert reap_dead_drivers(store) == [dead]
    assert store.run(dead)["status"] == "failed" and "died" in store.run(dead)["summary"]["error"]
    assert store.run(live)["status"] == "running"  # this process is alive
    with store.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(leases)).scalar() == 0


def test_sigterm_ends_the_driver_through_its_cleanup():
    code = ("import os, signal, time\nfrom harness.engine.driver import driver_signals\ntry:\n    with driver_signals():\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n        time.sleep(10)\nexcept SystemExit as e:\n    print('cleanup', "
            "e.code)\n    raise\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 143 and "cleanup 143" in out.stdout


def test_placement_no_node_can_take_is_refused_in_one_line():
    from types import SimpleNamespace

    from harness.engine.executors import RayExecutor

    ex = object.__new__(RayExecutor)
    ex.node_resources = [{"CPU", "memory", "node:10.0.0.1", "gpu-box"}]
    ex.check_placement(SimpleNamespace(payload=Payload(None, device="pi"), stage="measure"), {"gpu-box": 0.001})
    with pytest.raises(UserError, match=r"device 'pi' needs the Ray resource 'pi-node' .*custom resources there: gpu-box"):
        ex.check_placement(SimpleNamespace(payload=Payload(None, device="pi"), stage="measure"), {"pi-node": 0.001})


@pytest.mark.parametrize("name, message",
                         [("CPU", "one of Ray's own"), ("node:1.2.3.4", "one of Ray's own"), ("my box!", "not a custom")])
def test_resource_names_are_checked_in_the_inventory_and_the_config(tmp_path, name, message):
    import yaml

    from devices.inventory import load_inventory
    from eibutil import ConfigError

    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"devices": {"local": {"transport": "local", "ray_resource": name}}}))
    with pytest.raises(ConfigError, match=message):
        load_inventory(inv)
    from harness.config.schema import ClusterConfig

    with pytest.raises(ValueError, match=message):
        ClusterConfig(resources={"student": name})


def test_an_auth_failure_is_the_inventorys_mistake_not_a_dead_device(tmp_path):
    from devices.inventory import DeviceSpec
    from harness.engine.devicepool import DevicePool
    from harness.results.store import Store

    store = Store(str(tmp_path / "db.sqlite"))
    run = store.create_run("x", {})

    from harness.engine.devicepool import QUARANTINE_AFTER

    def spec(error):
        return DeviceSpec(transport="fake", workdir=str(tmp_path / error), runtimes=["onnxruntime"],
                          faults=[{"on": "probe", "error": error, "times": 99}])

    pool = DevicePool(store, run, {"keyless": spec("auth")})
    other = DevicePool(store, run, {"gone": spec("unreachable")})
    for i in range(QUARANTINE_AFTER + 1):
        got = pool.acquire("keyless", "onnxruntime", f"h{i}")
        assert got == "keyless" and "keyless" not in pool.quarantined
        pool.release("keyless", f"h{i}")
        other.acquire("gone", "onnxruntime", f"g{i}")
    assert "gone" in other.quarantined
