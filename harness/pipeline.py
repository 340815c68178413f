"""The main job: `eib run CONFIG`, from config to results database and report.

    from harness.config import load_config
    from harness.pipeline import run_experiment
    run_id = run_experiment(load_config("configs/quickstart.yaml"), "configs/quickstart.yaml")

Stages so far: data -> teacher (fine-tuned, cached, scored on dev). Each stage returns a
`StageResult`; a failure is stored as a row with its error and the run goes on where it can.
"""

from pathlib import Path

from harness.config import ExperimentConfig
from harness.provenance import collect
from harness.report import write_summary
from harness.stages import StageResult, run_stage
from harness.store import Store
from harness.variants import expand


def _store_stage(store: Store, run_id: str, res: StageResult) -> None:
    with store.transaction() as tx:
        tx.add_stage(run_id, res.variant_id, res.stage, status=res.status, error=res.error, error_kind=res.error_kind,
                     cache_key=res.cache_key, wall_s=res.wall_s, output=res.output)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def run_experiment(cfg: ExperimentConfig, config_path: str | Path, raw: dict | None = None, *, quiet: bool = False) -> str:
    """Run every stage for `cfg`, store the rows, write the report; returns the run id."""
    variants = expand(cfg, config_path, raw)
    store = Store(cfg.results.database)
    run_id = store.create_run(cfg.name, cfg.model_dump(mode="json"), str(config_path))
    errors_dir = Path(cfg.results.reports_dir) / run_id / "errors"
    _say(f"run {run_id}: {len(variants)} variant(s), database {store.url}", quiet)
    prov = collect()
    with store.transaction() as tx:
        for v in variants:
            tx.add_variant(run_id, v.variant_id, v.name, v.overrides, v.config.model_dump(mode="json"))

    state: dict = {}

    def data_stage() -> dict:
        from eibert.data import load_task

        t = cfg.task
        data = load_task(source=t.source, name=t.name, train_file=t.train_file, dev_file=t.dev_file, hub_id=t.hub_id,
                         hub_config=t.hub_config, train_split=t.train_split, dev_split=t.dev_split,
                         text_fields=t.text_fields, label_field=t.label_field, max_train_rows=t.max_train_rows,
                         seed=cfg.teacher.seed)
        state["data"] = data
        return {"train_rows": len(data.train), "dev_rows": len(data.dev), "num_labels": data.num_labels,
                "checksums": data.checksums, "sources": data.sources}

    def teacher_stage() -> dict:
        from eibert.teacher import finetune_teacher

        hp = cfg.teacher.model_dump(exclude={"model"})
        res = finetune_teacher(cfg.teacher.model, state["data"], cache_dir=str(cfg.cache_dir), hp=hp,
                               max_seq_len=cfg.task.max_seq_len, progress=not quiet)
        return res.to_json()

    results = []
    for name, fn in (("data", data_stage), ("teacher", teacher_stage)):
        res = run_stage(name, "", fn, errors_dir)
        _store_stage(store, run_id, res)
        results.append(res)
        _say(f"  {name:8s} {res.status:7s} {res.wall_s:7.1f}s" + (f"  {res.error}" if res.error else ""), quiet)
        if not res.ok:
            break

    data = state.get("data")
    with store.transaction() as tx:
        tx.add_provenance(run_id, "", git_sha=prov["git_sha"], git_dirty=prov["git_dirty"], packages=prov["packages"],
                          host=prov["host"], data={**(data.sources if data else {}), **{f"sha256:{k}": v for k, v in (data.checksums if data else {}).items()}},
                          seeds={"teacher": cfg.teacher.seed, "distill": cfg.compress.distill.seed},
                          extra={"config_path": str(config_path)})
        teacher = next((r for r in results if r.stage == "teacher" and r.ok), None)
        if teacher:
            tx.add_measurement(run_id, "", subject="teacher", device="host", runtime="torch",
                               accuracy=teacher.output["dev_accuracy"], n=teacher.output["dev_n"],
                               metrics={"data_sha256": data.checksums["dev"], "model_dir": teacher.output["model_dir"]})
    failed = [r for r in results if not r.ok]
    store.finish_run(run_id, "failed" if failed else "done", {"stages": len(results), "failed": len(failed)})
    report = write_summary(store, run_id, Path(cfg.results.reports_dir))
    _say(f"report: {report}", quiet)
    return run_id
