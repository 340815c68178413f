"""The driver's own life: no run is left `running`, and no device lease held, by a driver that is gone.

    with driver_signals():                 # SIGTERM and SIGHUP end the driver like Ctrl-C: the run is marked failed
        ...
    reap_dead_drivers(store)               # runs whose driver died (SIGKILL, power loss) on this host: failed, leases freed

A run row records its driver (host and pid) while it runs; the next driver on the same host that finds
such a row with a dead pid marks it failed (resumable with `eib run --resume`) and frees its leases.
"""

import contextlib
import os
import signal
import threading

from harness.results.store import driver_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_drivers(store) -> list[str]:
    """Mark failed every `running` run whose driver ran on this host and is dead; free its device leases."""
    import sqlalchemy as sa

    from harness.engine.devicepool import leases

    me, reaped = driver_id(), []
    for run in store.runs():
        driver = (run.get("summary") or {}).get("driver") or {}
        if run["status"] != "running" or driver.get("host") != me["host"] or not driver.get("pid") or _alive(int(driver["pid"])):
            continue
        store.finish_run(run["run_id"], "failed",
                         {"error": f"its driver (pid {driver['pid']}) died; resume with eib run --resume",
                                                   "driver": driver})
        try:
            with store.transaction() as tx:
                tx.conn.execute(leases.delete().where(leases.c.run_id == run["run_id"]))
        except sa.exc.SQLAlchemyError:
            pass  # no lease table yet
        reaped.append(run["run_id"])
    return reaped


@contextlib.contextmanager
def driver_signals():
    """SIGTERM and SIGHUP raise SystemExit in the driver (main thread only), so its cleanup runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
