"""Named TVM targets: the registry the inventory refers to (`target: arm64-cortex-a72`).

    from devices.targets import TARGETS
    TARGETS["arm64-cortex-a72"].tvm_target(num_cores=4)   # a JSON dict for tvm.target.Target

Targets are plain dicts (TVM takes JSON dicts, not strings). `mcpu: native` is broken in this TVM, so
`x86-64-host` asks LLVM for this machine's CPU at build time; it is only right for the local device.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TargetSpec:
    name: str
    arch: str  # x86_64 | aarch64, as `uname -m` says
    mtriple: str
    mcpu: str | None = None  # None: LLVM's generic CPU for the triple; "host": ask LLVM at build time
    mattr: tuple[str, ...] = ()
    cc: str | None = None  # the cross compiler that links the shared library; None: the host's
    note: str = ""
    extra: dict = field(default_factory=dict)

    def tvm_target(self, num_cores: int | None = None, host_cpu: str | None = None, features: tuple[str, ...] = ()) -> dict:
        """`features`: LLVM features read from the CPU's flags (devices.cpufeatures), added to `mattr`."""
        t: dict = {"kind": "llvm", "mtriple": self.mtriple}
        cpu = host_cpu if self.mcpu == "host" else self.mcpu
        if cpu:
            t["mcpu"] = cpu
        mattr = sorted(set(self.mattr) | set(features))
        if mattr:
            t["mattr"] = mattr
        if num_cores:
            t["num-cores"] = int(num_cores)  # MetaSchedule needs it
        return t


TARGETS: dict[str, TargetSpec] = {t.name: t for t in (
    TargetSpec("x86-64", "x86_64", "x86_64-linux-gnu", "x86-64-v3", note="AVX2-class x86 (Haswell and later)"),
    TargetSpec("x86-64-host", "x86_64", "x86_64-linux-gnu", "host", note="this machine's own CPU (local device)"),
    TargetSpec("arm64-generic", "aarch64", "aarch64-linux-gnu", None, ("+neon",), "aarch64-linux-gnu-gcc", "any ARMv8-A"),
    TargetSpec("arm64-cortex-a53", "aarch64", "aarch64-linux-gnu", "cortex-a53", ("+neon",), "aarch64-linux-gnu-gcc",
               "Raspberry Pi 3, cheap boards"),
    TargetSpec("arm64-cortex-a72", "aarch64", "aarch64-linux-gnu", "cortex-a72", ("+neon",), "aarch64-linux-gnu-gcc",
               "Raspberry Pi 4"),
    TargetSpec("arm64-cortex-a76", "aarch64", "aarch64-linux-gnu", "cortex-a76", ("+neon", "+dotprod"), "aarch64-linux-gnu-gcc",
               "phone-class big core, Raspberry Pi 5"),
)}
