"""The main job: `eib run CONFIG`, from config to results database and report.

    from harness.config.load import load_config
    from harness.engine.pipeline import run_experiment
    run_id = run_experiment(load_config("configs/quickstart.yaml"), "configs/quickstart.yaml")

Stages form a graph (harness/engine/graph.py): teacher -> importance -> student -> artifact -> build (TVM,
per target) -> measure (per device and runtime); work shared by several variants is one node. The
scheduler (harness/engine/scheduler.py) runs it on Ray or inline; each node returns a `StageResult`, a failure
is stored as a row with its error and the sweep goes on with what it does not touch. Every expensive
step is cached by content in `cache_dir`, and `resume` continues a run that was cut short.
"""

import logging
import time
from pathlib import Path

from eibutil import ConfigError, UserError, sha256_file
from harness.config.schema import ExperimentConfig
from harness.config.variants import expand
from harness.results.provenance import collect
from harness.results.store import Store, public_config
from harness.stages import registry as reg
from harness.stages.registry import REGISTRY
from harness.stages.settings import load_data

log = logging.getLogger(__name__)


def _measurement_row(node, res) -> dict | None:
    """The `measurements` row a finished node contributes, if any (its stage's `row` in the registry)."""
    row = REGISTRY[node.stage].row
    return row(node, res.output) if row else None


def until_stages(until: str) -> tuple[str, ...]:
    """The stages a command runs: `compress` the model chain, `measure` everything."""
    return reg.COMPRESS if until == "compress" else reg.ORDER


def completed_nodes(store: Store, run_id: str, rerun_failed: bool) -> tuple[dict[str, dict], set[str]]:
    """(outputs of the nodes a run finished, keys of nodes that failed there) from its stored rows."""
    done: dict[str, dict] = {}
    failed: set[str] = set()
    for r in store.stage_results(run_id):
        key = r.get("node_key")
        if not key:
            continue
        if r["status"] in ("ok", "cached"):
            done[key] = r["output"]
        elif r["status"] in ("failed", "skipped"):  # a "retried" row is an attempt that ran again
            failed.add(key)
    return done, failed - set(done)


def check_stage_names(cfg, file: str) -> None:
    """`cluster.resources` names stages of the registry."""
    bad = sorted(set(cfg.cluster.resources) - set(reg.ORDER))
    if bad:
        raise ConfigError(str(file), "cluster.resources", f"unknown stage {bad[0]!r}; stages: {', '.join(reg.ORDER)}")


def preflight(variants, config_path) -> None:
    """What the files can tell is checked before a run row exists: the teacher folder, the vocabulary size
    against the teacher's, and the data (columns, rows, at least two classes in train)."""
    import json

    from eibert.hub import resolve_model

    file, seen = str(config_path), set()
    for v in variants:
        cfg = v.config
        try:
            path = Path(resolve_model(cfg.teacher.model))
        except UserError as e:
            raise ConfigError(file, "teacher.model", str(e)) from None
        size = cfg.compress.vocab.size
        if path.is_dir() and size:
            have = json.loads((path / "config.json").read_text()).get("vocab_size")
            if have and size > have:
                raise ConfigError(file, "compress.vocab.size", f"{size} is larger than the teacher's vocabulary ({have} tokens)")
        key = cfg.task.model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        data = load_data(cfg)
        for split, ds in (("train", data.train), ("dev", data.dev)):
            if len(ds) == 0:
                raise ConfigError(file, "task", f"the {split} split has no rows")
        if len(set(data.train["label"])) < 2:
            raise ConfigError(file, "task", "the train split has one class only; training needs at least two")


def _open_run(store: Store, cfg, config_path, variants, nodes, resume, rerun_failed) -> tuple[str, list, dict]:
    """The run row (new, or the one `resume` names, reopened) and the nodes still to run."""
    resumed: dict[str, dict] = {}
    if not resume:
        run_id = store.create_run(cfg.name, public_config(cfg.model_dump(mode="json")), str(config_path))
        with store.transaction() as tx:
            for v in variants:
                tx.add_variant(run_id, v.variant_id, v.name, v.overrides, public_config(v.config.model_dump(mode="json")))
        return run_id, nodes, resumed
    prior = store.run(resume)
    if prior is None:
        raise UserError(f"--resume {resume}: no such run in {store.url} (see `eib runs`)")
    if prior["name"] != cfg.name:
        raise UserError(f"--resume {resume}: that run is of config {prior['name']!r}, not {cfg.name!r}")
    resumed, failed = completed_nodes(store, resume, rerun_failed)
    if not rerun_failed:  # failures stand; their rows are already there
        nodes = [n for n in nodes if n.key not in failed or n.key in resumed]
        nodes = [n for n in nodes if not (set(n.deps) & failed)]
    store.reopen_run(resume)
    return resume, nodes, resumed


def run_experiment(cfg: ExperimentConfig, config_path: str | Path, raw: dict | None = None, *,
                   until: str = "measure", executor: str = "ray", address: str | None = None, resume: str | None = None,
                   rerun_failed: bool = False) -> str:
    """Run every variant of `cfg` through the stage graph (up to `until`), store the rows, write the
    report; returns the run id. `resume` continues that run: completed stages are not run again, and
    failed ones only with `rerun_failed`."""
    from devices.inventory import load_inventory
    from harness.engine.devicepool import DevicePool
    from harness.engine.driver import driver_signals, reap_dead_drivers
    from harness.engine.executors import make_executor
    from harness.engine.graph import build_graph
    from harness.engine.scheduler import Scheduler, print_summary

    check_stage_names(cfg, config_path)
    variants = expand(cfg, config_path, raw)
    inventory = load_inventory(cfg.inventory).devices
    nodes = [n for n in build_graph(variants, inventory) if n.stage in until_stages(until)]
    preflight(variants, config_path)
    store = Store(cfg.results.database)
    for dead in reap_dead_drivers(store):
        log.info(f"run {dead}: its driver died; marked failed, its device leases freed (resume it with --resume {dead})")
    t_setup = time.perf_counter()
    ex = make_executor(executor, address)  # before any run row: an unreachable cluster leaves nothing behind
    setup_s = time.perf_counter() - t_setup
    try:
        run_id, nodes, resumed = _open_run(store, cfg, config_path, variants, nodes, resume, rerun_failed)
    except BaseException:
        ex.close()
        raise
    pool = None
    try:
        log.info(f"run {run_id}: {len(variants)} variant(s), {len(nodes)} stage(s) on the {ex.name} executor, "
                 f"database {store.url}")
        pool = DevicePool(store, run_id, inventory)
        if resume:
            pool.release_run(run_id)  # the leases of the driver that died
        errors_dir = Path(cfg.results.reports_dir) / run_id / "errors"
        t_close = 0.0
        try:
            with driver_signals():  # SIGTERM/SIGHUP end the driver as Ctrl-C does: through the cleanup below
                counts = Scheduler(nodes, ex, store, run_id, pool, inventory, errors_dir,
                                   record_extra=_measurement_row).run(resumed)
        finally:
            t = time.perf_counter()
            ex.close()
            t_close = time.perf_counter() - t
    except BaseException as e:  # a driver that dies leaves the run failed (resumable with --resume), never "running"
        store.finish_run(run_id, "failed", {"error": f"{type(e).__name__}: {str(e)[:200]}"})
        if pool is not None:
            pool.release_run(run_id)  # and holds no device
        raise
    _provenance(store, run_id, cfg, config_path, variants)
    rows = store.stage_results(run_id)
    failed = [r for r in rows if r["status"] in ("failed", "skipped")
              and r["node_key"] not in {x["node_key"] for x in rows if x["status"] in ("ok", "cached")}]
    setup_s += getattr(ex, "setup_s", 0.0)  # a Ray cluster started with the first stage
    counts.update(variants=len(variants), stages=len(nodes), executor=ex.name, executor_setup_s=round(setup_s + t_close, 2))
    store.finish_run(run_id, "failed" if failed else "done", counts)
    print_summary(counts)
    _print_failures(store, run_id, failed)
    return run_id


def _print_failures(store: Store, run_id: str, failed: list[dict]) -> None:
    """Why the run failed, one warning per failed stage (stderr): shown even with --quiet."""
    names = {v["variant_id"]: v["name"] for v in store.variants(run_id)}
    for r in failed:
        if r["status"] == "failed":
            where = (r["output"] or {}).get("device")
            log.warning(f"failed: {r['stage']} {names.get(r['variant_id'], 'shared')}{' on ' + where if where else ''}: "
                        f"{(r['error'] or '').splitlines()[0][:300] if r['error'] else ''}")
    skipped = sum(r["status"] == "skipped" for r in failed)
    if skipped:
        log.warning(f"skipped: {skipped} stage(s) downstream of a failure (`eib report {run_id}` lists them)")


def _provenance(store: Store, run_id: str, cfg: ExperimentConfig, config_path, variants) -> None:
    """One row for the run, and one per variant with its artifact, data, seeds and tuning databases."""
    prov = collect()
    rows = store.stage_results(run_id)
    teacher = next((r["output"] for r in rows if r["stage"] == reg.ROLES.root and r["status"] in ("ok", "cached")), None)
    checksums = {src: teacher["data_checksums"][k] for k, src in teacher["data_sources"].items()} if teacher else {}
    with store.transaction() as tx:
        tx.add_provenance(run_id, "", git_sha=prov["git_sha"], git_dirty=prov["git_dirty"], packages=prov["packages"],
                          host=prov["host"], data=checksums,
                          seeds={"teacher": cfg.teacher.seed, "distill": cfg.compress.distill.seed},
                          extra={"config_path": str(config_path)})
        for v in variants:
            mine = [r for r in rows if r["variant_id"] == v.variant_id and r["status"] in ("ok", "cached")]
            art = next((r["output"] for r in mine if r["stage"] == reg.ROLES.model), None)
            builds = {r["output"].get("key"): r["output"].get("db_sha256") for r in mine if r["stage"] == reg.ROLES.build}
            devices = {r["output"]["device"]: r["output"]["metrics"]["device_facts"] for r in mine if REGISTRY[r["stage"]].device}
            artifact_sha = None
            if art:
                man = Path(art["artifact_dir"]) / "manifest.json"
                artifact_sha = sha256_file(man) if man.exists() else None
            tx.add_provenance(run_id, v.variant_id, git_sha=prov["git_sha"], git_dirty=prov["git_dirty"],
                              packages=prov["packages"],
                              data=checksums, seeds={"teacher": v.config.teacher.seed, "distill": v.config.compress.distill.seed},
                              extra={"artifact_manifest_sha256": artifact_sha, "tuning_db_sha256": builds,
                                     "device_facts": devices})
