"""The experiment config's sections: typed, validated objects (loading a file: harness/config/load.py).

    from harness.config.schema import ExperimentConfig, StudentConfig
    cfg.teacher.epochs, cfg.compress.vocab.size

Every section forbids unknown keys; every bad value becomes one `ConfigError` line that names the
file, the dotted key and what is allowed (exit code 2 from the CLI). Importing this module imports none of
torch, tvm or ray.
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from eibutil.files import check_ray_resource
from harness.config.sections import (  # the compression sections, re-exported: the whole schema is one import
    AugmentConfig,
    CompressConfig,
    DistillConfig,
    PhaseConfig,
    QuantConfig,
    Section,
    SelectionConfig,
    StudentConfig,
    TaskConfig,
    TeacherConfig,
    VocabConfig,
)

__all__ = ["AugmentConfig", "CompressConfig", "DistillConfig", "PhaseConfig", "QuantConfig", "SelectionConfig",
           "StudentConfig", "TaskConfig", "TeacherConfig", "VocabConfig", "MeasureConfig", "ResultsConfig", "VariantEntry",
           "SweepConfig", "ClusterConfig", "ExperimentConfig", "DEFAULT_DATABASE", "DEFAULT_REPORTS_DIR",
           "DEFAULT_CACHE_DIR", "DEFAULT_INVENTORY"]


class MeasureConfig(Section):
    """Run rules for on-device measurement (MLPerf SingleStream style)."""

    runtimes: Annotated[list[Literal["onnxruntime", "tvm", "openvino"]], Field(min_length=1)] = ["onnxruntime"]
    seq_len: Annotated[int, Field(ge=8, le=512)] = 64
    warmup: Annotated[int, Field(ge=0, le=10_000)] = 10
    min_count: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    min_duration_s: Annotated[float, Field(ge=0, le=3600)] = 5.0
    max_duration_s: Annotated[float, Field(gt=0, le=36_000)] = 60.0
    rows: Annotated[int, Field(ge=1)] | None = None  # dev rows run on the device for accuracy (None: all)
    trials: Annotated[int, Field(ge=0, le=100_000)] = 0  # MetaSchedule tuning trials for TVM builds (0: untuned)
    reuse: bool = True  # reuse a stored measurement of the same artifact, device and rules (nightly runs set false)
    end_to_end: bool = True  # also time text -> label per sentence on the device, tokeniser included
    profile: bool = False  # also record the time per operator (after the timed pass; `eib measure --profile`)
    teacher: bool = True  # measure the teacher too (onnxruntime, fp32) on every device: the reports' reference

    @model_validator(mode="after")
    def _durations(self) -> "MeasureConfig":
        if self.max_duration_s < self.min_duration_s:
            raise ValueError(f"max_duration_s ({self.max_duration_s}) is below min_duration_s ({self.min_duration_s})")
        return self


# Where things go when a config does not say: relative to the working directory, exactly as the CLI's
# own defaults (`--db`, `--reports-dir`, `--cache-dir`, `--inventory` use these). Paths a config does
# write are relative to the config file's folder.
DEFAULT_DATABASE = "results/eib.sqlite"
DEFAULT_REPORTS_DIR = "reports"
DEFAULT_CACHE_DIR = ".eib-cache"
DEFAULT_INVENTORY = "inventory.yaml"


class ResultsConfig(Section):
    database: Annotated[str, Field(min_length=1)] = DEFAULT_DATABASE  # a file path (SQLite) or any SQLAlchemy URL
    reports_dir: Path = Path(DEFAULT_REPORTS_DIR)


class VariantEntry(Section):
    name: str | None = None
    set: Annotated[dict[str, Any], Field(min_length=1)]


class SweepConfig(Section):
    """Sweep axes over any config key by dotted path: a grid, an explicit list, or a named preset."""

    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    variants: list[VariantEntry] = []
    ablation: Literal["eibert"] | None = None


class ClusterConfig(Section):
    """Where stages run on a Ray cluster: `resources` maps a stage name to a custom resource that only the
    nodes meant for it have (`ray start --resources '{"gpu-box": 1}'`). Devices pin themselves in the
    inventory (`ray_resource`)."""

    resources: dict[str, Annotated[str, Field(min_length=1, max_length=128)]] = {}

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict) -> dict:  # its stage names are checked against the registry (harness.config.variants)
        for name in v.values():
            check_ray_resource(name)
        return v


class ExperimentConfig(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
    task: TaskConfig = TaskConfig()
    teacher: TeacherConfig = TeacherConfig()
    compress: CompressConfig = CompressConfig()
    targets: Annotated[list[str], Field(min_length=1)] = ["x86-64"]
    devices: Annotated[list[str], Field(min_length=1)] = ["local"]
    inventory: Path = Path(DEFAULT_INVENTORY)
    measure: MeasureConfig = MeasureConfig()
    results: ResultsConfig = ResultsConfig()
    cache_dir: Path = Path(DEFAULT_CACHE_DIR)
    sweep: SweepConfig = SweepConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _positions(self) -> "ExperimentConfig":
        mp, n = self.compress.student.max_positions, self.task.max_seq_len
        if mp is not None and mp < n:
            raise ValueError(f"compress.student.max_positions ({mp}) is below task.max_seq_len ({n})")
        if self.measure.seq_len > max(mp or n, 8):
            raise ValueError(f"measure.seq_len ({self.measure.seq_len}) exceeds the student's positions ({mp or n}: "
                             "task.max_seq_len, or compress.student.max_positions when set)")
        return self

    @field_validator("targets", "devices")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"listed twice: {', '.join(dup)}")
        return v
