"""Host-side helpers of the test farm: running commands, what the farm needs, and its one error type."""

import os
import shutil
import subprocess
from pathlib import Path

FARM_UID = 1001  # the device user `farm`, the same uid on the host and inside the arm64 root
FARM_USER = "farm"
PACKAGES = ("openssh-server", "openssh-client", "time", "iproute2", "procps", "nftables", "qemu-user-static",
            "binfmt-support", "debootstrap", "gcc-aarch64-linux-gnu", "binutils-aarch64-linux-gnu", "libc6-dev-arm64-cross",
            "zstd")


class FarmError(RuntimeError):
    """The farm could not be set up or torn down (a host command failed)."""


def run(cmd: list[str], timeout_s: float = 60, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as e:
        raise FarmError(f"{' '.join(cmd)}: timed out after {timeout_s:g} s") from e
    except FileNotFoundError as e:
        raise FarmError(f"{cmd[0]}: not installed") from e
    if check and p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        raise FarmError(f"{' '.join(cmd)}: exit {p.returncode}: {' | '.join(tail)}")
    return p


def missing_requirements(arm: bool = False) -> str | None:
    """Why the farm cannot run here, or None. Checked before anything is started."""
    if os.geteuid() != 0:
        return "the test farm needs root (network namespaces, sshd, chroot)"
    tools = ["ip", "/usr/sbin/sshd", "ssh-keygen", "nsenter", "unshare"]
    if arm:
        tools += ["debootstrap", "update-binfmts", "zstd"]
    for t in tools:
        if not (shutil.which(t) or Path(t).exists()):
            return f"{t} is missing (apt-get install {' '.join(PACKAGES)})"
    if arm and not Path("/usr/bin/qemu-aarch64-static").exists() and not shutil.which("qemu-aarch64"):
        return "qemu-aarch64 is missing (apt-get install qemu-user-static binfmt-support)"
    p = subprocess.run(["ip", "netns", "add", "eibf-probe"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"network namespaces are not available: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "eibf-probe"], capture_output=True)
    return None
