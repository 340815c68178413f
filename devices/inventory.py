"""The device inventory: passive facts about each device, validated like the experiment config.

    from devices.inventory import load_inventory
    inv = load_inventory("inventory.yaml")
    inv.devices["local"].transport, inv.names()

Secrets are referenced, never stored: a key file path, the ssh-agent, or the name of an environment
variable that holds a key path. Errors name the file, the device and the key (exit code 2).
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.targets import TARGETS
from eibutil import ConfigError, load_yaml, validation_error
from eibutil.files import check_ray_resource

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def looks_like_key_text(value: str) -> bool:
    """A private key pasted where the path of a key file belongs (never to be echoed)."""
    return "\n" in value or "PRIVATE KEY" in value or len(value) > 1024


class DeviceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["local", "ssh", "fake"]  # fake: this machine with injected faults (tests of error paths)
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: str | None = None
    key_file: Path | None = None  # a private key path; or use_agent; or key_env
    key_env: str | None = None  # name of an environment variable holding the key path
    use_agent: bool = False
    known_hosts: Path | None = None  # default: ~/.ssh/known_hosts
    accept_unknown_host: bool = False  # explicit opt-in; unknown host keys are refused otherwise
    arch: Literal["x86_64", "aarch64"] = "x86_64"
    target: Literal[tuple(TARGETS)] = "x86-64"  # type: ignore[valid-type]
    runtimes: Annotated[list[Literal["onnxruntime", "tvm", "openvino"]], Field(min_length=1)] = ["onnxruntime", "tvm"]
    python: str = "python3"
    workdir: str = "/tmp/eib"
    tags: list[str] = []
    max_jobs: Annotated[int, Field(ge=1, le=64)] = 1
    emulated: bool = False  # latency from an emulated CPU is never compared with native numbers
    shares_host_cpus: bool = False  # an ssh device on this machine's CPUs (a test-farm namespace): measured alone, like local
    threads: Annotated[int, Field(ge=1, le=256)] | None = None  # runtime threads; None: the device's cores
    connect_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    upload_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 120.0
    run_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    link_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0  # TCP_USER_TIMEOUT: a cut link fails after this
    ray_resource: str | None = None  # a custom resource of the Ray node that reaches this device: its measurements run there

    @field_validator("ray_resource")
    @classmethod
    def _resource(cls, v: str | None) -> str | None:
        return None if v is None else check_ray_resource(v)
    # transport fake only: [{on: probe|prepare|put|run|cleanup, error: unreachable|timeout|killed|auth|failed, times: 1}]
    faults: list[dict[str, str | int]] = []

    @property
    def lease_s(self) -> float:
        """How long a measurement may hold the device: connect, then two deployments and runs (the model and
        the null model), each within its timeouts, and a margin; the pool's lease is never shorter."""
        return self.connect_timeout_s + 2 * (self.upload_timeout_s + self.run_timeout_s + 60) + 120

    @field_validator("key_file", mode="before")
    @classmethod
    def _a_path_not_a_key(cls, v):
        if isinstance(v, str) and looks_like_key_text(v):
            raise ValueError("must be the path of a private key file, not the key itself (its text is not shown)")
        return v

    @model_validator(mode="after")
    def _ssh_needs(self) -> "DeviceSpec":
        if self.transport == "ssh":
            if not self.host:
                raise ValueError("transport 'ssh' needs host")
            if not self.user:
                raise ValueError("transport 'ssh' needs user")
            if not (self.key_file or self.key_env or self.use_agent):
                raise ValueError("transport 'ssh' needs key_file, key_env or use_agent: true")
        if TARGETS[self.target].arch != self.arch:
            raise ValueError(f"target {self.target!r} builds for {TARGETS[self.target].arch}, not arch {self.arch!r}")
        return self


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: dict[Annotated[str, Field(pattern=NAME, max_length=64)], DeviceSpec]

    def names(self) -> list[str]:
        return list(self.devices)


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory file; raises `ConfigError` naming the file, device and key."""
    raw = load_yaml(path, what="inventory file")
    try:
        inv = Inventory.model_validate(raw)
    except ValidationError as e:
        raise validation_error(path, e, Inventory) from None
    base = Path(path).resolve().parent
    fixed = {}
    for name, d in inv.devices.items():
        upd = {k: (base / v.expanduser()).resolve() for k in ("key_file", "known_hosts") if (v := getattr(d, k)) is not None}
        if "key_file" in upd and not upd["key_file"].is_file():
            raise ConfigError(str(path), f"devices.{name}.key_file", f"no such key file: {upd['key_file']}")
        fixed[name] = d.model_copy(update=upd)
    return inv.model_copy(update={"devices": fixed})
