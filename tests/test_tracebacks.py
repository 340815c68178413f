"""Each input that once ended in a traceback is one line naming what is wrong, and exit 2 (issue: trust across machines)."""

import shutil
from pathlib import Path

import pytest

from harness.cli.commands import main

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys, want: str, forbidden: str = "") -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and want in err[0], err
    assert "Traceback" not in err[0] and (not forbidden or forbidden not in err[0])


@pytest.mark.parametrize("url, want", [("foo://x", "not a database URL SQLAlchemy can use"),
                                       ("mysql://u:secret@h/db", "driver is not installed"),
                                       ("sqlite://user:secret@/x.db", "Invalid SQLite URL")])
def test_database_urls_sqlalchemy_cannot_build(url, want, capsys):
    assert main(["runs", "--db", url]) == 2
    _one_line(capsys, want, forbidden="secret")


def test_a_reports_folder_that_is_a_file(tmp_path, capsys):
    from harness.results.store import Store

    store = Store(str(tmp_path / "db.sqlite"))
    run = store.create_run("t", {})
    store.finish_run(run, "done", {})
    (tmp_path / "reports").write_text("a file")
    assert main(["report", run, "--db", str(tmp_path / "db.sqlite"), "--reports-dir", str(tmp_path / "reports")]) == 2
    _one_line(capsys, "reports: a file, not a folder")
    shutil.copy(ROOT / "inventory.yaml", tmp_path / "inventory.yaml")
    (tmp_path / "c.yaml").write_text("name: t\ninventory: inventory.yaml\nresults: "
                                     "{database: db.sqlite, reports_dir: reports}\n")
    assert main(["history", str(tmp_path / "c.yaml")]) == 2
    _one_line(capsys, "reports: a file, not a folder")


def test_an_empty_results_database_and_no_cluster_at_auto(tmp_path, capsys):
    shutil.copy(ROOT / "inventory.yaml", tmp_path / "inventory.yaml")
    (tmp_path / "c.yaml").write_text("name: t\ninventory: inventory.yaml\nresults: {database: ''}\n")
    assert main(["run", str(tmp_path / "c.yaml"), "--quiet"]) == 2
    _one_line(capsys, "results.database: String should have at least 1 character")
    (tmp_path / "ok.yaml").write_text(f"name: t\ninventory: inventory.yaml\nresults: {{database: {tmp_path / 'db.sqlite'}}}\n")
    assert main(["run", str(tmp_path / "ok.yaml"), "--quiet", "--address", "auto"]) == 2
    _one_line(capsys, "--address auto: no Ray cluster to join")


def test_a_tokenizer_that_is_not_json_and_data_files_that_are_empty_or_broken(tmp_path, capsys, tiny_bert):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    (model / "tokenizer.json").write_text("{not json")
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\na fine film\t1\n")
    assert main(["evaluate", str(model), "--data", str(dev)]) == 2
    _one_line(capsys, "tokenizer could not be loaded")
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["evaluate", "bundled", "--data", str(tmp_path / "empty.jsonl")]) == 2
    _one_line(capsys, "empty.jsonl: has no rows")
    (tmp_path / "bad.jsonl").write_text('{"sentence": "x"\n')
    assert main(["evaluate", "bundled", "--data", str(tmp_path / "bad.jsonl")]) == 2
    _one_line(capsys, "bad.jsonl: cannot be read as jsonl: JSON parse error")


def test_seq_len_beyond_the_artifacts_positions_in_eib_measure(tmp_path, capsys):
    assert main(["measure", str(ROOT / "models/sst2-2mb"), "--device", "local", "--inventory", str(ROOT / "inventory.yaml"),
                 "--seq-len", "128", "--cache-dir", str(tmp_path / "c"), "--db", str(tmp_path / "db.sqlite")]) == 2
    _one_line(capsys, "seq_len 128 exceeds the 64 positions of")


def test_an_auth_failure_in_eib_measure_is_the_users_mistake(tmp_path, capsys):
    import yaml

    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"devices": {"keyless": {"transport": "fake", "workdir": str(tmp_path / "w"),
                                                           "runtimes": ["onnxruntime"],
                                                            "faults": [{"on": "probe", "error": "auth", "times": 9}]}}}))
    assert main(["measure", str(ROOT / "models/sst2-2mb"), "--device", "keyless", "--inventory", str(inv), "--rows", "4",
                 "--cache-dir", str(tmp_path / "c"), "--db", str(tmp_path / "db.sqlite")]) == 2
    _one_line(capsys, "keyless: auth: injected auth at probe")
