"""The records the harness's own stages return (eibert.cached_stages has the compression ones).

Each is a dataclass with `to_json`/`from_json` (eibutil.records): what a stage returns is what the
store keeps in its row's `output`, and `Record.from_json(row["output"])` gives it back; run facts the
harness adds (node key, Ray node, attempts, cache hit) ride in `extra`.
"""

from dataclasses import dataclass, field

from eibutil.records import Record


@dataclass
class TeacherRecord(Record):
    model_dir: str
    dev_accuracy: float
    dev_n: int
    train_rows: int
    cache_key: str
    model_ref: str
    data_checksums: dict
    data_sources: dict
    dev_rows: int
    steps: int = 0
    train_s: float = 0.0
    selection_accuracy: float | None = None
    selection_n: int = 0
    dev_correct: str | None = None
    cache_hit: bool = False
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class BuildRecord(Record):
    lib: str
    key: str
    lib_sha256: str | None = None
    lib_bytes: int | None = None
    cache_hit: bool = False
    extra: dict = field(default_factory=dict)  # build time, tuning facts, target (compiler.build's record)


@dataclass
class MeasureRecord(Record):
    device: str
    runtime: str
    accuracy: float | None
    n: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    verdict: str
    verdict_reason: str
    target: str | None = None
    size_bytes: int | None = None
    peak_rss_bytes: int | None = None
    samples: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    predictions: list = field(default_factory=list)
    requested_device: str | None = None
    cache_hit: bool = False
    cache_key: str | None = None
    extra: dict = field(default_factory=dict)
