"""The results database on a real PostgreSQL server (started here on loopback, stopped after)."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.results.store import Store

pytestmark = pytest.mark.integration  # real Ray nodes, a real database or full `eib run`s: not in make test-fast


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root needs the 'postgres' user and runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="eib-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        run(_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "eib")
        yield f"postgresql://postgres@127.0.0.1:{port}/eib"  # SQLAlchemy's default driver (psycopg 3), as the README documents
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_round_trip_and_rollback_on_postgres(postgres_url):
    store = Store(postgres_url)
    run_id = store.create_run("pg", {"a": 1})
    with store.transaction() as tx:
        tx.add_variant(run_id, "v1", "v", {"k": 1}, {})
        tx.add_measurement(run_id, "v1", subject="artifact", device="local", runtime="onnxruntime", accuracy=0.5,
                           samples_ms=[1.5, 2.5])
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.add_stage(run_id, "v1", "compress", output={"x": 1})
            raise RuntimeError("crash")
    again = Store(postgres_url)
    assert again.run(run_id)["config"] == {"a": 1}
    assert again.measurements(run_id)[0]["samples"] == [1.5, 2.5]
    assert again.stage_results(run_id) == []


def test_password_in_the_url_is_never_shown_or_stored(postgres_url):
    from harness.results.store import public_config

    canary = "c@n:ary/p%w"
    from urllib.parse import quote

    url = postgres_url.replace("postgres@", f"postgres:{quote(canary, safe='')}@")  # trust auth: the password is accepted, unused
    store = Store(url)
    assert "***" in store.url and quote(canary, safe="") not in store.url and canary not in store.url
    run_id = store.create_run("pg", public_config({"results": {"database": url}}))
    stored = store.run(run_id)["config"]["results"]["database"]
    assert "***" in stored and quote(canary, safe="") not in stored


CANARY_PW = "Pw@can:ary/9%x"  # URL-special characters on purpose
CANARY_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARYKEYTEXT0123456789\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.mark.slow
def test_no_canary_secret_reaches_the_database_the_output_or_the_reports(postgres_url, tiny_bert, task_files, tmp_path):
    from urllib.parse import quote

    from tests.test_pipeline import edit_config, eib, write_config

    url = postgres_url.replace("postgres@", f"postgres:{quote(CANARY_PW, safe='')}@")
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n  local: {transport: local, workdir: " + str(tmp_path / "work") + "}\n"
                   "  pi: {transport: ssh, host: 127.0.0.1, port: 1, user: pi, key_env: EIB_CANARY_KEY, connect_timeout_s: 2}\n")
    cfg = write_config(tmp_path, tiny_bert, task_files)
    edit_config(cfg, {"results.database": url, "inventory": str(inv)})
    env_key = {"EIB_CANARY_KEY": CANARY_KEY}
    outs = [eib("run", str(cfg), cwd=tmp_path, env=env_key),
            eib("devices", "check", "--inventory", str(inv), cwd=tmp_path, env=env_key)]
    assert outs[0].returncode == 0, outs[0].stdout[-2000:] + outs[0].stderr[-2000:]
    assert outs[1].returncode == 1 and "auth: key_env 'EIB_CANARY_KEY' holds key text" in outs[1].stdout  # a failing check
    dump = subprocess.run(["runuser", "-u", "postgres", "--", _bin("pg_dump"), "-h", "127.0.0.1", "-p",
                           url.rsplit(":", 1)[1].split("/")[0],
                           "-U", "postgres", "eib"], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0 and "CREATE TABLE" in dump.stdout, dump.stderr
    texts = {"pg_dump": dump.stdout, **{f"out{i}": o.stdout + o.stderr for i, o in enumerate(outs)}}
    for f in (tmp_path / "reports").rglob("*"):
        if f.is_file():
            texts[str(f)] = f.read_bytes().decode("utf-8", "replace")
    assert any("***" in t for t in texts.values())  # the masked URL was shown somewhere
    for name, text in texts.items():
        for needle in (CANARY_PW, quote(CANARY_PW, safe=""), "CANARYKEYTEXT"):
            assert needle not in text, f"canary {needle!r} in {name}"
