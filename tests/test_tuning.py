"""TVM tuning works on a fresh install: MetaSchedule tunes a tiny model with a few trials (it needs psutil and
xgboost, which apache-tvm does not declare; pyproject.toml does, and this test fails when either is missing)."""

import json

import pytest


@pytest.mark.slow
def test_metaschedule_tunes_a_tiny_model(tmp_path, tiny_artifact):
    from harness.measure.run import MeasureSettings, build_for

    art, _, _ = tiny_artifact
    st = MeasureSettings(seq_len=16, trials=8)
    rec = build_for(art, "x86-64", st, tmp_path / "cache")
    assert rec["tuned"] and rec["tasks"] >= 1 and rec["new_tasks"] >= 1, rec
    db = list((tmp_path / "cache" / "tuning" / "x86-64" / "s16").glob("database_tuning_record.json"))
    assert db and any(json.loads(line) for line in db[0].read_text().splitlines() if line.strip()), "no tuning record written"
    again = build_for(art, "x86-64", st, tmp_path / "cache")
    assert again["cache_hit"] and again["lib_sha256"] == rec["lib_sha256"]
