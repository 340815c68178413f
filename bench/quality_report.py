"""The report of bench/quality.py: paired tests between rungs, the ladder's Markdown table and the headline (the
variant chosen on mean selection accuracy among those within the byte budget run with every seed), shipped to
models/sst2-2mb with its provenance."""

import json
import os
import shutil
from pathlib import Path

from eibutil import atomic_write_json
from eibutil.errors import UserError
from eibutil.stats import mcnemar_exact

ROOT = Path(__file__).resolve().parents[1]

BUDGET_BYTES = 2_000_000
TARGET_ACC = 0.88


def add_paired_tests(rows: list[dict], seed: int, dev_labels: list[int], sel_labels: list[int]) -> None:
    """p of an exact McNemar test of each rung against its base (the rung before it unless it names one; same
    seed), on dev and selection."""
    ladder_rows = [r for r in rows if r["stage"] != "teacher" and r["seed"] == seed]
    by_name = {r["variant"]: r for r in ladder_rows}
    for before, r in zip(ladder_rows, ladder_rows[1:]):
        prev = by_name.get(r.get("base")) or before
        r["vs"] = prev["variant"]
        for split, labels in (("dev", dev_labels), ("selection", sel_labels)):
            if split in r["predictions"] and split in prev["predictions"]:
                r[f"p_{split}_vs_prev"] = mcnemar_exact(r["predictions"][split], prev["predictions"][split], labels)["p_value"]


def produced_by(rows: list[dict], command: str) -> str:
    """Which command made which rows: rows are kept across runs, so the file's own command is only its last writer."""
    students = [r for r in rows if r["stage"] != "teacher"]
    if all(r.get("command") in (None, command) for r in students):
        return f"Produced by `{command}`"
    groups: dict[str, list[str]] = {}
    for r in students:
        groups.setdefault(r.get("command") or "an earlier command", []).append(f"{r['variant']} {r['seed']}")
    made = "; ".join(f"`{c}`: {', '.join(v)}" for c, v in groups.items() if c != command)
    own = ", ".join(groups.get(command, [])) or "no student row"
    return (f"Rows by command (variant seed; each row's `command` in the JSON): {made}. Last written by `{command}`: "
            f"the teachers' rows, {own}")


def markdown(rows: list[dict], stages: list[dict], command: str, split: dict, host: str) -> str:
    lines = [
        "## Accuracy at 2 MB: the ladder (full SST-2, selection split from train, 872-row dev set)", "",
        f"On {host}; rows in `bench/results/quality.json`. {produced_by(rows, command)}. Every rung is an INT8 (per-channel LSQ)",
        "artifact (`+int4`: INT4 weights, a step per row, learned during its prediction phase) scored under onnxruntime;",
        "size is model.onnx + vocab.txt. Selection: "
        f"{split.get('selection_sentences')} whole train sentences; {split.get('removed_rows'):,} train rows removed with them "
        f"({split.get('removed_share', 0):.1%}), leaving {split.get('train_rows_after'):,}. p: exact McNemar against "
        "the row before (dev / selection); p >= 0.05 is within noise. gap: the dev points between the teacher whose "
        "predictions the rung learns and the rung.", "",
        "| variant | lever | seed | size bytes | dev accuracy [95% CI] | selection | gap | p dev | p sel | wall s |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda p: "-" if p is None else f"{p:.3f}"
    for r in rows:
        lo, hi = r["dev_ci95"]
        sel = "-" if r.get("selection_accuracy") is None else f"{r['selection_accuracy']:.4f}"
        gap = (f"{100 * (r['teacher_dev_accuracy'] - r['dev_accuracy']):.1f}"
               if r["stage"] != "teacher" and r.get("teacher_dev_accuracy") is not None else "-")
        lines.append(f"| {r['variant']} | {r['lever']} | {r['seed']} | {r['size_bytes']:,} | {r['dev_accuracy']:.4f} [{lo:.3f}, "
                     f"{hi:.3f}] | {sel} | {gap} | {fmt(r.get('p_dev_vs_prev'))} | {fmt(r.get('p_selection_vs_prev'))} | "
                     f"{r['wall_s']:.0f} |")
    lines += ["", headline(rows), "", "Wall time of each stage (as first computed; cache hits cost ~0):", "",
              "| stage | rows / steps | wall s |", "|---|---:|---:|"]
    seen: dict[str, dict] = {}
    for st in stages:
        seen.setdefault(st["stage"], st)
    lines += [f"| {st['stage']} | {st.get('rows') or '-'} | {st['wall_s']:.0f} |" for st in seen.values()]
    return "\n".join(lines)


def headline_candidates(rows: list[dict]) -> dict[str, list[dict]]:
    """Artifacts within the byte budget, by variant, among those run with every seed (a rung measured on
    one seed is not compared with a mean over two)."""
    cands: dict[str, list[dict]] = {}
    for r in rows:
        if r["stage"] != "teacher" and r["size_bytes"] <= BUDGET_BYTES:
            cands.setdefault(r["variant"], []).append(r)
    most = max((len(rs) for rs in cands.values()), default=0)
    return {k: rs for k, rs in cands.items() if len(rs) == most}


def pick_headline(rows: list[dict]) -> tuple[str, list[dict]] | None:
    """The variant chosen on mean selection accuracy over its seeds."""
    cands = headline_candidates(rows)
    return max(cands.items(), key=lambda kv: sum(r["selection_accuracy"] or 0 for r in kv[1]) / len(kv[1])) if cands else None


def headline(rows: list[dict]) -> str:
    """The variant chosen on the selection split among artifacts within the byte budget, over its seeds."""
    picked = pick_headline(rows)
    if picked is None:
        return "Headline: no artifact within the budget yet."
    name, rs = picked
    mean = sum(r["dev_accuracy"] for r in rs) / len(rs)
    each = ", ".join(f"seed {r['seed']}: {r['dev_accuracy']:.4f}" for r in rs)
    verdict = "reached" if mean >= TARGET_ACC and len(rs) >= 2 else ("not reached" if mean < TARGET_ACC
                                                                     else "reached on one seed only")
    return (f"Headline (chosen on mean selection accuracy among the variants run with every seed, <= {BUDGET_BYTES:,} bytes): "
            f"**{name}**, {max(r['size_bytes'] for r in rs):,} bytes, dev accuracy {mean:.4f} mean over {len(rs)} "
            f"seed(s) ({each}); target {TARGET_ACC:.1%} {verdict}.")


def ship(rows: list[dict], dest: Path, command: str, commit: str | None = None) -> None:
    """Copy the headline variant's best seed (on selection) to `dest`."""
    picked = pick_headline(rows)
    if picked is None:
        return
    head = max(picked[1], key=lambda r: r["selection_accuracy"] or 0)
    for r in rows:
        r["headline"] = r is head
        r["headline_variant"] = r["variant"] == head["variant"]
        r.pop("seeds", None), r.pop("dev_accuracy_mean", None)
    head["seeds"] = sorted(r["seed"] for r in picked[1])
    head["dev_accuracy_mean"] = sum(r["dev_accuracy"] for r in picked[1]) / len(picked[1])
    src = Path(head["artifact_dir"])
    if not src.is_dir():  # a cache that lost it (another machine): the shipped copy stands if it is this artifact
        if _shipped_key(dest) == head["key"]:
            return
        raise UserError(f"{src}: the headline's artifact ({head['variant']} seed {head['seed']}) is not in the cache "
                        f"and {dest} holds another; train that rung again (same command) to ship it")
    dest.mkdir(parents=True, exist_ok=True)  # files other than the artifact's (the model card) stay
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in ("entry.json", "manifest.json"):
            shutil.copy2(f, dest / f".{f.name}.tmp")
            os.replace(dest / f".{f.name}.tmp", dest / f.name)
    man = json.loads((src / "manifest.json").read_text())
    # the row's own command: rows are kept across runs, the file's command is only its last writer's
    man["provenance"] = {"command": head.get("command") or command, "variant": head["variant"], "seed": head["seed"],
                         "cache_key": head["key"],
                         "commit": commit or commit_of_tree(), "dev_accuracy": head["dev_accuracy"],
                         "selection_accuracy": head["selection_accuracy"]}
    atomic_write_json(dest / "manifest.json", man)


def _shipped_key(dest: Path) -> str | None:
    man = dest / "manifest.json"
    return json.loads(man.read_text()).get("provenance", {}).get("cache_key") if man.is_file() else None


def commit_of_tree() -> str:
    import subprocess

    p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() or "unknown"
