"""The engine's typed state: what a node carries (Payload), what a stage runs with (RunContext), where a node
stands (NodeState) and whether it can start (Readiness).

    Payload(config=cfg, device="pi", runtime="tvm", target="arm64-cortex-a72")
    RunContext(errors_dir=Path("reports/r1/errors"), num_cpus=2, device="pi", device_spec=spec)
"""

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Payload:
    """What a node's stage needs besides its inputs' records."""

    config: Any  # the variant's ExperimentConfig (on another Ray node: with its inputs' local paths)
    device: str | None = None  # device stages: the device asked for (the pool may lease a sibling)
    runtime: str | None = None
    target: str | None = None  # TVM target: builds, and TVM measurements
    subject: str | None = None  # a measurement of the reference stage's model (the teacher), not of the variant's
    pin: str | None = None  # a Ray custom resource the node must run on (a build next to its devices)


@dataclass(frozen=True)
class RunContext:
    """What the scheduler and executor give a stage when it runs."""

    errors_dir: Path | None = None  # tracebacks go here
    quiet: bool = False  # no progress bars
    num_cpus: int = 1  # the threads it may use
    device: str | None = None  # the leased device and its inventory entry (device stages)
    device_spec: Any = None
    travel: bool = False  # Ray without a shared disk: inputs arrive by content
    sources: dict | None = None  # those inputs' names as the user gave them
    model_ref: str | None = None  # the teacher as the user named it


class NodeState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # an input failed

    @property
    def finished(self) -> bool:
        return self is not NodeState.RUNNING

    @property
    def broken(self) -> bool:
        """Its consumers cannot run."""
        return self in (NodeState.FAILED, NodeState.SKIPPED)


class Readiness(enum.Enum):
    GO = "go"
    WAIT = "wait"
    BLOCKED = "blocked"  # an input failed or was skipped
