"""Results database: round trip of every table, and transactions that leave nothing half-written,
even when the writing process dies mid-transaction."""

import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from harness.results.store import Store


def test_round_trip(tmp_path):
    store = Store(str(tmp_path / "r.sqlite"))
    run_id = store.create_run("exp", {"name": "exp", "x": 1}, "c.yaml")
    with store.transaction() as tx:
        tx.add_variant(run_id, "v1", "vocab=2000", {"compress.vocab.size": 2000}, {"a": 1})
        tx.add_variant(run_id, "v1", "vocab=2000", {"compress.vocab.size": 2000}, {"a": 1})  # idempotent
        tx.add_stage(run_id, "v1", "compress", status="failed", error="boom", error_kind="variant", wall_s=1.5,
                     output={"k": [1, 2]})
        tx.add_measurement(run_id, "v1", subject="artifact", device="local", runtime="onnxruntime", accuracy=0.9, n=872,
                           p50_ms=1.25, samples_ms=[1.0, 1.25, 2.0], metrics={"drift": 1e-6}, verdict="VALID")
        tx.add_provenance(run_id, "", git_sha="abc", git_dirty=True, packages={"torch": "2.13.0"}, data={"dev": "f7"},
                          seeds={"s": 0})
    store.finish_run(run_id, "done", {"failed": 1})

    again = Store(str(tmp_path / "r.sqlite"))  # a new connection sees it all
    run = again.run(run_id)
    assert run["status"] == "done" and run["config"] == {"name": "exp", "x": 1} and run["summary"] == {"failed": 1}
    assert [v["overrides"] for v in again.variants(run_id)] == [{"compress.vocab.size": 2000}]
    (st,) = again.stage_results(run_id)
    assert (st["status"], st["error"], st["error_kind"], st["output"]) == ("failed", "boom", "variant", {"k": [1, 2]})
    (m,) = again.measurements(run_id)
    assert m["samples"] == [1.0, 1.25, 2.0] and m["accuracy"] == 0.9 and m["verdict"] == "VALID"
    (p,) = again.provenance(run_id)
    assert p["git_sha"] == "abc" and p["git_dirty"] is True and p["packages"] == {"torch": "2.13.0"}
    assert again.latest_run("exp")["run_id"] == run_id


def test_exception_mid_transaction_writes_nothing(tmp_path):
    store = Store(str(tmp_path / "r.sqlite"))
    run_id = store.create_run("exp", {})
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.add_stage(run_id, "v1", "compress", output={"a": 1})
            tx.add_measurement(run_id, "v1", subject="artifact", device="local", runtime="onnxruntime", accuracy=0.5)
            raise RuntimeError("crash between two writes")
    assert store.stage_results(run_id) == [] and store.measurements(run_id) == []


def test_killed_process_mid_transaction_leaves_no_row(tmp_path):
    db = tmp_path / "r.sqlite"
    store = Store(str(db))
    run_id = store.create_run("exp", {})
    code = textwrap.dedent(f"""
        import os
        from harness.results.store import Store
        s = Store({str(db)!r})
        with s.transaction() as tx:
            tx.add_stage({run_id!r}, "v1", "compress", output={{"a": 1}})
            tx.conn.exec_driver_sql("SELECT 1")
            os._exit(9)   # the process dies before commit: no cleanup, no rollback code runs
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 9, out.stderr
    assert Store(str(db)).stage_results(run_id) == []
    with Store(str(db)).transaction() as tx:  # and the database is not locked or corrupt afterwards
        tx.add_stage(run_id, "v1", "compress", output={"a": 2})
    assert [s["output"] for s in Store(str(db)).stage_results(run_id)] == [{"a": 2}]


def test_sqlalchemy_url_is_accepted(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.sqlite'}"
    store = Store(url)
    assert store.url == url
    run_id = store.create_run("exp", {})
    assert Store(url).run(run_id)["name"] == "exp"
    assert "runs" in sa.inspect(store.engine).get_table_names()


def test_processes_opening_a_new_database_at_once(tmp_path):
    """A driver and a reader (or two drivers) creating the schema at the same moment both succeed."""
    code = textwrap.dedent("""
        import sys, time
        from harness.results.store import Store
        t = float(sys.argv[2])
        while time.time() < t:
            pass
        Store(sys.argv[1]).runs()
    """)
    for i in range(6):
        db = tmp_path / f"db{i}.sqlite"
        start = f"{__import__('time').time() + 3:.3f}"  # after every process has imported sqlalchemy
        procs = [subprocess.Popen([sys.executable, "-c", code, str(db), start], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        errs = [p.communicate(timeout=60)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), "\n".join(errs)


def test_display_url_masks_passwords_and_leaves_paths():
    from harness.results.store import display_url, public_config

    assert display_url("postgresql://u:s3cr%40t@db.example:5432/eib") == "postgresql://u:***@db.example:5432/eib"
    assert display_url("results/eib.sqlite") == "results/eib.sqlite"
    assert "s3cr" not in display_url("post gres://u:s3cr@t@x")  # unparseable: scheme only
    cfg = {"name": "x", "results": {"database": "postgresql://u:pw@h/db", "reports_dir": "r"}}
    assert public_config(cfg)["results"] == {"database": "postgresql://u:***@h/db", "reports_dir": "r"}
    assert cfg["results"]["database"] == "postgresql://u:pw@h/db"  # the caller's copy is untouched
