"""Loading an experiment config: YAML in, a validated `ExperimentConfig` out, its paths resolved and its files,
targets and devices checked.

    from harness.config.load import load_config
    cfg = load_config("configs/quickstart.yaml")

Relative paths are resolved against the config file's folder; a path the config leaves out takes the CLI's
default, relative to the working directory. Every problem is one `ConfigError` line naming the file and the key.
Importing this module imports none of torch, tvm or ray.
"""

from pathlib import Path

from pydantic import ValidationError

from eibutil import ConfigError, load_yaml, validation_error
from harness.config.schema import ExperimentConfig


def _teacher_path(model: str, base: Path) -> str:
    """A teacher folder named relative to the config's folder becomes absolute; "bundled" and hub ids stay."""
    if model == "bundled":
        return model
    p = Path(model).expanduser()
    if p.is_absolute():
        return str(p)
    if model.startswith((".", "~")) or (base / p).exists():
        return str((base / p).resolve())
    return model  # a Hugging Face id


def _resolve_paths(cfg: ExperimentConfig, base: Path) -> ExperimentConfig:
    """One rule: a path the config writes is relative to its folder (`base`); a path it leaves out takes the
    CLI's default, relative to the working directory (so `eib runs`, `eib report` and `eib measure` find it)."""

    def absolute(p: Path | None, written: bool = True) -> Path | None:
        return None if p is None else (p if p.is_absolute() else ((base if written else Path.cwd()) / p)).resolve()

    res_set = cfg.results.model_fields_set if "results" in cfg.model_fields_set else set()
    task = cfg.task.model_copy(update={"train_file": absolute(cfg.task.train_file), "dev_file": absolute(cfg.task.dev_file)})
    db = cfg.results.database
    if "://" not in db:
        db = str(absolute(Path(db), "database" in res_set))
    results = cfg.results.model_copy(update={"database": db,
                                             "reports_dir": absolute(cfg.results.reports_dir, "reports_dir" in res_set)})
    return cfg.model_copy(
        update={
            "task": task,
            "teacher": cfg.teacher.model_copy(update={"model": _teacher_path(cfg.teacher.model, base)}),
            "results": results,
            "inventory": absolute(cfg.inventory, "inventory" in cfg.model_fields_set),
            "cache_dir": absolute(cfg.cache_dir, "cache_dir" in cfg.model_fields_set),
        }
    )


def _check_files(cfg: ExperimentConfig, file: str) -> None:
    for key in ("train_file", "dev_file"):
        p = getattr(cfg.task, key)
        if p is not None and p.suffix.lower() not in (".tsv", ".csv", ".json", ".jsonl", ".parquet"):
            raise ConfigError(file, f"task.{key}",
                              f"unsupported format {p.suffix!r}; allowed: .tsv, .csv, .json, .jsonl, .parquet")
        if p is not None and cfg.task.source == "files" and not p.is_file():
            raise ConfigError(file, f"task.{key}", f"file not found: {p}")


def _check_devices(cfg: ExperimentConfig, file: str) -> None:
    from devices.inventory import TARGETS, load_inventory

    for i, t in enumerate(cfg.targets):
        if t not in TARGETS:
            raise ConfigError(file, f"targets[{i}]", f"unknown target {t!r}; allowed: {', '.join(TARGETS)}")
    if not cfg.inventory.is_file():
        raise ConfigError(file, "inventory", f"inventory file not found: {cfg.inventory}")
    inv = load_inventory(cfg.inventory)
    for i, d in enumerate(cfg.devices):
        if d not in inv.devices:
            raise ConfigError(file, f"devices[{i}]", f"unknown device {d!r}; {cfg.inventory.name} has: {', '.join(inv.names())}")


def validate_config(raw: dict, file: str | Path, base: Path | None = None) -> ExperimentConfig:
    """Validate a raw mapping as an experiment config; `base` resolves relative paths."""
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise validation_error(file, e, ExperimentConfig) from None
    cfg = _resolve_paths(cfg, base or Path(file).resolve().parent)
    _check_files(cfg, str(file))
    _check_devices(cfg, str(file))
    return cfg


def load_raw(path: str | Path) -> dict:
    return load_yaml(path, what="config file")


def load_config(path: str | Path) -> ExperimentConfig:
    """Load and validate an experiment config; raises `ConfigError` with file and key on any problem."""
    return validate_config(load_raw(path), path)


def load_config_file(path) -> tuple["ExperimentConfig", dict]:
    """(validated config, raw mapping) of a config file; user mistakes raise ConfigError (one line)."""
    raw = load_raw(path)
    return validate_config(raw, path), raw
