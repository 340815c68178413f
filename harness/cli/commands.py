"""The `eib` command line.

    eib plan configs/quickstart.yaml [--json]     # the expanded variants; imports no torch/tvm/ray
    eib run configs/quickstart.yaml               # the main job: stages -> results database -> report
    eib compress configs/quickstart.yaml          # teacher + compression of every variant (cached)
    eib evaluate MODEL --data FILE                # accuracy of a model on a labelled file, as JSON
    eib runs [--db results/eib.sqlite]            # runs stored in a results database
    eib devices list|check [--inventory FILE]     # the inventory; a health table of every device
    eib measure ARTIFACT --device NAME [--runtime tvm|onnxruntime]   # build, deploy, run, store
    eib report RUN [--against RUN2] [--deploy VARIANT --budget ...]  # HTML/Markdown/CSV, comparison, sign-off
    eib nightly CONFIG [--baseline RUN]           # fresh run; exit 1 on a confirmed regression

User mistakes (bad config, missing file, unknown model) print one line and exit with code 2.
"""

import argparse
import json
import sys

from eibutil import UserError
from eibutil.errors import report
from eibutil.logs import configure
from harness.cli.args import OneLineParser, int_in
from harness.config.load import load_config_file
from harness.config.schema import DEFAULT_DATABASE
from harness.report.summary import report_run


def cmd_plan(args) -> int:
    from harness.config.variants import expand

    cfg, raw = load_config_file(args.config)
    variants = expand(cfg, args.config, raw)
    if args.json:
        print(json.dumps({"name": cfg.name, "variants": [v.to_json() for v in variants], "targets": cfg.targets,
                          "devices": cfg.devices}, indent=2, default=str))
        return 0
    print(f"{cfg.name}: {len(variants)} variant(s) x {len(cfg.targets)} target(s) x {len(cfg.devices)} device(s)")
    for v in variants:
        print(f"  {v.variant_id}  {v.name}")
    return 0


def _print_results(store, run_id: str) -> None:
    names = {v["variant_id"]: v["name"] for v in store.variants(run_id)}
    rows = store.measurements(run_id)
    if not rows:
        return
    print(f"{'variant':40s} {'subject':8s} {'device':12s} {'runtime':12s} {'size bytes':>11s} {'accuracy':>9s} {'p50 ms':>9s}")
    for m in rows:
        size = f"{m['size_bytes']:,}" if m["size_bytes"] is not None else "-"
        acc = f"{m['accuracy']:.4f}" if m["accuracy"] is not None else "-"
        p50 = f"{m['p50_ms']:.2f}" if m.get("p50_ms") is not None else "-"
        print(f"{names.get(m['variant_id'], '(shared)')[:40]:40s} {m['subject']:8s} {(m.get('device') or '-')[:12]:12s} "
              f"{m['runtime']:12s} {size:>11s} {acc:>9s} {p50:>9s}")


def cmd_run(args, until: str = "measure") -> int:
    from harness.engine.pipeline import run_experiment
    from harness.results.store import Store

    cfg, raw = load_config_file(args.config)
    resume = getattr(args, "resume", None) or getattr(args, "rerun_failed", None)
    run_id = run_experiment(cfg, args.config, raw, until=until, executor=args.executor, address=args.address,
                            resume=resume, rerun_failed=bool(getattr(args, "rerun_failed", None)))
    store = Store(cfg.results.database)
    report_run(store, run_id, cfg)
    run = store.run(run_id)
    _print_results(store, run_id)
    print(f"run {run_id}: {run['status']} {run['summary']}")
    return 0 if run["status"] == "done" else 1


def cmd_evaluate(args) -> int:
    from eibert.evaluate import evaluate

    fields = [f for f in args.text_fields.split(",") if f] if args.text_fields else None
    if fields is not None and not 1 <= len(fields) <= 2:
        raise UserError(f"--text-fields: one column, or two for sentence pairs (got {len(fields)})")
    out = evaluate(args.model, args.data, text_fields=fields, label_field=args.label_field, max_seq_len=args.max_seq_len)
    print(json.dumps(out))
    return 0


def cmd_runs(args) -> int:
    from harness.results.store import Store

    db = args.db
    if args.config:
        db = load_config_file(args.config)[0].results.database
    for r in Store(db, readonly=True).runs():
        print(f"{r['run_id']}  {r['name']:20s} {r['status']:8s} {r['summary'] or ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="eib", description="EI-BERT: compress BERT models and measure them on real devices.")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="debug lines too (eib -v run ...)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="print the variants a config expands to (imports no torch/tvm/ray)")
    p.add_argument("config")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_plan)

    for name, until, text in (("run", "measure", "run the experiment: every stage, the results database, the report"),
                              ("compress", "compress",
                               "compress every variant to a deployable artifact (cached), scored with onnxruntime")):
        p = sub.add_parser(name, help=text)
        p.add_argument("config")
        p.add_argument("--quiet", action="store_true", help="warnings and errors only: no progress lines or bars")
        p.add_argument("--executor", choices=["ray", "inline"], default="ray",
                       help="Ray tasks (default) or this process, for debugging")
        p.add_argument("--address",
                       help="an existing Ray cluster (default: RAY_ADDRESS, else a local one with this machine's CPUs)")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--resume", metavar="RUN", help="continue RUN: stages it completed are not run again")
        g.add_argument("--rerun-failed", metavar="RUN", help="continue RUN and run its failed stages again")
        p.set_defaults(fn=lambda a, until=until: cmd_run(a, until=until))

    p = sub.add_parser("evaluate", help="accuracy of a model or artifact on a labelled TSV/CSV/JSON/Parquet file, as JSON")
    p.add_argument("model", help="artifact folder (onnxruntime), model folder, 'bundled', or a Hugging Face id")
    p.add_argument("--data", required=True, help="labelled data file")
    p.add_argument("--text-fields", help="comma-separated text columns (default: guessed)")
    p.add_argument("--label-field", help="label column (default: label)")
    p.add_argument("--max-seq-len", type=int_in(8, 512), default=128)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("runs", help="list the runs in a results database")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--db", default=DEFAULT_DATABASE, help="database file or SQLAlchemy URL")
    g.add_argument("--config", help="take the database from this config")
    p.set_defaults(fn=cmd_runs)

    from harness.cli import devices as cli_devices

    cli_devices.add_commands(sub)
    from harness.cli import reports as cli_report

    cli_report.add_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(-1 if getattr(args, "quiet", False) else args.verbose)
    try:
        return args.fn(args)
    except UserError as e:
        return report(e, "eib")  # always one line
    except KeyboardInterrupt:
        print("eib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
