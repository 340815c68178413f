"""The device pool: leases that expire, a health check before use, quarantine after repeated
infrastructure failures, and a sibling with the same tags when a device fails.

    pool = DevicePool(store, run_id, inventory)
    name = pool.acquire("rpi4", runtime="tvm", holder="node-key")   # None: busy, try later
    ...
    pool.release(name, "node-key"); pool.failed(name, "unreachable: ...")   # or pool.succeeded(name)

Leases live in the results database with an expiry, so a driver that dies (even kill -9) holds a
device only until its leases expire; concurrent drivers sharing a database share the pool.
"""

import logging
import threading
import time

import sqlalchemy as sa

from harness.results.tables import metadata

log = logging.getLogger(__name__)

leases = sa.Table(
    "device_leases", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device", sa.String(128), nullable=False, index=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
quarantine = sa.Table(
    "device_quarantine", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

QUARANTINE_AFTER = 2  # consecutive infrastructure failures (a failed health check counts)


USER_KINDS = ("auth", "workdir")  # probe failures that are the inventory's fault, not the device's


class DevicePool:
    def __init__(self, store, run_id: str, inventory, lease_s: float | None = None, health_check: bool = True):
        """`lease_s`: how long a lease lasts; None: each device's own `lease_s` (from its upload and run timeouts)."""
        self.store, self.run_id, self.inventory = store, run_id, inventory
        self.lease_s, self.health_check = lease_s, health_check
        metadata.create_all(store.engine, tables=[leases, quarantine])
        self.failures: dict[str, int] = {}
        self.quarantined: dict[str, str] = {}
        self.checked: set[str] = set()
        self._lock = threading.Lock()

    def siblings(self, name: str, runtime: str) -> list[str]:
        """Other devices that can stand in: same tags, target and arch, with the runtime, not quarantined."""
        d = self.inventory[name]
        return [n for n, s in self.inventory.items() if n != name and set(s.tags) == set(d.tags) and s.target == d.target
                and s.arch == d.arch and runtime in s.runtimes and n not in self.quarantined]

    def _try_lease(self, name: str, holder: str) -> bool:
        now = time.time()
        with self.store.transaction() as tx:
            tx.conn.execute(leases.delete().where(leases.c.expires_at < now))
            held = tx.conn.execute(sa.select(sa.func.count()).select_from(leases).where(leases.c.device == name)).scalar()
            if held >= self.inventory[name].max_jobs:
                return False
            tx.conn.execute(leases.insert().values(device=name, holder=holder, run_id=self.run_id,
                                                   expires_at=now + (self.lease_s or self.inventory[name].lease_s)))
        return True

    def _healthy(self, name: str) -> bool:
        if not self.health_check or name in self.checked:
            return True
        from harness.engine.health import probe_device

        r = probe_device(name, self.inventory[name])
        if r["status"] == "down" and r.get("error_kind") in USER_KINDS:
            # a mistake in the inventory (wrong key, key_env unset, bad workdir): the device is fine; the stage
            # fails with that error (a device error, not infrastructure) and nothing is quarantined
            self.checked.add(name)
            return True
        if r["status"] == "down":
            self.failed(name, f"health check: {r['error_kind']}: {r['error']}")
            return False
        self.checked.add(name)
        return True

    def acquire(self, name: str, runtime: str, holder: str) -> str | None | bool:
        """A device for `name`'s work: itself, or a sibling once it is quarantined. None: all busy now;
        False: no healthy device can take it."""
        with self._lock:
            for cand in [name] + self.siblings(name, runtime):
                if cand in self.quarantined:
                    continue
                if self._try_lease(cand, holder):
                    if self._healthy(cand):
                        return cand
                    self.release(cand, holder)
            busy = [c for c in [name] + self.siblings(name, runtime) if c not in self.quarantined]
            return None if busy else False

    def release_run(self, run_id: str) -> int:
        """Free every lease of `run_id` (its driver is gone: this one resumes it)."""
        with self.store.transaction() as tx:
            return tx.conn.execute(leases.delete().where(leases.c.run_id == run_id)).rowcount

    def release(self, name: str, holder: str) -> None:
        with self.store.transaction() as tx:
            tx.conn.execute(leases.delete().where(leases.c.device == name, leases.c.holder == holder))

    def succeeded(self, name: str) -> None:
        self.failures[name] = 0

    def failed(self, name: str, reason: str) -> None:
        """An infrastructure failure on `name`; quarantines it after QUARANTINE_AFTER in a row."""
        self.failures[name] = self.failures.get(name, 0) + 1
        self.checked.discard(name)  # check again before the next use
        if self.failures[name] >= QUARANTINE_AFTER and name not in self.quarantined:
            self.quarantined[name] = reason
            with self.store.transaction() as tx:
                tx.conn.execute(quarantine.insert().values(device=name, run_id=self.run_id, reason=reason,
                                                           created_at=time.time()))
            log.info(f"  device {name} quarantined after {self.failures[name]} infrastructure failures: {reason}")
