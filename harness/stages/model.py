"""The model stages: teacher -> importance -> vocab -> student -> artifact, one eibert call each.

    rec = student(node, {"teacher": TeacherRecord, "vocab": VocabRecord}, ctx)   # -> StudentRecord

Each takes the records of its inputs (the graph's edges) and returns its own; data are loaded in the
process that needs them (datasets caches them), so a node travels as its config alone.
"""

from harness.stages.records import TeacherRecord
from harness.stages.state import RunContext


def _data(node, ctx):
    from harness.stages.settings import load_data

    data = load_data(node.payload.config)
    if ctx.sources:  # the inputs came by content to this node: name them as the user did
        data.sources = dict(ctx.sources)
    return data


def _progress(ctx) -> bool:
    return not ctx.quiet


def teacher(node, inputs: dict, ctx: RunContext) -> TeacherRecord:
    from eibert.teacher import finetune_teacher

    cfg = node.payload.config
    data = _data(node, ctx)
    hp = cfg.teacher.model_dump(exclude={"model"})
    out = finetune_teacher(cfg.teacher.model, data, cache_dir=str(cfg.cache_dir), hp=hp, max_seq_len=cfg.task.max_seq_len,
                           progress=_progress(ctx)).to_json()
    out["model_ref"] = ctx.model_ref or out["model_ref"]
    return TeacherRecord.from_json({**out, "data_checksums": data.checksums, "data_sources": data.sources,
                                    "dev_rows": len(data.dev)})


def _vocab_settings(cfg):
    from eibert.cached_stages import VocabSettings

    v = cfg.compress.vocab
    return VocabSettings(size=v.size, method=v.method, importance_rows=v.importance_rows)


def importance(node, inputs: dict, ctx: RunContext):
    from eibert import cached_stages as stages

    cfg = node.payload.config
    return stages.importance(inputs["teacher"].model_dir, _data(node, ctx), _vocab_settings(cfg), cache_dir=str(cfg.cache_dir),
                             max_seq_len=cfg.task.max_seq_len, progress=_progress(ctx))


def vocab(node, inputs: dict, ctx: RunContext):
    from eibert import cached_stages as stages

    cfg = node.payload.config
    return stages.vocab(inputs["teacher"].model_dir, inputs["importance"], _data(node, ctx), _vocab_settings(cfg),
                        cache_dir=str(cfg.cache_dir), max_seq_len=cfg.task.max_seq_len)


def student(node, inputs: dict, ctx: RunContext):
    from eibert import cached_stages as stages
    from harness.stages.settings import compress_settings

    cfg = node.payload.config
    s = compress_settings(cfg)
    return stages.student(inputs["teacher"].model_dir, inputs["vocab"], _data(node, ctx), student=s["student"],
                          distill=s["distill"],
                          cache_dir=str(cfg.cache_dir), augment=s["augment"], max_seq_len=s["max_seq_len"],
                          progress=_progress(ctx))


def artifact(node, inputs: dict, ctx: RunContext):
    from eibert.compress import artifact as make_artifact
    from harness.stages.settings import compress_settings

    cfg = node.payload.config
    s = compress_settings(cfg)
    rec = make_artifact(inputs["student"], _data(node, ctx), s["quant"], cache_dir=str(cfg.cache_dir), calib_rows=s["calib_rows"],
                        fold=s["fold"], max_seq_len=s["max_seq_len"], progress=_progress(ctx))
    t = inputs["teacher"]
    rec.extra.update(teacher_dev_accuracy=t.dev_accuracy, data_sha256=t.data_checksums["dev"])
    return rec


# the measurement rows they contribute ----------------------------------------------------------

def teacher_row(node, o: dict) -> dict:
    return {"subject": "teacher", "device": "host", "runtime": "torch", "accuracy": o["dev_accuracy"], "n": o["dev_n"],
            "metrics": {"data_sha256": o["data_checksums"]["dev"], "model_dir": o["model_dir"],
                        "dev_correct": o.get("dev_correct")}}


def artifact_row(node, o: dict) -> dict:
    return {"subject": "artifact", "device": "host", "runtime": "onnxruntime", "accuracy": o["dev_accuracy"], "n": o["dev_n"],
            "size_bytes": o["size_bytes"],
            "metrics": {"parts": o["parts"], "max_logit_diff_vs_torch": o["max_logit_diff_vs_torch"],
                        "float_dev_accuracy": o["float_dev_accuracy"], "teacher_dev_accuracy": o["teacher_dev_accuracy"],
                        "coverage": o["stages"]["vocab"]["coverage"], "unk_rate": o["stages"]["vocab"]["unk_rate"],
                        "artifact_dir": o["artifact_dir"], "data_sha256": o["data_sha256"], "dev_correct": o.get("dev_correct")}}
