"""Reports: HTML (opened in headless Chromium: no console errors, the plots present), Markdown and CSV;
sign-off numbers equal to the database's; budgets parsed with units; nightly runs that raise no false
alarm on unchanged code and flag a planted slowdown (the device's CPUs taken by other processes)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.report.summary import parse_budget, signoff
from harness.results.store import Store
from tests.test_pipeline import edit_config, eib, write_config

SLOW_ORT = """
import builtins, time
_import = builtins.__import__
def _slow_import(name, *args, **kwargs):
    module = _import(name, *args, **kwargs)
    if name == "onnxruntime" and not getattr(module, "_planted", False):
        run = module.InferenceSession.run
        def slow_run(self, *a, **k):
            t = time.perf_counter()
            while time.perf_counter() - t < 0.002:
                pass
            return run(self, *a, **k)
        module.InferenceSession.run = slow_run
        module._planted = True
    return module
builtins.__import__ = _slow_import
"""

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _config(tmp_path, tiny_bert, task_files, measure: str) -> Path:
    cfg = write_config(tmp_path, tiny_bert, task_files)
    return edit_config(cfg, {"measure": yaml.safe_load(measure)["measure"]})


@pytest.fixture(scope="module")
def run(tiny_bert, tmp_path_factory):
    from tests.conftest import tiny_sentences

    tmp = tmp_path_factory.mktemp("report")
    rows = tiny_sentences(96)
    files = {}
    for name, part in (("train", rows[:64]), ("dev", rows[64:])):
        files[name] = tmp / f"{name}.tsv"
        files[name].write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in part))
    cfg = _config(tmp, tiny_bert, files, "measure: {seq_len: 32, rows: 16, warmup: 5, min_count: 200, min_duration_s: 1.0}")
    inv = tmp / "inventory.yaml"
    inv.write_text("devices:\n  local:\n    transport: local\n    python: python3\n    target: x86-64-host\n    threads: 1\n "
                   "   workdir: " + str(tmp / "work") + "\n")
    edit_config(cfg, {"inventory": str(inv)})
    out = eib("run", str(cfg), "--quiet", "--executor", "inline", cwd=tmp)
    assert out.returncode == 0, out.stdout + out.stderr
    store = Store(str(tmp / "db.sqlite"))
    return {"dir": tmp, "cfg": cfg, "store": store, "inventory": inv, "run_id": store.latest_run()["run_id"], "files": files}


@pytest.mark.integration
def test_report_files_and_csv_rows(run):
    d = run["dir"] / "reports" / run["run_id"]
    assert {p.name for p in d.iterdir()} >= {"index.html", "summary.md", "results.csv"}
    lines = (d / "results.csv").read_text().splitlines()
    assert lines[0].startswith("run_id,variant_id,subject,variant") and len(lines) == 1 + 3  # teacher + 2 variants, 1 device
    assert "git_sha" in lines[0] and "artifact_manifest_sha256" in lines[0]
    html = (d / "index.html").read_text()
    import re

    # self-contained: nothing fetched (the SVGs' href="#..." point inside the page)
    assert "<script" not in html and "<link" not in html and not re.search(r"""(src|href)\s*=\s*["'](?!#)""", html)
    assert sorted(p.name
                  for p in (d / "figures").iterdir()) == sorted(re.findall(r"\(figures/([^)]+\.png)\)",
                                                                           (d / "summary.md").read_text()))


def _chromium(url: str, *extra: str, timeout: int = 90) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--no-first-run", "--disable-dev-shm-usage", *extra, url], capture_output=True, text=True,
                          timeout=timeout)


def _console_errors(p: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                    reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.integration
def test_report_renders_in_headless_chromium(run, tmp_path):
    assert CHROMIUM, "CI=true: chromium must be installed"
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('planted')</script></body></html>")
    assert _console_errors(_chromium(bad.as_uri(), "--dump-dom")), "the console check must see a planted error"
    page = (run["dir"] / "reports" / run["run_id"] / "index.html").as_uri()
    p = _chromium(page, "--dump-dom")
    assert p.returncode == 0 and _console_errors(p) == []
    dom = p.stdout
    import re

    figs = dict(re.findall(r'<figure id="fig-[^"]*" data-figure="([^"]+)">(.*?)</figure>', dom, flags=re.S))
    expected = {"pareto-local-onnxruntime": ["accuracy against size, latency and memory", "deployed size (log scale)",
                                             "p90 latency (ms)", "model memory (peak above the runtime)", "dev accuracy"],
                "latency-local-onnxruntime": ["latency distribution", "single-inference latency (ms, log scale)",
                                              "share of inferences at or below"],
                "across-devices": ["The same variants across devices", "variant", "p50 latency (ms; whisker to p90)"]}
    assert set(figs) == set(expected), sorted(figs)
    for fid, texts in expected.items():
        drawn = re.findall(r"<text[^>]*>([^<]*)</text>", figs[fid])  # title and axis labels are text in the SVG, not paths
        for t in texts:
            assert any(t in x for x in drawn), (fid, t, drawn[:20])
    assert "teacher" in " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", figs["pareto-local-onnxruntime"]))  # the reference mark
    assert "accuracy on device [95% CI]" in dom and re.search(r"\d+\.\d\d% \[\d+\.\d, \d+\.\d\]", dom)  # intervals
    floor = re.search(r'<section id="floor">(.*?)</section>', dom, flags=re.S)
    assert floor and "Harness floor (null model)" in floor.group(1)
    assert re.search(r"<td>local</td><td>0\.\d{4}</td>", floor.group(1))
    assert "Headline" in dom and "Time per stage" in dom and "Provenance" in dom
    shot = tmp_path / "shot.png"
    p = _chromium(page, f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars")
    assert shot.exists() and shot.stat().st_size > 10_000, p.stderr[-500:]


class _Tables(__import__("html.parser").parser.HTMLParser):
    """Every <table> of a page: [headers, rows of cells]."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(self._cell.replace("|", "/"))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _markdown_tables(text: str) -> list[list[list[str]]]:
    out, block = [], None
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if block is None:
                block = []
            if not line.startswith("|---"):
                block.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif block is not None:
            out.append(block)
            block = None
    return out


@pytest.mark.integration
def test_html_and_markdown_tables_carry_the_same_columns_and_numbers(run):
    d = run["dir"] / "reports" / run["run_id"]
    parser = _Tables()
    parser.feed((d / "index.html").read_text())
    md = _markdown_tables((d / "summary.md").read_text())
    assert len(parser.tables) == len(md) >= 6
    for h, m in zip(parser.tables, md):
        assert h == m
    headers = [t[0] for t in md]
    assert ["device", "null p50 ms", "null p90 ms", "measurements", "fastest model p50 ms", "floor share of fastest"] in headers


def test_accuracy_interval_and_paired_test_against_hand_computed_values():
    from eibutil.stats import mcnemar_bits, mcnemar_exact, paired_diff_ci, wilson

    # Wilson, 95%: 80 of 100 right. centre = (0.8 + z^2/200) / (1 + z^2/100),
    # half-width = z sqrt(0.0016 + z^2/40000) / (1 + z^2/100)
    lo, hi = wilson(0.8, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.7112, 0.8666)
    lo, hi = wilson(0.8486, 872)  # the headline artifact: +/- ~2.4 points
    assert (round(lo, 3), round(hi, 3)) == (0.823, 0.871)
    # Two variants that differ on one row only: one discordant pair, p = 2 * C(1,0) / 2^1 = 1.0, within noise.
    a, b = "1" * 500 + "0" * 372, "1" * 501 + "0" * 371
    t = mcnemar_bits(a, b)
    assert (t["a_only"], t["b_only"], t["p_value"], t["within_noise"]) == (0, 1, 1.0, True)
    # 10 rows only A gets right, 1 only B: p = 2 * (C(11,0) + C(11,1)) / 2^11 = 24 / 2048
    t = mcnemar_exact([1] * 10 + [0] + [1] * 5, [0] * 10 + [1] + [1] * 5, [1] * 16)
    assert t["p_value"] == 24 / 2048 and not t["within_noise"]
    diff, lo, hi = paired_diff_ci("1" * 10 + "0" + "1" * 5, "0" * 10 + "1" + "1" * 5)
    # (10 - 1) / 16; var = ((10 + 1) / 16 - diff^2) / 16
    assert diff == 9 / 16 and abs((hi - lo) / 2 - 1.959964 * ((11 / 16 - (9 / 16) ** 2) / 16) ** 0.5) < 1e-12


def test_budget_parsing():
    assert parse_budget("size=2MB,memory=4MiB,latency_ms=300,accuracy=0.88") == {
        "size": 2_000_000, "memory": 4 * 2**20, "latency_ms": 300.0, "accuracy": 0.88}
    from eibutil import UserError

    for bad in ("speed=3", "size=2XB", "latency_ms=3MB", ""):
        with pytest.raises(UserError):
            parse_budget(bad)


@pytest.mark.integration
def test_signoff_numbers_equal_the_database(run):
    store, run_id = run["store"], run["run_id"]
    name = store.variants(run_id)[0]["name"]
    vid = store.variants(run_id)[0]["variant_id"]
    (m,) = [m for m in store.measurements(run_id) if m["variant_id"] == vid and m["device"] == "local"]
    budget = {"size": 10e6, "memory": 4e9, "latency_ms": 1000.0, "accuracy": 0.0}
    (s,) = signoff(store, run_id, name, budget)
    assert (s["size_bytes"], s["peak_rss_bytes"], s["p90_ms"],
            s["accuracy"]) == (m["size_bytes"], m["peak_rss_bytes"], m["p90_ms"], m["accuracy"])
    assert s["checks"]["size"]["margin"] == 10e6 - m["size_bytes"]
    assert s["verdict"] == ("PASS" if m["verdict"] == "VALID" else "FAIL")
    out = eib("report", run_id, "--db", str(run["dir"] / "db.sqlite"), "--reports-dir", str(run["dir"] / "reports"),
              "--deploy", name, "--budget", "size=1KB,accuracy=0.0", cwd=run["dir"])
    assert out.returncode == 1 and out.stdout.startswith("FAIL") and f"size {m['size_bytes']:.4g} vs 1000" in out.stdout
    out = eib("report", run_id, "--db", str(run["dir"] / "db.sqlite"), "--reports-dir", str(run["dir"] / "reports"),
              "--deploy", "no-such", "--budget", "size=1KB", cwd=run["dir"])
    assert out.returncode == 2 and "no on-device measurement" in out.stderr


def _nightly(run) -> subprocess.CompletedProcess:
    return eib("nightly", str(run["cfg"]), "--executor", "inline", "--quiet", cwd=run["dir"])


@pytest.mark.integration
def test_nightly_no_false_alarm_then_a_planted_slowdown_is_flagged(run):
    for i in range(3):
        out = _nightly(run)
        assert out.returncode == 0, f"false alarm on unchanged rerun {i + 1}:\n{out.stdout}{out.stderr}"
        assert not [ln for ln in out.stdout.splitlines() if ln.startswith("regression")]
        assert " 0 regression(s)" in out.stdout or "no earlier finished run" in out.stdout
        assert "compared" in out.stdout
    # The plant: the device's Python now carries a runtime that spends 2 ms more in every inference (an
    # onnxruntime slowed by a sitecustomize hook; 2 ms, well above the 0.25 ms absolute floor), the kind of change a
    # bad runtime upgrade makes.
    plant = run["dir"] / "plant"
    plant.mkdir(exist_ok=True)
    (plant / "sitecustomize.py").write_text(SLOW_ORT)
    wrapper = plant / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={plant} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    inv = run["inventory"]
    original = inv.read_text()
    inv.write_text(original.replace("python: python3", f"python: {wrapper}"))
    try:
        out = _nightly(run)
    finally:
        inv.write_text(original)
    assert out.returncode == 1, out.stdout + out.stderr
    import re

    flagged = [ln for ln in out.stdout.splitlines() if ln.startswith("regression")]
    assert flagged and int(re.search(r"(\d+) regression\(s\)", out.stdout).group(1)) == len(flagged)
    planted_run = re.search(r"nightly (\S+) against", out.stdout).group(1)

    # the history page of those runs: the planted run's point is flagged, in the table and on the figure
    hist = eib("history", str(run["cfg"]), cwd=run["dir"])
    assert hist.returncode == 0, hist.stderr
    assert re.search(r"\((\d+) variant x device x runtime row\(s\) compared", hist.stdout)
    page = Path(hist.stdout.split(" (")[0]).read_text()
    rows = re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", page.split('id="flagged"')[1].split("</section>")[0])
    assert rows and {r for r, _ in rows} == {planted_run} and all("<td>regression</td>" in cells for _, cells in rows)
    assert 'id="flagged-regression' in page  # the marker drawn on the device's figure
    runs_table = page.split('id="runs"')[1]
    assert runs_table.count("<tr><td>") == 5  # the fixture's run, three unchanged nightlies and the planted one


def test_nightly_thresholds_relative_and_absolute(monkeypatch):
    import harness.report.nightly as nightly

    def rows(p50s, shift=0.0):
        return [{"variant_id": v, "variant": v, "device": "d", "runtime": "onnxruntime", "p50_ms": p + shift, "emulated": False,
                 "samples": [p + shift + 0.001 * (i % 7) for i in range(200)], "accuracy": None, "n": 0} for v, p in p50s.items()]

    runs = {"base": rows({"tiny": 0.07, "big": 10.0}), "noisy": rows({"tiny": 0.13, "big": 10.2}),
            "slow": rows({"tiny": 0.07, "big": 10.0}, 2.0)}
    monkeypatch.setattr(nightly, "flat_rows", lambda store, run: runs[run])
    flags = {f["variant"]: f["flag"] for f in nightly.compare_runs(None, "noisy", ["base"])}
    assert flags == {"tiny": "ok", "big": "ok"}  # +86% but 0.06 ms; +2% under the 50% prior threshold
    flags = {f["variant"]: f["flag"] for f in nightly.compare_runs(None, "slow", ["base"])}
    assert flags == {"tiny": "regression", "big": "ok"}  # +2 ms: 2900% on tiny, 20% on big (under 50%)
    flags = {f["variant"]: f["flag"] for f in nightly.compare_runs(None, "slow", ["base", "noisy"])}
    # tiny: 0.07 vs 0.13 ms sets the noise of device d
    assert flags["big"] == "ok" and nightly.device_noise(None, ["base", "noisy"])["d"] > 0.4


def test_a_comparison_that_compares_nothing_is_refused(monkeypatch, capsys):
    """report --against a run of another config, and a nightly whose variants changed, compare 0 rows: exit 2, one line."""
    import argparse

    import harness.cli.reports as cr
    import harness.report.data as rd
    import harness.report.nightly as nightly

    rows = {"a": [{"variant_id": "v1", "device": "local", "runtime": "onnxruntime", "samples": [1.0]}],
            "b": [{"variant_id": "v2", "device": "local", "runtime": "onnxruntime", "samples": [1.0]}]}
    monkeypatch.setattr(nightly, "flat_rows", lambda store, run: rows[run])
    monkeypatch.setattr(rd, "flat_rows", lambda store, run: rows[run])

    class FakeStore:
        url = "sqlite:///x"

        def run(self, run_id):
            return {"run_id": run_id, "name": {"a": "quickstart", "b": "other"}[run_id]}

    monkeypatch.setattr(cr, "_store", lambda args: (FakeStore(), Path("/nonexistent")))
    args = argparse.Namespace(run="a", against="b", floor=0.05, min_change_ms=0.25, deploy=None, budget=None)
    from eibutil import UserError

    with pytest.raises(UserError, match=r"nothing compared: a and b share 0 variant x device x runtime rows .*different configs"):
        cr.cmd_report(args)


def test_a_nightly_with_nothing_to_compare_exits_2(monkeypatch, tmp_path, capsys):
    import argparse

    import harness.cli.reports as cr
    import harness.engine.pipeline as pipeline
    import harness.report.data as rd
    import harness.report.model  # noqa: F401  (imported before the patches: its report reads the real, empty, rows)
    import harness.report.nightly as nightly
    from eibutil import UserError

    (tmp_path / "inv.yaml").write_text("devices:\n  local: {transport: local}\n")
    (tmp_path / "c.yaml").write_text(f"name: nightly-t\ninventory: inv.yaml\nresults: {{database: {tmp_path / 'db.sqlite'}}}\n")
    store = Store(str(tmp_path / "db.sqlite"))
    earlier = store.create_run("nightly-t", {})
    store.finish_run(earlier, "done", {})
    rows = {earlier: [{"variant_id": "old", "device": "local", "runtime": "onnxruntime", "samples": [1.0]}]}

    def fake_run(cfg, path, raw, **kw):
        rid = store.create_run("nightly-t", {})
        rows[rid] = [{"variant_id": "new", "device": "local", "runtime": "onnxruntime", "samples": [1.0]}]
        store.finish_run(rid, "done", {})
        return rid

    monkeypatch.setattr(pipeline, "run_experiment", fake_run)
    monkeypatch.setattr(nightly, "flat_rows", lambda s, r: rows[r])
    monkeypatch.setattr(rd, "flat_rows", lambda s, r: rows[r])
    args = argparse.Namespace(config=str(tmp_path / "c.yaml"), baseline=None, last=5, floor=0.05, min_change_ms=0.25, quiet=True,
                              executor="inline", address=None)
    with pytest.raises(UserError, match="nothing compared: .* share 0 variant x device x runtime rows .*no variant id in common"):
        cr.cmd_nightly(args)
