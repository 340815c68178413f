"""One place where a validated config becomes the settings objects of eibert and harness.measure.run
(those packages know nothing of harness configs).

    data = load_data(cfg)                       # TaskData, with the selection split carved when configured
    compress(..., **compress_settings(cfg))     # student, vocab, distill, quant, augment, fold settings
    measure_settings(cfg)                       # MeasureSettings for the on-device runner
"""

from harness.config.schema import ExperimentConfig


def load_data(cfg: ExperimentConfig):
    from eibert.data import load_task
    from eibert.selection import SelectionSettings, carve_selection

    t = cfg.task
    data = load_task(source=t.source, name=t.name, train_file=t.train_file, dev_file=t.dev_file, hub_id=t.hub_id,
                     hub_config=t.hub_config, train_split=t.train_split, dev_split=t.dev_split, text_fields=t.text_fields,
                     label_field=t.label_field, max_train_rows=t.max_train_rows, seed=cfg.teacher.seed)
    return carve_selection(data, SelectionSettings(**t.selection.model_dump())) if t.selection.sentences else data


def compress_settings(cfg: ExperimentConfig) -> dict:
    """The eibert settings objects for a variant's config (eibert knows nothing of harness configs)."""
    from eibert.augment import AugmentSettings
    from eibert.compress import VocabSettings
    from eibert.distill import DistillSettings
    from eibert.phase_training import PhaseSettings
    from eibert.qat import QatSettings
    from eibert.quant import QuantSettings

    c = cfg.compress
    student = c.student.model_dump(exclude={"fold_head"})
    student["integrate"] = c.distill.integrate
    d = c.distill.model_dump(exclude={"integrate", "phases"})
    d["phases"] = tuple(PhaseSettings(**p.model_dump()) for p in c.distill.phases)
    q = c.quant
    quant = None if q.granularity == "none" else QuantSettings(granularity=q.granularity, method=q.method, bits=q.bits,
                                                               activations=q.activations, mixed=q.mixed, block=q.block,
                                                               steps_per_block=q.steps_per_block,
                                                               lr=q.lr)
    if c.distill.qat:  # the artifact's quantization (and head folding) in the student's forward pass
        d["qat"] = QatSettings(quant, c.student.fold_head).to_json()
    else:
        d.pop("qat")
    return {
        "student": student,
        "vocab": VocabSettings(size=c.vocab.size, method=c.vocab.method, importance_rows=c.vocab.importance_rows),
        "distill": DistillSettings(**d),
        "quant": quant,
        "calib_rows": q.calib_rows,
        "max_seq_len": cfg.task.max_seq_len,
        "augment": AugmentSettings(**c.augment.model_dump()),
        "fold": c.student.fold_head,
    }


def measure_settings(cfg):
    from harness.measure.run import MeasureSettings

    m = cfg.measure
    return MeasureSettings(seq_len=m.seq_len, rows=m.rows, warmup=m.warmup, min_count=m.min_count,
                           min_duration_s=m.min_duration_s, max_duration_s=m.max_duration_s, trials=m.trials,
                           end_to_end=m.end_to_end, profile=m.profile)
