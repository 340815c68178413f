"""The results database: SQLite by default, any SQLAlchemy URL (PostgreSQL, ...) when given.

    from harness.results.store import Store
    store = Store("results/eib.sqlite")
    run_id = store.create_run("quickstart", config_json, config_path="configs/quickstart.yaml")
    with store.transaction() as tx:
        tx.add_stage(run_id, variant_id, "teacher", output={...})
    store.stage_results(run_id)

Every write happens inside one transaction: a crash (or an exception) mid-write leaves nothing of
it behind, never a half-written row. Raw latency samples are stored as JSON arrays beside their
summary so that any statistic can be recomputed later.
"""

import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from eibutil import UserError
from harness.results.tables import measurements, metadata, provenance, runs, stage_results, variants


def driver_id() -> dict:
    """The process that drives a run: a running run row names it (harness.engine.driver reaps the run if it dies)."""
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _url(db: str) -> str:
    if not db.strip():
        raise UserError("results database: empty (give a file path or an SQLAlchemy URL)")
    if "://" in db:
        return db
    try:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{db}: cannot create its folder ({e.strerror})") from None
    if Path(db).is_dir():
        raise UserError(f"{db}: a folder, not a database file")
    return f"sqlite:///{Path(db).resolve()}"


def _engine(raw: str, shown: str):
    """An SQLAlchemy engine, or one line (UserError) for a URL it cannot build: unknown scheme, a driver not
    installed, a malformed SQLite URL. The password is never shown."""
    try:
        engine = sa.create_engine(raw, future=True, hide_parameters=True)
    except ModuleNotFoundError as e:
        raise UserError(f"{shown}: its database driver is not installed ({e.name}); SQLite paths and postgresql:// work "
                        "as installed") from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"{shown}: not a database URL SQLAlchemy can use "
                        f"({display_url(first) if '://' in first else first})") from None
    return engine


def display_url(db: str) -> str:
    """`db` as it may be shown, logged or stored: any password replaced by ***."""
    if "://" not in db:
        return db
    try:
        return sa.engine.make_url(db).render_as_string(hide_password=True)
    except Exception:  # not parseable as a URL: show only its scheme
        return db.split("://", 1)[0] + "://***"


def public_config(cfg: dict) -> dict:
    """A config dump fit to store or show: `results.database` with its password masked."""
    res = cfg.get("results")
    if isinstance(res, dict) and isinstance(res.get("database"), str):
        return {**cfg, "results": {**res, "database": display_url(res["database"])}}
    return cfg


def _j(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, sort_keys=True, default=str)


class Tx:
    """Writes inside one open transaction (see `Store.transaction`)."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn

    def add_variant(self, run_id: str, variant_id: str, name: str, overrides: dict, config: dict) -> None:
        exists = self.conn.execute(
            sa.select(variants.c.variant_id).where(variants.c.run_id == run_id, variants.c.variant_id == variant_id)
        ).first()
        if not exists:
            self.conn.execute(variants.insert().values(run_id=run_id, variant_id=variant_id, name=name,
                                                       overrides_json=_j(overrides), config_json=_j(config)))

    def add_stage(self, run_id: str, variant_id: str, stage: str, *, status: str = "ok", error: str | None = None,
                  error_kind: str | None = None, cache_key: str | None = None, wall_s: float | None = None,
                  output: dict | None = None, node_key: str | None = None) -> int:
        res = self.conn.execute(stage_results.insert().values(
            run_id=run_id, variant_id=variant_id, stage=stage, status=status, error=error, error_kind=error_kind,
            cache_key=cache_key, node_key=node_key, wall_s=wall_s, output_json=_j(output), created_at=time.time()))
        return int(res.inserted_primary_key[0])

    def add_measurement(self, run_id: str, variant_id: str, *, subject: str, device: str, runtime: str,
                        samples_ms: list[float] | None = None, metrics: dict | None = None, **cols) -> int:
        res = self.conn.execute(measurements.insert().values(
            run_id=run_id, variant_id=variant_id, subject=subject, device=device, runtime=runtime,
            samples_json=_j(samples_ms), metrics_json=_j(metrics), created_at=time.time(), **cols))
        return int(res.inserted_primary_key[0])

    def add_provenance(self, run_id: str, variant_id: str = "", *, git_sha=None, git_dirty=None, packages=None,
                       host=None, data=None, seeds=None, extra=None) -> None:
        self.conn.execute(provenance.insert().values(
            run_id=run_id, variant_id=variant_id, git_sha=git_sha, git_dirty=git_dirty, packages_json=_j(packages),
            host_json=_j(host), data_json=_j(data), seeds_json=_j(seeds), extra_json=_j(extra), created_at=time.time()))


class Store:
    def __init__(self, database: str, readonly: bool = False):
        if readonly:
            self._open_readonly(database)
            return
        raw = _url(database)
        self.url = display_url(raw)  # the only form of the URL that is shown or kept
        self.engine = _engine(raw, self.url)
        if raw.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _):  # WAL: readers never block the writer; durable commits
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        for attempt in range(10):  # two processes opening a new database at once race between check and create
            try:
                metadata.create_all(self.engine)
                cols = {c["name"] for c in sa.inspect(self.engine).get_columns("stage_results")}
                if "node_key" not in cols:  # a database from before the stage graph
                    with self.engine.begin() as conn:
                        conn.execute(sa.text("ALTER TABLE stage_results ADD COLUMN node_key VARCHAR(64)"))
                break
            except (sa.exc.ArgumentError, ModuleNotFoundError) as e:
                raise UserError(f"{self.url}: cannot open ({str(e).splitlines()[0][:120]})") from None
            except sa.exc.OperationalError as e:
                if attempt == 9 or not any(m in str(e) for m in ("already exists", "duplicate column", "database is locked")):
                    if attempt == 0 and "unable to open database file" in str(e):
                        raise UserError(f"{self.url}: unable to open the database file") from None
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _open_readonly(self, database: str) -> None:
        """For commands that only read: nothing is created or altered (no folders, tables, WAL switch)."""
        if "://" in database:
            raw = database
        else:
            path = Path(database)
            if not path.is_file():
                raise UserError(f"{database}: no results database there")
            raw = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
        self.url = display_url(database)
        self.engine = _engine(raw, self.url)
        try:
            tables = set(sa.inspect(self.engine).get_table_names())
        except (sa.exc.SQLAlchemyError, ModuleNotFoundError, ValueError) as e:
            raise UserError(f"{self.url}: not a readable database "
                            f"({str(e.orig if hasattr(e, 'orig') else e).splitlines()[0][:120]})") from None
        if not {"runs", "variants", "stage_results", "measurements"} <= tables:
            raise UserError(f"{self.url}: not an eib results database (no runs table)")

    @contextlib.contextmanager
    def transaction(self):
        """One atomic unit of writes: all of them land, or none."""
        with self.engine.begin() as conn:
            yield Tx(conn)

    def create_run(self, name: str, config: dict, config_path: str | None = None, run_id: str | None = None) -> str:
        run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        with self.transaction() as tx:  # a running run names its driver (harness.engine.driver reaps it if that dies)
            tx.conn.execute(runs.insert().values(run_id=run_id, name=name, config_path=config_path, config_json=_j(config),
                                                 status="running", created_at=time.time(),
                                                 summary_json=_j({"driver": driver_id()})))
        return run_id

    def reopen_run(self, run_id: str) -> None:
        with self.transaction() as tx:
            tx.conn.execute(runs.update().where(runs.c.run_id == run_id).values(status="running", finished_at=None,
                                                                                summary_json=_j({"driver": driver_id()})))

    def finish_run(self, run_id: str, status: str, summary: dict | None = None) -> None:
        with self.transaction() as tx:
            tx.conn.execute(runs.update().where(runs.c.run_id == run_id)
                            .values(status=status, finished_at=time.time(), summary_json=_j(summary)))

    def _rows(self, query) -> list[dict]:
        with self.engine.connect() as conn:
            out = []
            for r in conn.execute(query).mappings():
                d = dict(r)
                for k in list(d):
                    if k.endswith("_json") and d[k] is not None:
                        d[k[:-5]] = json.loads(d.pop(k))
                    elif k.endswith("_json"):
                        d[k[:-5]] = d.pop(k)
                out.append(d)
            return out

    def run(self, run_id: str) -> dict | None:
        rows = self._rows(sa.select(runs).where(runs.c.run_id == run_id))
        return rows[0] if rows else None

    def runs(self, name: str | None = None) -> list[dict]:
        q = sa.select(runs).order_by(runs.c.created_at)
        return self._rows(q.where(runs.c.name == name) if name else q)

    def latest_run(self, name: str | None = None) -> dict | None:
        rows = self.runs(name)
        return rows[-1] if rows else None

    def variants(self, run_id: str) -> list[dict]:
        return self._rows(sa.select(variants).where(variants.c.run_id == run_id))

    def stage_results(self, run_id: str) -> list[dict]:
        return self._rows(sa.select(stage_results).where(stage_results.c.run_id == run_id).order_by(stage_results.c.id))

    def producers(self, node_keys: list[str]) -> dict[str, dict]:
        """node key -> the run and wall time of the row that first computed it (what a cached stage reused)."""
        q = (sa.select(stage_results.c.node_key, stage_results.c.run_id, stage_results.c.wall_s)
             .where(stage_results.c.node_key.in_(list(node_keys)), stage_results.c.status == "ok").order_by(stage_results.c.id))
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for key, run_id, wall_s in conn.execute(q):
                out.setdefault(key, {"run_id": run_id, "wall_s": wall_s})
        return out

    def measurements(self, run_id: str) -> list[dict]:
        return self._rows(sa.select(measurements).where(measurements.c.run_id == run_id).order_by(measurements.c.id))

    def provenance(self, run_id: str) -> list[dict]:
        return self._rows(sa.select(provenance).where(provenance.c.run_id == run_id).order_by(provenance.c.id))
