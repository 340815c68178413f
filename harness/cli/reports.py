"""`eib report RUN` and `eib nightly CONFIG`.

    eib report RUN [--against RUN2] [--deploy VARIANT --budget size=2MB,memory=4MB,latency_ms=300,accuracy=0.88]
    eib nightly CONFIG [--baseline RUN] [--last 5] [--floor 0.05] [--min-change-ms 0.25]     # exit 1 on a confirmed regression
    eib history CONFIG [--last 20]                # reports/history/<name>/index.html: runs over time, flagged points
"""

import json
from pathlib import Path

from eibutil import UserError
from harness.cli.args import float_in, int_in
from harness.config.load import load_config_file
from harness.config.schema import DEFAULT_DATABASE, DEFAULT_REPORTS_DIR
from harness.report.summary import report_run

EXIT_SIGNOFF_FAIL = 1
EXIT_REGRESSION = 1


def _store(args):
    from harness.results.store import Store

    if args.config:
        cfg = load_config_file(args.config)[0]
        return Store(cfg.results.database, readonly=True), Path(cfg.results.reports_dir)
    return Store(args.db, readonly=True), Path(args.reports_dir)


def cmd_report(args) -> int:
    from harness.report.nightly import compare_runs
    from harness.report.summary import parse_budget, signoff, write_report

    store, reports = _store(args)
    if store.run(args.run) is None:
        raise UserError(f"no run {args.run!r} in {store.url} (see `eib runs`)")
    compare = None
    if args.against:
        if store.run(args.against) is None:
            raise UserError(f"--against: no run {args.against!r} in {store.url}")
        compare = compare_runs(store, args.run, [args.against], floor=args.floor, min_change_ms=args.min_change_ms)
        if not compare:
            raise UserError(nothing_compared(store, args.run, args.against))
        print(f"compared {len(compare)} variant x device x runtime row(s) of {args.run} with {args.against}")
    so = None
    if args.deploy and not args.budget:
        raise UserError("--deploy needs --budget: --deploy VARIANT --budget size=2MB,latency_ms=300,...")
    budget = parse_budget(args.budget) if args.budget else None  # alone, it picks the headline's best variant per device
    if args.deploy:
        so = signoff(store, args.run, args.deploy, budget)
    paths = write_report(store, args.run, reports, compare=compare, signoff_rows=so, budget=budget)
    for s in so or []:
        checks = "  ".join(f"{k} {c['measured']:.4g} vs {c['budget']:.4g} (margin {c['margin']:+.4g}"
                           f"{', ' + c['basis'] if c.get('basis') else ''})" if c["measured"] is not None
                           else f"{k} not measured" for k, c in s["checks"].items())
        print(f"{s['verdict']}  {s['device']:14s} {s['runtime']:12s} {checks}"
              + (f"  failed: {', '.join(s['failed'])}" if s["failed"] else ""))
    for c in compare or []:
        print(f"{c['flag']:12s} {c['variant'][:40]:40s} {c['device']:12s} {c['runtime']:12s} p50 {c['p50_ms']:.3f} vs "
              f"{c['base_p50_ms']:.3f} ms ({c['change']:+.1%}, 95% CI [{c['ci_low']:+.1%}, {c['ci_high']:+.1%}], threshold "
              f"±{c['threshold']:.1%})")
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return EXIT_SIGNOFF_FAIL if so and any(s["verdict"] == "FAIL" for s in so) else 0


def cmd_nightly(args) -> int:
    from harness.engine.pipeline import run_experiment
    from harness.report.nightly import compare_runs, regressions
    from harness.report.summary import write_report
    from harness.results.store import Store

    cfg, raw = load_config_file(args.config)
    cfg = cfg.model_copy(update={"measure": cfg.measure.model_copy(update={"reuse": False})})  # fresh measurements every night
    raw = {**raw, "measure": {**raw.get("measure", {}), "reuse": False}}
    store = Store(cfg.results.database)
    if args.baseline and store.run(args.baseline) is None:
        raise UserError(f"--baseline: no run {args.baseline!r} in {store.url}")
    earlier = [r["run_id"] for r in sorted(store.runs(cfg.name), key=lambda r: r["created_at"], reverse=True)
               if r["status"] == "done"]
    run_id = run_experiment(cfg, args.config, raw, executor=args.executor, address=args.address)
    report_run(store, run_id, cfg)
    failed = [r for r in store.stage_results(run_id) if r["status"] == "failed"]
    if failed:
        print(f"nightly {run_id}: {len(failed)} stage(s) failed: "
              + "; ".join(f"{r['stage']}: {(r['error'] or '')[:120]}" for r in failed[:5]))
    baselines = [args.baseline] + [r for r in earlier
                                   if r != args.baseline][: args.last - 1] if args.baseline else earlier[: args.last]
    if not baselines:
        print(f"nightly {run_id}: no earlier finished run of {cfg.name!r} in {store.url}: nothing compared; "
              + ("a run with failed stages is no baseline" if failed else "this run is the baseline"))
        return EXIT_REGRESSION if failed else 0
    flags = compare_runs(store, run_id, baselines, floor=args.floor, min_change_ms=args.min_change_ms)
    if not flags:
        raise UserError(nothing_compared(store, run_id, baselines[0]))
    write_report(store, run_id, Path(cfg.results.reports_dir), compare=flags)
    bad = regressions(flags)
    for f in flags:
        print(f"{f['flag']:12s} {f['variant'][:40]:40s} {f['device']:12s} {f['runtime']:12s} p50 {f['p50_ms']:.3f} vs "
              f"{f['base_p50_ms']:.3f} ms ({f['change']:+.1%}, 95% CI [{f['ci_low']:+.1%}, {f['ci_high']:+.1%}], threshold "
              f"±{f['threshold']:.1%})")
    print(f"nightly {run_id} against {baselines[0]} ({len(baselines)} baseline run(s)): compared {len(flags)} variant x device x "
          f"runtime row(s); {len(bad)} regression(s), {sum(f['flag'] == 'improvement' for f in flags)} improvement(s)"
          + (f"; {len(failed)} failed stage(s)" if failed else ""))
    return EXIT_REGRESSION if bad or failed else 0


def nothing_compared(store, run_id: str, other: str) -> str:
    """Why two runs share no variant x device x runtime row with samples on both sides (one line)."""
    from harness.report.data import flat_rows

    a, b = flat_rows(store, run_id), flat_rows(store, other)
    shared = {(r["variant_id"], r["device"], r["runtime"]) for r in a} & {(r["variant_id"], r["device"], r["runtime"]) for r in b}
    name_a, name_b = (store.run(run_id) or {}).get("name"), (store.run(other) or {}).get("name")
    why = (f"runs of different configs ({name_a!r}, {name_b!r})" if name_a != name_b else
           "no variant id in common (variants changed)" if not ({r["variant_id"] for r in a} & {r["variant_id"] for r in b}) else
           "no measurement with samples in common" if shared else "no device x runtime in common")
    return f"nothing compared: {run_id} and {other} share 0 variant x device x runtime rows ({len(a)} and {len(b)} rows; {why})"


def cmd_history(args) -> int:
    from harness.report.history import write_history
    from harness.results.store import Store

    cfg = load_config_file(args.config)[0]
    path, compared = write_history(Store(cfg.results.database, readonly=True), cfg.name, Path(cfg.results.reports_dir),
                                   last=args.last)
    print(f"{path} ({compared} variant x device x runtime row(s) compared with the runs before them)")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("report",
                       help="write reports/<run>/index.html, summary.md and results.csv; optional comparison and sign-off")
    p.add_argument("run")
    p.add_argument("--against", metavar="RUN2", help="compare latencies with another run")
    p.add_argument("--deploy", metavar="VARIANT", help="variant (name or id) to sign off for deployment")
    p.add_argument("--budget",
                   help="e.g. size=2MB,memory=4MB,latency_ms=300,accuracy=0.88 (latency is the end-to-end p90 where measured, "
                   "else the model p90): the headline's best variant per device is chosen within it; with --deploy, that variant "
                   "is signed off against it")
    p.add_argument("--floor", type=float_in(0), default=0.05, help="smallest relative p50 change ever flagged (default 0.05)")
    p.add_argument("--min-change-ms", type=float_in(0), default=0.25,
                   help="smallest absolute p50 change ever flagged (default 0.25 ms)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--db", default=DEFAULT_DATABASE)
    g.add_argument("--config", help="take the database and reports folder from this config")
    p.add_argument("--reports-dir", default=DEFAULT_REPORTS_DIR)
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("nightly", help="run a config with fresh measurements and flag regressions against earlier runs (exit 1)")
    p.add_argument("config")
    p.add_argument("--baseline", metavar="RUN", help="compare with this run (default: the latest finished run of the config)")
    p.add_argument("--last", type=int, default=5, help="earlier runs whose spread sets each device's noise threshold")
    p.add_argument("--floor", type=float_in(0), default=0.05, help="smallest relative p50 change ever flagged (default 0.05)")
    p.add_argument("--min-change-ms", type=float_in(0), default=0.25,
                   help="smallest absolute p50 change ever flagged (default 0.25 ms)")
    p.add_argument("--executor", choices=["ray", "inline"], default="ray")
    p.add_argument("--address")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_nightly)

    p = sub.add_parser("history",
                       help="the history page of a config's runs: p50/p90 and accuracy over time, noise band, flagged points")
    p.add_argument("config")
    p.add_argument("--last", type=int_in(1, 1000), default=20, help="how many finished runs (default 20)")
    p.set_defaults(fn=cmd_history)
