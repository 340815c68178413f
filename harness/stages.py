"""Stage contract: each stage takes its inputs and returns one `StageResult` with an `error` field.

    res = run_stage("teacher", "", lambda: {"dev_accuracy": 0.9}, errors_dir=Path("reports/r1/errors"))
    res.ok, res.output, res.error

A stage that raises becomes a failed record (kind: `variant` for a user or model problem,
`infrastructure` otherwise) with its traceback written beside the run's report; the sweep goes on.
"""

import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from eibutil import UserError, atomic_write_text


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
            tb_path = str(atomic_write_text(Path(errors_dir) / f"{variant_id or 'shared'}-{stage}{'-' + tag if tag else ''}.txt", traceback.format_exc()))
        kind = "variant" if isinstance(e, (UserError, ValueError)) else getattr(e, "error_kind", "infrastructure")
        return StageResult(stage, variant_id, "failed", {}, f"{type(e).__name__}: {e}", kind, time.perf_counter() - t0, None, tb_path)
    status = "cached" if out.get("cache_hit") else "ok"
    return StageResult(stage, variant_id, status, out, None, None, time.perf_counter() - t0, out.get("cache_key"))
