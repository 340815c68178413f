"""The stage contract: a stage takes its inputs' records and returns one `StageResult` with an `error`
field; `Stage` is what the registry knows of each stage.

    res = run_stage("teacher", "", lambda: {"dev_accuracy": 0.9}, errors_dir=Path("reports/r1/errors"))
    res.ok, res.output, res.error

A stage that raises becomes a failed record (kind: `variant` for a user or model problem,
`infrastructure` otherwise) with its traceback written beside the run's report; the sweep goes on.
"""

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eibutil import UserError, atomic_write_text


class StageError(RuntimeError):
    """A stage failure with its kind (variant | device | infrastructure) for the result row."""

    def __init__(self, message: str, error_kind: str, failure: str | None = None):
        super().__init__(message)
        self.error_kind, self.failure = error_kind, failure


@dataclass(frozen=True)
class Stage:
    """One stage as the scheduler, graph, pipeline and reports see it (harness.stages.registry lists them)."""

    name: str
    run: Callable  # (node, inputs: {stage name: input record}, ctx) -> output record
    inputs: tuple[str, ...]  # the stages whose records it may take (measure: an artifact and its build, or the teacher)
    output: type  # its record type (eibutil.records.Record): round-trips through the store's JSON
    cpus: int | str = 1  # "all": every CPU of the executor (it parallelises inside)
    device: bool = False  # needs a device lease (runs where the device is reachable)
    row: Callable | None = None  # (node, output JSON) -> the `measurements` row it contributes, or None
    paths: Callable = lambda out: []  # (output JSON) -> the folders/files it names: they travel between nodes
    sections: tuple[str, ...] = ()  # config paths its output depends on besides its inputs (whose keys are in its key)
    when: tuple[tuple[str, str], ...] = ()  # (section, condition path): that section counts only where the condition holds
    version: int = 1  # in its key: bump when its output changes for the same inputs
    fanout: str | None = None  # None: once per model chain; "target": per TVM target; "device": per device and runtime
    reference: str | None = None  # (fanout "device") the input also measured alone on every device, as the reference


@dataclass
class StageResult:
    stage: str
    variant_id: str
    status: str = "ok"  # ok | cached | failed
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None  # variant | device | infrastructure
    wall_s: float = 0.0
    cache_key: str | None = None
    traceback_path: str | None = None
    attempts: int = 1  # how many times an executor started it (a Ray worker that died is one more)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return asdict(self)


def run_stage(stage: str, variant_id: str, fn: Callable[[], dict], errors_dir: Path | None = None, tag: str = "") -> StageResult:
    """Run `fn` (which returns the stage's output dict) and wrap whatever happens in a `StageResult`."""
    t0 = time.perf_counter()
    try:
        out = fn() or {}
    except Exception as e:  # the stage boundary: any failure becomes a row, never a stopped sweep
        tb_path = None
        if errors_dir is not None:
            tb_path = str(atomic_write_text(Path(errors_dir) / f"{variant_id or 'shared'}-{stage}{'-' + tag if tag else ''}.txt",
                                            traceback.format_exc()))
        kind = "variant" if isinstance(e, (UserError, ValueError)) else getattr(e, "error_kind", "infrastructure")
        return StageResult(stage, variant_id, "failed", {}, f"{type(e).__name__}: {e}", kind, time.perf_counter() - t0, None,
                           tb_path)
    status = "cached" if out.get("cache_hit") else "ok"
    return StageResult(stage, variant_id, status, out, None, None, time.perf_counter() - t0, out.get("cache_key"))
