"""The rungs of bench/quality.py's ladder and what each needs: its transfer rows, its target teachers, its row.

    from bench.ladder import ladder, load_split, transfer_texts
    rungs = ladder(args)            # each rung adds one lever to the one before (or to the rung it names as base)

Split from bench/quality.py (which runs them) so that bench/frontier.py trains the same recipe and
bench/target_teacher.py builds the same rows for the target teacher to label. Every teacher of the ladder,
structural or target, is fine-tuned on the same reduced train rows with TEACHER_HP.
"""

import json
from pathlib import Path

from eibutil.stats import wilson

MAX_SEQ_LEN = 64
# the student recipe's defaults (bench/quality.py's flags; bench/frontier.py trains with them)
RECIPE = {"epochs": 3.0, "inter_epochs": 1.0, "cross_epochs": 0.25, "aug_copies": 3.0}
CKPT_EVERY = 200  # phase checkpoints (steps); --budget-minutes stops at one
STUDENT = {"layers": 2, "hidden": 256, "heads": 8, "ffn": 512, "embedding_size": 128, "integrate": True}  # a rung's shape
TEACHER_HP = {"epochs": 2.0, "seed": 0}  # every teacher of the ladder (structural and target) is fine-tuned so
MPNET = Path("~/.cache/eibert/teachers/all-mpnet-base-v2").expanduser()  # scripts/get-teacher.sh mpnet puts it there
CORPORA = Path("~/.cache/eibert/corpora").expanduser()  # scripts/get-corpora.sh


def load_split(data_dir: Path, sentences: int = 600):
    """Full SST-2 with the selection split carved from train (the rows every teacher and student train on)."""
    from eibert.data import load_task
    from eibert.selection import SelectionSettings, carve_selection

    data = load_task(source="files", train_file=data_dir / "train.tsv", dev_file=data_dir / "validation.tsv",
                     text_fields=["sentence"])
    return carve_selection(data, SelectionSettings(sentences=sentences))


def ladder(args) -> list[dict]:
    """The rungs in order; each adds one lever to the one before."""
    from eibert.augment import AugmentSettings
    from eibert.phase_training import PhaseSettings as P

    kd1 = (P("prediction", epochs=1, augmented=False, patience=None),)
    kd = (P("prediction", epochs=args.epochs, augmented=False),)
    inter = (P("intermediate", epochs=args.inter_epochs, augmented=False, patience=None),) + kd
    aug = (P("intermediate", epochs=args.inter_epochs, patience=None), P("prediction", epochs=args.epochs))
    base = {"vocab": 4000, "fold": False, "augment": None}
    A = AugmentSettings(copies=args.aug_copies)
    rungs = [
        {"variant": "kd-1-epoch", "lever": "prediction KD from cached teacher logits, 1 epoch", **base, "phases": kd1},
        {"variant": "+epochs", "lever": f"{args.epochs:g} epochs, best epoch on selection", **base, "phases": kd},
        {"variant": "+intermediate", "lever": "word-level hidden-state + [CLS] phase first", **base, "phases": inter},
        {"variant": "+fold+v5000", "lever": "bridge folded into pooler; freed bytes to a 5,000-token vocabulary",
         **base, "vocab": 5000, "fold": True, "phases": inter},
        {"variant": "+augment", "lever": f"teacher-labelled augmentation, {args.aug_copies:g} copies per row",
         **base, "vocab": 5000, "fold": True, "augment": A, "phases": aug},
        {"variant": "+cross", "lever": f"cross-distillation final phase ({args.cross_epochs:g} epoch)", **base, "vocab": 5000,
         "fold": True,
         "augment": A, "phases": aug + (P("cross", epochs=args.cross_epochs, lr=1e-4, patience=None),)},
        # target teachers: the student's structure stays MiniLM's; the logits it learns come from MPNet (or both)
        {"variant": "+mpnet", "lever": "prediction targets from fine-tuned MPNet (rows and phases of +augment)",
         "base": "+augment",
         **base, "vocab": 5000, "fold": True, "augment": A, "phases": aug, "targets": ("mpnet",)},
        {"variant": "+ensemble", "lever": "prediction targets: mean of MPNet's and MiniLM's logits", "base": "+mpnet",
         **base, "vocab": 5000, "fold": True, "augment": A, "phases": aug, "targets": ("mpnet", "structural")},
        {"variant": "+reviews", "lever": "transfer set: + Pang & Lee IMDb review sentences and sub-phrases (MPNet targets)",
         "base": "+mpnet", **base, "vocab": 5000, "fold": True, "augment": A, "phases": aug, "targets": ("mpnet",),
         "transfer": {"pang-lee1": None}},
        {"variant": "+mixed", "lever": "transfer set: + 30k nlp-corpus sentences and sub-phrases (MPNet targets)",
         "base": "+reviews", **base, "vocab": 5000, "fold": True, "augment": A, "phases": aug, "targets": ("mpnet",),
         "transfer": {"pang-lee1": None, "nlp-corpus": 30000}},
        # capacity per byte (bench/frontier.py's 4x256-f384-int4: the same student, so one training serves both)
        {"variant": "+int4", "lever": "4 layers x 256 (ffn 384), INT4 weights learned in the prediction phase; same bytes",
         "base": "+mixed", **base, "vocab": 5000, "fold": True, "augment": A, "phases": aug, "targets": ("mpnet",),
         "transfer": {"pang-lee1": None, "nlp-corpus": 30000}, "student": {"layers": 4, "hidden": 256, "ffn": 384},
         "bits": 4},
    ]
    return [r for r in rungs if not args.rungs or r["variant"] in args.rungs]


def weights_recipe(phases: tuple, bits: int):
    """(quant, phases, distill.qat) of a student with `bits`-bit weights: INT8 quantizes after training (per-channel
    LSQ); INT4 (a step per row) trains quantization-aware from the prediction phase on, with the head folded."""
    from dataclasses import replace

    from eibert.qat import QatSettings
    from eibert.quant import QuantSettings

    quant = QuantSettings(granularity="per-channel", method="lsq", bits=bits, steps_per_block=200)
    if bits != 4:
        return quant, phases, None
    return (quant, tuple(replace(p, qat=True) if p.kind == "prediction" else p for p in phases),
            QatSettings(quant, fold=True).to_json())


def transfer_texts(spec: dict | None, data) -> tuple[list[str], dict]:
    """The transfer rows of a rung: {source: sentences kept (None: all)}, filtered against dev and selection."""
    from eibert.transfer import TransferSettings, build_transfer

    if not spec:
        return [], {}
    blocked = list(data.dev["text_a"]) + list(data.selection["text_a"])
    texts, report = [], {"sources": {}}
    for name, cap in spec.items():  # one source at a time, each seeded alike: adding a source keeps the others' rows
        got, rep = build_transfer({name: CORPORA / f"{name}.txt"}, blocked, TransferSettings(max_sentences=cap))
        texts += got
        report["sources"].update(rep["sources"])
    report["rows"] = len(texts)
    return texts, report


def artifact_row(rung: dict, seed: int, res: dict, old: dict, wall_s: float, teacher, mrow: dict | None, t_report: dict) -> dict:
    art = Path(res["artifact_dir"])
    stored = old.get(res["cache_key"], {})
    names = rung.get("targets", ())
    t_acc = {"mpnet": (mrow or {}).get("dev_accuracy"), "structural": teacher.dev_accuracy}
    fit = res["stages"]["student"].get("fit") or {}
    return {"variant": rung["variant"], "lever": rung["lever"], "stage": f"int{rung.get('bits', 8)}-artifact", "seed": seed,
            "vocab_size": rung["vocab"],
            "size_bytes": res["size_bytes"], "dev_accuracy": res["dev_accuracy"],
            "dev_ci95": wilson(res["dev_accuracy"], res["dev_n"]),
            "selection_accuracy": res["selection_accuracy"], "float_dev_accuracy": res["float_dev_accuracy"],
            "teacher": " + ".join({"mpnet": "all-mpnet-base-v2", "structural": "all-MiniLM-L6-v2"}[n] for n in names)
            or "all-MiniLM-L6-v2",
            "teacher_dev_accuracy": max([t_acc[n] for n in names if t_acc.get(n) is not None], default=teacher.dev_accuracy),
            "transfer_rows": fit.get("rows", 0) - fit.get("train_rows", 0), "transfer": t_report.get("sources", {}),
            "base": rung.get("base"), "wall_s": stored["wall_s"] if res["cache_hit"] and stored else wall_s,
            "key": res["cache_key"], "artifact_dir": res["artifact_dir"], "parts": res["parts"],
            "predictions": json.loads((art / "predictions.json").read_text()), "fit": fit,
            "artifact_sha256": json.loads((art / "manifest.json").read_text())["files"]["model.onnx"]["sha256"]}
