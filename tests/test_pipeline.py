"""`eib run` end to end on tiny data: rows in the database, a report, a cached second run, and a
failed stage stored as a row with its error instead of a crash."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.store import Store

pytestmark = pytest.mark.integration  # real Ray nodes, a real database or full `eib run`s: not in make test-fast

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path, model, task_files) -> Path:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"""
name: tiny
task: {{source: files, train_file: {task_files['train']}, dev_file: {task_files['dev']}, max_seq_len: 32}}
teacher: {{model: {model}, max_steps: 3, batch_size: 16, learning_rate: 1.0e-3}}
compress:
  student: {{layers: 1, hidden: 16, heads: 1, ffn: 32, embedding_size: 8}}
  vocab: {{size: 400, importance_rows: 64}}
  distill: {{mode: cross, max_steps: 3, batch_size: 16}}
  quant: {{granularity: per-channel, steps_per_block: 10, calib_rows: 32}}
sweep: {{grid: {{compress.vocab.size: [300, 400]}}}}
inventory: {ROOT / 'inventory.yaml'}
measure: {{seq_len: 32, rows: 8, warmup: 1, min_count: 5, min_duration_s: 0.1}}
results: {{database: db.sqlite, reports_dir: reports}}
cache_dir: cache
""")
    return cfg


def edit_config(path: Path, changes: dict | None = None, add: dict | None = None) -> Path:
    """Edit a YAML config by its keys, never by its text: each dotted key of `changes` must already be there (a
    template that drifted fails here instead of the edit silently doing nothing); each of `add` must not be."""
    import yaml

    data = yaml.safe_load(path.read_text())
    for dotted, value in {**(changes or {}), **(add or {})}.items():
        *parents, last = dotted.split(".")
        node = data
        for k in parents:
            assert isinstance(node, dict) and k in node, f"{path}: no {dotted!r} to edit"
            node = node[k]
        present = isinstance(node, dict) and last in node
        assert present == (dotted in (changes or {})), f"{path}: {dotted!r} is {'already' if present else 'not'} there"
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def eib(*args, cwd, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env} if env else None)


def test_run_stores_teacher_accuracy_and_writes_report(tiny_bert, task_files, tmp_path):
    cfg = write_config(tmp_path, tiny_bert, task_files)
    out = eib("run", str(cfg), "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    store = Store(str(tmp_path / "db.sqlite"))
    (run,) = store.runs()
    assert run["status"] == "done"
    stages = {s["stage"]: s for s in store.stage_results(run["run_id"])}
    assert stages["teacher"]["status"] == "ok" and stages["teacher"]["error"] is None
    from harness.stages.registry import REGISTRY

    assert set(stages) == set(REGISTRY) - {"build"}  # onnxruntime only: no TVM build
    for row in store.stage_results(run["run_id"]):  # each stored output is its stage's record, exactly
        rec = REGISTRY[row["stage"]].output.from_json(row["output"])
        assert rec.to_json() == row["output"] and rec.extra["node_key"] == row["node_key"]
    ms = store.measurements(run["run_id"])
    (m,) = [x for x in ms if x["subject"] == "teacher" and x["device"] == "host"]
    assert m["n"] == 32 and 0 <= m["accuracy"] <= 1
    assert m["accuracy"] == stages["teacher"]["output"]["dev_accuracy"]
    arts = [x for x in ms if x["subject"] == "artifact" and x["device"] == "host"]
    assert len(arts) == 2 and all(a["runtime"] == "onnxruntime" and a["size_bytes"] > 0 and a["n"] == 32 for a in arts)
    compress_rows = [s for s in store.stage_results(run["run_id"]) if s["stage"] == "artifact"]
    assert [c["status"] for c in compress_rows] == ["ok", "ok"]
    assert {a["size_bytes"] for a in arts} == {c["output"]["size_bytes"] for c in compress_rows}
    on_device = [x for x in ms if x["device"] == "local" and x["subject"] == "artifact"]
    (ref,) = [x for x in ms if x["device"] == "local" and x["subject"] == "teacher"]  # the teacher on the same device, once
    assert ref["variant_id"] == "" and ref["p50_ms"] > 0 and ref["metrics"]["null"]["p50_ms"] > 0
    for x in on_device + [ref]:  # model memory apart from the process: baseline <= loaded <= peak
        mem = x["metrics"]["memory"]
        assert 0 < mem["baseline_bytes"] <= mem["loaded_bytes"] <= mem["peak_bytes"] == x["peak_rss_bytes"], mem
        assert mem["model_peak_bytes"] == mem["peak_bytes"] - mem["baseline_bytes"] and mem["model_resident_bytes"] >= 0
    assert all(x["metrics"]["memory"]["weight_bytes"] > 0 for x in on_device)
    assert len(on_device) == 2 and all(x["n"] == 8 and x["p50_ms"] > 0 and x["verdict"] in ("VALID", "INVALID")
                                       for x in on_device)
    prov = {p["variant_id"]: p for p in store.provenance(run["run_id"])}
    assert prov[""]["packages"]["torch"] == "2.13.0+cpu"
    assert prov[""]["data"][str(task_files["dev"])] == stages["teacher"]["output"]["data_checksums"]["dev"]
    assert all(prov[v["variant_id"]]["extra"]["artifact_manifest_sha256"] for v in store.variants(run["run_id"]))
    assert len(store.variants(run["run_id"])) == 2
    summary = (tmp_path / "reports" / run["run_id"] / "summary.md").read_text()
    assert "(teacher)" in summary and f"{100 * m['accuracy']:.2f}%" in summary

    again = eib("run", str(cfg), "--quiet", cwd=tmp_path)
    assert again.returncode == 0
    second = store.latest_run("tiny")["run_id"]
    assert {s["status"] for s in store.stage_results(second)} == {"cached"}
    key = lambda x: (x["device"], x["variant_id"], x["accuracy"], x["size_bytes"], x["p50_ms"])
    assert sorted(map(key, store.measurements(second))) == sorted(map(key, ms))


def test_failed_stage_becomes_a_row_with_its_error(task_files, tmp_path):
    # a hub id that is not there (offline): nothing in the files tells, so the teacher stage itself fails
    cfg = write_config(tmp_path, "eib-test/no-such-model", task_files)
    out = eib("run", str(cfg), "--quiet", cwd=tmp_path)
    assert out.returncode == 1
    store = Store(str(tmp_path / "db.sqlite"))
    run = store.latest_run()
    assert run["status"] == "failed"
    teacher = [s for s in store.stage_results(run["run_id"]) if s["stage"] == "teacher"][0]
    assert teacher["status"] == "failed" and teacher["error_kind"] == "variant" and "could not be loaded" in teacher["error"]
    (tb,) = (tmp_path / "reports" / run["run_id"] / "errors").glob("shared-teacher-*.txt")
    assert tb.read_text().startswith("Traceback")
    skipped = [s for s in store.stage_results(run["run_id"]) if s["stage"] != "teacher"]
    assert {s["stage"] for s in skipped} == {"importance", "vocab", "student", "artifact", "measure"}
    assert {s["status"] for s in skipped} == {"skipped"} and "teacher" in skipped[0]["error"]
    assert len([s for s in skipped if s["stage"] == "artifact"]) == 2


def test_mistakes_the_files_show_are_caught_before_a_run_row(tiny_bert, task_files, tmp_path):
    cases = []
    one_class = tmp_path / "one.tsv"
    one_class.write_text("sentence\tlabel\n" + "".join(f"row {i}\t1\n" for i in range(8)))
    empty = tmp_path / "empty.tsv"
    empty.write_text("sentence\tlabel\n")
    cfg = write_config(tmp_path, tiny_bert, task_files)
    base = cfg.read_text()
    cases.append((base.replace(f"model: {tiny_bert}", f"model: {tmp_path / 'no-such-teacher'}"), "teacher.model",
                  "no such model folder"))
    cases.append((base.replace("size: 400", "size: 40000").replace("[300, 400]", "[300, 40000]"), "compress.vocab.size",
                  "larger than the teacher's vocabulary (30522 tokens)"))
    cases.append((base.replace(str(task_files["train"]), str(one_class)), "task", "one class only"))
    cases.append((base.replace(str(task_files["train"]), str(empty)), "empty.tsv", "has no rows"))
    cases.append((base.replace("text_fields", "x").replace("max_seq_len: 32}", "max_seq_len: 32, text_fields: [review]}"), "",
                  "no column 'review'"))
    for text, key, message in cases:
        cfg.write_text(text)
        out = eib("run", str(cfg), "--quiet", cwd=tmp_path)
        err = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(err) == 1, (message, out.stderr[-800:])
        assert message in err[0] and (not key or key in err[0]), (message, out.stderr[-800:])
        db = tmp_path / "db.sqlite"
        assert not db.exists() or Store(str(db)).runs() == []


def test_rerun_failed_reruns_only_the_failures(tiny_bert, task_files, tmp_path):
    """Every measurement fails on a device (an injected fault), the rest succeeds; `--resume` runs nothing
    again, `--rerun-failed` (once the device is mended) runs the failed measurements only."""
    inv = tmp_path / "inventory.yaml"
    device = ("devices:\n  flaky:\n    transport: fake\n    arch: x86_64\n    target: x86-64-host\n    runtimes: [onnxruntime]\n"
              f"    workdir: {tmp_path / 'work'}\n    tags: [x86]\n")
    inv.write_text(device + "    faults: [{\"on\": run, error: failed, times: 1000}]\n")
    cfg = write_config(tmp_path, tiny_bert, task_files)
    edit_config(cfg, {"inventory": str(inv)}, add={"devices": ["flaky"]})
    first = eib("run", str(cfg), "--quiet", "--executor", "inline", cwd=tmp_path)
    store = Store(str(tmp_path / "db.sqlite"))
    run_id = store.latest_run()["run_id"]
    rows = store.stage_results(run_id)
    failed = {r["node_key"] for r in rows if r["status"] == "failed"}
    done = {r["node_key"] for r in rows if r["status"] in ("ok", "cached")}
    assert first.returncode == 1 and failed and {r["stage"] for r in rows if r["node_key"] in failed} == {"measure"}, first.stdout
    assert "injected failed at run" in first.stdout + first.stderr  # the reason, even with --quiet

    out = eib("run", str(cfg), "--quiet", "--executor", "inline", "--resume", run_id, cwd=tmp_path)
    assert out.returncode == 1 and len(store.stage_results(run_id)) == len(rows)  # failures stand, nothing ran

    inv.write_text(device)  # mended
    out = eib("run", str(cfg), "--quiet", "--executor", "inline", "--rerun-failed", run_id, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    new = store.stage_results(run_id)[len(rows):]
    assert sorted(r["node_key"] for r in new) == sorted(failed) and {r["status"] for r in new} == {"ok"}
    assert not {r["node_key"] for r in new} & done
    assert store.run(run_id)["status"] == "done"
    assert len([m for m in store.measurements(run_id) if m["device"] == "flaky"]) == len(failed)
