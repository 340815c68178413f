"""The main job: `eib run CONFIG`, from config to results database and report.

    from harness.config import load_config
    from harness.pipeline import run_experiment
    run_id = run_experiment(load_config("configs/quickstart.yaml"), "configs/quickstart.yaml")

Stages: data -> teacher (shared by every variant with the same task and teacher settings) ->
compress (per variant: vocabulary, student, quantization, exported artifact scored by onnxruntime).
Each stage returns a `StageResult`; a failure is stored as a row with its error and the sweep goes on
with the variants it does not touch. Every expensive step is cached by content in `cache_dir`.
"""

from pathlib import Path

from harness.config import ExperimentConfig
from harness.provenance import collect
from harness.report import write_summary
from harness.stages import StageResult, run_stage
from harness.store import Store
from harness.variants import Variant, config_hash, expand


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def load_data(cfg: ExperimentConfig):
    from eibert.data import load_task

    t = cfg.task
    return load_task(source=t.source, name=t.name, train_file=t.train_file, dev_file=t.dev_file, hub_id=t.hub_id,
                     hub_config=t.hub_config, train_split=t.train_split, dev_split=t.dev_split, text_fields=t.text_fields,
                     label_field=t.label_field, max_train_rows=t.max_train_rows, seed=cfg.teacher.seed)


def compress_settings(cfg: ExperimentConfig) -> dict:
    """The eibert settings objects for a variant's config (eibert knows nothing of harness configs)."""
    from eibert.compress import VocabSettings
    from eibert.distill import DistillSettings
    from eibert.quant import QuantSettings

    c = cfg.compress
    student = c.student.model_dump()
    student["integrate"] = c.distill.integrate
    d = c.distill.model_dump(exclude={"integrate"})
    q = c.quant
    quant = None if q.granularity == "none" else QuantSettings(granularity=q.granularity, method=q.method, bits=q.bits,
                                                               activations=q.activations, mixed=q.mixed, steps_per_block=q.steps_per_block,
                                                               lr=q.lr)
    return {
        "student": student,
        "vocab": VocabSettings(size=c.vocab.size, method=c.vocab.method, importance_rows=c.vocab.importance_rows),
        "distill": DistillSettings(**d),
        "quant": quant,
        "calib_rows": q.calib_rows,
        "max_seq_len": cfg.task.max_seq_len,
    }


class Runner:
    """Runs the stages of one run and writes each result as it comes (so a crash loses nothing done)."""

    def __init__(self, cfg: ExperimentConfig, store: Store, run_id: str, quiet: bool):
        self.cfg, self.store, self.run_id, self.quiet = cfg, store, run_id, quiet
        self.errors_dir = Path(cfg.results.reports_dir) / run_id / "errors"
        self.shared: dict[str, tuple[object, StageResult]] = {}  # task+teacher key -> (data, teacher result)
        self.results: list[StageResult] = []

    def record(self, res: StageResult, measurement: dict | None = None) -> None:
        with self.store.transaction() as tx:
            tx.add_stage(self.run_id, res.variant_id, res.stage, status=res.status, error=res.error, error_kind=res.error_kind,
                         cache_key=res.cache_key, wall_s=res.wall_s, output=res.output)
            if measurement:
                tx.add_measurement(self.run_id, res.variant_id, **measurement)
        self.results.append(res)
        who = res.variant_id or "shared"
        _say(f"  {who:16s} {res.stage:9s} {res.status:7s} {res.wall_s:7.1f}s" + (f"  {res.error}" if res.error else ""), self.quiet)

    def teacher_for(self, v: Variant):
        """(data, teacher result) for a variant; computed once per distinct task+teacher config."""
        key = config_hash(v.config, exclude=("name", "sweep", "results", "compress"))
        if key in self.shared:
            return self.shared[key]
        state: dict = {}

        def data_stage() -> dict:
            state["data"] = data = load_data(v.config)
            return {"train_rows": len(data.train), "dev_rows": len(data.dev), "num_labels": data.num_labels,
                    "checksums": data.checksums, "sources": data.sources}

        res = run_stage("data", "", data_stage, self.errors_dir)
        self.record(res)
        if not res.ok:
            self.shared[key] = (None, res)
            return self.shared[key]

        def teacher_stage() -> dict:
            from eibert.teacher import finetune_teacher

            hp = v.config.teacher.model_dump(exclude={"model"})
            return finetune_teacher(v.config.teacher.model, state["data"], cache_dir=str(v.config.cache_dir), hp=hp,
                                    max_seq_len=v.config.task.max_seq_len, progress=not self.quiet).to_json()

        res = run_stage("teacher", "", teacher_stage, self.errors_dir)
        data = state["data"]
        self.record(res, {"subject": "teacher", "device": "host", "runtime": "torch", "accuracy": res.output["dev_accuracy"],
                          "n": res.output["dev_n"], "metrics": {"data_sha256": data.checksums["dev"], "model_dir": res.output["model_dir"]}}
                    if res.ok else None)
        self.shared[key] = (data, res)
        return self.shared[key]

    def compress(self, v: Variant, data, teacher: StageResult) -> StageResult:
        def stage() -> dict:
            from eibert.compress import compress

            s = compress_settings(v.config)
            return compress(teacher.output["model_dir"], data, cache_dir=str(v.config.cache_dir), progress=not self.quiet, **s)

        res = run_stage("compress", v.variant_id, stage, self.errors_dir)
        m = None
        if res.ok:
            o = res.output
            m = {"subject": "artifact", "device": "host", "runtime": "onnxruntime", "accuracy": o["dev_accuracy"], "n": o["dev_n"],
                 "size_bytes": o["size_bytes"],
                 "metrics": {"parts": o["parts"], "max_logit_diff_vs_torch": o["max_logit_diff_vs_torch"],
                             "float_dev_accuracy": o["float_dev_accuracy"], "teacher_dev_accuracy": teacher.output["dev_accuracy"],
                             "coverage": o["stages"]["vocab"]["coverage"], "unk_rate": o["stages"]["vocab"]["unk_rate"],
                             "artifact_dir": o["artifact_dir"], "data_sha256": data.checksums["dev"]}}
        self.record(res, m)
        return res


def run_experiment(cfg: ExperimentConfig, config_path: str | Path, raw: dict | None = None, *, quiet: bool = False,
                   until: str = "compress") -> str:
    """Run the stages for every variant of `cfg` (up to `until`: teacher | compress), store the rows,
    write the report; returns the run id."""
    variants = expand(cfg, config_path, raw)
    store = Store(cfg.results.database)
    run_id = store.create_run(cfg.name, cfg.model_dump(mode="json"), str(config_path))
    _say(f"run {run_id}: {len(variants)} variant(s), database {store.url}", quiet)
    prov = collect()
    with store.transaction() as tx:
        for v in variants:
            tx.add_variant(run_id, v.variant_id, v.name, v.overrides, v.config.model_dump(mode="json"))
    runner = Runner(cfg, store, run_id, quiet)
    checksums: dict = {}
    for v in variants:
        data, teacher = runner.teacher_for(v)
        if data is not None:
            checksums.update({src: data.checksums[k] for k, src in data.sources.items()})  # file -> sha256
        if until != "compress":
            continue
        if teacher.ok:
            runner.compress(v, data, teacher)
        else:  # the variant cannot start: say so in its own row rather than leave it silent
            runner.record(StageResult("compress", v.variant_id, "skipped", {}, f"upstream stage '{teacher.stage}' failed", teacher.error_kind))
    with store.transaction() as tx:
        tx.add_provenance(run_id, "", git_sha=prov["git_sha"], git_dirty=prov["git_dirty"], packages=prov["packages"],
                          host=prov["host"], data=checksums,
                          seeds={"teacher": cfg.teacher.seed, "distill": cfg.compress.distill.seed},
                          extra={"config_path": str(config_path)})
    failed = [r for r in runner.results if r.status in ("failed", "skipped")]
    cached = [r for r in runner.results if r.status == "cached"]
    store.finish_run(run_id, "failed" if failed else "done",
                     {"stages": len(runner.results), "failed": len(failed), "cached": len(cached), "variants": len(variants)})
    report = write_summary(store, run_id, Path(cfg.results.reports_dir))
    _say(f"report: {report}", quiet)
    return run_id
