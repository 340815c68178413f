"""bench/frontier_report: per budget the shape chosen on the first seed's selection accuracy among those that fit,
the best INT8 shape beside it, their means over seeds, a McNemar test on pooled predictions, and verdicts that say
when they cannot judge."""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.frontier_report import markdown, summarize  # noqa: E402

LABELS = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0]


def _row(name, bits, seed, size, sel, right):
    preds = [y if i < right else 1 - y for i, y in enumerate(LABELS)]
    return {"candidate": name, "bits": bits, "seed": seed, "size_bytes": size, "selection_accuracy": sel,
            "dev_accuracy": right / len(LABELS), "dev_ci95": [0.0, 1.0], "predictions": {"dev": preds}}


def test_the_chosen_shape_fits_and_wins_on_selection_and_int8_stands_beside_it():
    rows = [_row("2x256-int8", 8, 0, 1_960_000, 0.84, 8), _row("4x256-int4", 4, 0, 1_940_000, 0.86, 9),
            _row("6x256-int4", 4, 0, 2_500_000, 0.99, 10), _row("2x256-int4", 4, 0, 1_370_000, 0.80, 7)]
    s = summarize(rows, [1_500_000, 2_000_000], {"dev": LABELS})
    assert s["2000000"]["chosen"] == "4x256-int4" and s["2000000"]["best_int8"] == "2x256-int8"  # 6x256 does not fit
    assert s["2000000"]["train_every_seed"] == ["4x256-int4", "2x256-int8"]
    assert s["1500000"]["chosen"] == "2x256-int4" and s["1500000"]["best_int8"] is None
    assert s["2000000"]["verdicts"]["accuracy"] == "not judged (one seed)"
    rows += [_row("4x256-int4", 4, 1, 1_940_000, 0.85, 10), _row("2x256-int8", 8, 1, 1_960_000, 0.83, 8)]
    s = summarize(rows, [2_000_000], {"dev": LABELS})["2000000"]
    assert s["chosen_dev_mean"] == pytest.approx(0.95) and s["gain_points"] == pytest.approx(15.0)
    m = s["mcnemar_int4_vs_int8"]
    assert m["seeds"] == [0, 1] and (m["a_only"], m["b_only"]) == (3, 0)  # pooled over both seeds' 20 predictions
    assert s["verdicts"]["accuracy"] == "met: 0.9500 against 0.88" and s["verdicts"]["int4_gain"] == "met: +15.00 points"


def test_when_int8_wins_the_best_int4_shape_still_trains_every_seed_and_its_gain_is_judged():
    rows = [_row("2x256-int8", 8, 0, 1_960_000, 0.88, 9), _row("4x256-int4", 4, 0, 1_940_000, 0.86, 8),
            _row("3x256-int4", 4, 0, 1_950_000, 0.84, 8)]
    s = summarize(rows, [2_000_000], {"dev": LABELS})["2000000"]
    assert (s["chosen"], s["best_int8"], s["best_int4"]) == ("2x256-int8", "2x256-int8", "4x256-int4")
    assert s["train_every_seed"] == ["2x256-int8", "4x256-int4"]
    assert s["verdicts"]["int4_gain"] == "not judged (one seed)"
    rows += [_row("2x256-int8", 8, 1, 1_960_000, 0.87, 9), _row("4x256-int4", 4, 1, 1_940_000, 0.85, 9)]
    s = summarize(rows, [2_000_000], {"dev": LABELS})["2000000"]
    assert s["gain_points"] == pytest.approx(-5.0) and s["verdicts"]["int4_gain"] == "missed: -5.00 points"
    assert s["verdicts"]["accuracy"] == "met: 0.9000 against 0.88" and s["mcnemar_int4_vs_int8"]["seeds"] == [0, 1]
    only8 = summarize(rows[:1], [2_000_000], {"dev": LABELS})["2000000"]
    assert only8["verdicts"]["int4_gain"] == "not judged (no INT4 or no INT8 shape fits)"


def test_a_latency_ratio_is_judged_only_with_both_timed_and_the_table_names_every_row():
    rows = [_row("2x256-int8", 8, 0, 1_960_000, 0.84, 8), _row("4x256-int4", 4, 0, 1_940_000, 0.86, 9)]
    assert "p50_ratio" not in summarize(rows, [2_000_000], {"dev": LABELS})["2000000"]["verdicts"]
    rows[0]["latency"] = {"onnxruntime": {"p50_ms": 0.6}, "tvm": {"p50_ms": 2.0}}
    rows[1]["latency"] = {"onnxruntime": {"p50_ms": 0.9}, "tvm": None}
    s = summarize(rows, [2_000_000], {"dev": LABELS})
    assert s["2000000"]["verdicts"]["p50_ratio"] == "missed: 1.50x the INT8 artifact (at most 1.2)"
    doc = {"command": "python bench/frontier.py", "complete": False, "rung": "+mixed", "transfer": {"rows": 5},
           "teachers": {"t": 0.9}, "rows": rows, "summary": s, "budgets": [2_000_000],
           "candidates": {"2x256-int8": {"size_bytes": 1_960_000, "fits": True}}}
    md = markdown(doc, Path("frontier.png"))
    assert "(in progress)" in md and "| 4x256-int4 | 4 | 0 | 1,940,000 |" in md and "| 0.900 | - |" in md


def _rungs(*names):
    import argparse

    from bench.ladder import RECIPE, ladder

    return {r["variant"]: r for r in ladder(argparse.Namespace(**RECIPE, rungs=list(names)))}


def test_the_int4_rung_of_the_ladder_is_the_frontiers_4x256_int4_candidate_on_the_mixed_recipe():
    """One training serves both benchmarks only if every compress argument agrees: shape, vocabulary, bits and the
    +mixed rung's phases, augmentation, targets, transfer sources and fold."""
    from bench.frontier import CANDIDATES
    from bench.ladder import STUDENT

    r = _rungs("+mixed", "+int4")
    shape, vocab, bits = CANDIDATES["4x256-f384-int4"]
    assert {**STUDENT, **r["+int4"]["student"]} == {**STUDENT, **shape}
    assert (r["+int4"]["vocab"], r["+int4"]["bits"]) == (vocab, bits)
    for k in ("phases", "augment", "targets", "transfer", "fold", "vocab"):
        assert r["+int4"][k] == r["+mixed"][k], k
    assert "student" not in r["+mixed"] and CANDIDATES["2x256-int8"][0] == {k: STUDENT[k] for k in ("layers", "hidden", "ffn")}


def test_weights_recipe_int8_is_the_ladders_old_quantization_and_int4_learns_it_in_the_prediction_phase():
    from bench.ladder import weights_recipe
    from eibert.quant import QuantSettings

    phases = _rungs("+mixed")["+mixed"]["phases"]
    quant, same, qat = weights_recipe(phases, 8)
    assert quant == QuantSettings(granularity="per-channel", method="lsq", steps_per_block=200)  # keys of INT8 rungs kept
    assert same == phases and qat is None
    quant4, marked, qat4 = weights_recipe(phases, 4)
    assert quant4.bits == 4 and quant4.block is None
    assert [p.qat for p in marked] == [p.kind == "prediction" for p in phases] and qat4["fold"] is True


def test_the_ladder_table_gives_each_rung_its_gap_to_the_teacher_it_learns_from():
    from bench.quality_report import markdown as ladder_markdown

    base = {"lever": "l", "size_bytes": 1, "dev_ci95": [0.0, 1.0], "selection_accuracy": 0.8, "wall_s": 1.0,
            "predictions": {}}
    rows = [{**base, "variant": "mpnet teacher", "stage": "teacher", "seed": 0, "dev_accuracy": 0.9369,
             "teacher_dev_accuracy": 0.9369},
            {**base, "variant": "+mixed", "stage": "int8-artifact", "seed": 0, "dev_accuracy": 0.8670,
             "teacher_dev_accuracy": 0.9369}]
    md = ladder_markdown(rows, [], "python bench/quality.py", {"removed_rows": 0, "train_rows_after": 0}, "h")
    assert "| 0.8000 | - |" in md  # the teacher row has no gap
    assert "| 0.8000 | 7.0 |" in md


def test_the_ladder_table_names_the_command_of_each_row_kept_from_an_earlier_run():
    from bench.quality_report import produced_by

    base = {"stage": "int8-artifact"}
    rows = [{**base, "variant": "teacher", "stage": "teacher", "seed": 0},
            {**base, "variant": "+a", "seed": 0, "command": "python bench/quality.py --rungs +a"},
            {**base, "variant": "+b", "seed": 0, "command": "python bench/quality.py --rungs +b"}]
    assert produced_by(rows[:1], "last") == "Produced by `last`"
    assert produced_by([*rows[:1], {**rows[1], "command": "last"}], "last") == "Produced by `last`"
    said = produced_by(rows, "python bench/quality.py --rungs +c")
    assert "`python bench/quality.py --rungs +a`: +a 0" in said and "`python bench/quality.py --rungs +b`: +b 0" in said
    assert said.endswith("Last written by `python bench/quality.py --rungs +c`: the teachers' rows, no student row")


def test_shipping_names_the_rows_own_command_and_keeps_a_shipped_artifact_the_cache_has_lost(tmp_path):
    from bench.quality_report import ship
    from eibutil.errors import UserError

    art = tmp_path / "artifact" / "k1"
    art.mkdir(parents=True)
    (art / "model.onnx").write_bytes(b"onnx")
    (art / "manifest.json").write_text(json.dumps({"files": {}}))
    row = {"variant": "+a", "stage": "int8-artifact", "seed": 0, "size_bytes": 4, "selection_accuracy": 0.8,
           "dev_accuracy": 0.8, "key": "k1", "artifact_dir": str(art), "command": "python bench/quality.py --rungs +a"}
    dest = tmp_path / "ship"
    ship([row], dest, "python bench/quality.py --rungs +later", "c0")
    prov = json.loads((dest / "manifest.json").read_text())["provenance"]
    assert prov["command"] == "python bench/quality.py --rungs +a" and prov["cache_key"] == "k1"
    assert (dest / "model.onnx").read_bytes() == b"onnx"

    shutil.rmtree(art)  # the cache lost it: the shipped copy is that artifact, so it stands and the rows say so
    rows = [{**row, "headline": False}]
    ship(rows, dest, "python bench/quality.py --rungs +later", "c1")
    assert rows[0]["headline"] and json.loads((dest / "manifest.json").read_text())["provenance"]["commit"] == "c0"
    with pytest.raises(UserError, match=r"k2: the headline's artifact \(\+b seed 0\) is not in the cache"):
        ship([{**row, "variant": "+b", "key": "k2", "artifact_dir": str(tmp_path / "artifact" / "k2")}], dest, "x")


@pytest.mark.parametrize("script", ["quality", "frontier", "label_targets"])
def test_a_bench_script_given_a_missing_data_folder_says_so_in_one_line_and_exits_2(script, tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    extra = ["--teacher", str(tmp_path)] if script == "label_targets" else ["--out", str(tmp_path / "o.json")]
    p = subprocess.run([sys.executable, str(root / f"bench/{script}.py"), "--data", str(tmp_path / "none"), *extra],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == f"bench/{script}.py: error: {tmp_path / 'none' / 'train.tsv'}: file not found"


def test_a_row_stored_under_its_exact_key_is_taken_not_trained_and_timed_from_a_folder_of_the_same_bytes(tiny, tmp_path,
                                                                                                        monkeypatch):
    """A machine whose cache lost a student takes its row from a results file that holds the artifact's key (computed
    untrained), and finds its files by sha256 elsewhere (the shipped model); another seed is not taken."""
    from bench import frontier_rows as fr
    from eibutil.cache import Cache

    monkeypatch.setitem(fr.CANDIDATES, "tiny-int8", ({"layers": 1, "hidden": 16, "heads": 1, "ffn": 32, "embedding_size": 8},
                                                     400, 8))
    monkeypatch.setattr(fr, "STUDENT", {"integrate": True})
    ctx = {"tdir": tiny["teacher"], "data": tiny["data"], "cache_dir": str(tmp_path / "c"), "on_step": None,
           "rung": {"phases": (), "augment": None}, "targets": None, "transfer": []}
    monkeypatch.setattr(fr, "compress_args", lambda n, s, c, _f=fr.compress_args: {
        **_f(n, s, c), "distill": replace(_f(n, s, c)["distill"], max_steps=4, batch_size=16)})
    row = fr.train("tiny-int8", 0, ctx)
    (tmp_path / "results.json").write_text(json.dumps({"rows": [row]}))
    shipped = tmp_path / "shipped"
    shutil.copytree(row["artifact_dir"], shipped)
    cache = Cache(ctx["cache_dir"])
    for area in ("student", "artifact", "checkpoints"):  # the cache lost what training made
        shutil.rmtree(cache.area(area))
    monkeypatch.setattr(fr, "train", lambda *a: pytest.fail("trained again"))
    stored = fr.stored_rows([tmp_path / "missing.json", tmp_path / "results.json"])

    got = fr.reuse("tiny-int8", 0, ctx, stored, [tmp_path / "elsewhere", shipped])
    assert got["key"] == row["key"] and got["predictions"] == row["predictions"] and got["stored_in"] == "results.json"
    assert got["dev_accuracy"] == row["dev_accuracy"] and got["artifact_dir"] == str(shipped)
    assert fr.reuse("tiny-int8", 0, ctx, stored, [])["artifact_dir"] is None  # cannot be timed: the caller trains it
    assert fr.reuse("tiny-int8", 1, ctx, stored, [shipped]) is None
    assert fr.reuse("tiny-int8", 0, ctx, stored, [], own=tmp_path / "results.json")["stored_in"] is None  # a resumed run
