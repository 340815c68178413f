"""The arm64 Debian root filesystem that emulated ARM devices run in, built once and cached.

    from devices.testfarm.rootfs import ensure_rootfs
    root = ensure_rootfs()          # /var/lib/eib-testfarm/rootfs-arm64-<key>, extracted from the cache

Stage 1 of debootstrap runs natively, stage 2 under qemu-aarch64 through binfmt; then a venv with the
aarch64 wheels of numpy, onnxruntime and apache-tvm is installed inside. The result is kept as a zstd
tarball (`EIB_FARM_CACHE`, default /var/cache/eib-testfarm) and extracted once per machine. Needs root.
"""

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devices.testfarm.hostenv import FARM_UID, FarmError, run
from eibutil.files import content_key

log = logging.getLogger(__name__)

STATE = Path(os.environ.get("EIB_FARM_STATE", "/var/lib/eib-testfarm"))
CACHE = Path(os.environ.get("EIB_FARM_CACHE", "/var/cache/eib-testfarm"))
SUITE = "bookworm"
INCLUDE = "openssh-server,python3,python3-venv,python3-pip,procps,time,iproute2,ca-certificates,file"
# Pinned like the host: the device runs what the project builds against.
WHEELS = ("numpy==2.4.6", "onnxruntime==1.32.0", "apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1")
PLATFORM_ARGS = [
    "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
    "--abi", "cp311", "--abi", "abi3", "--abi", "none",
    "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux_2_28_aarch64",
]


def rootfs_key() -> str:
    return content_key({"suite": SUITE, "include": INCLUDE, "wheels": WHEELS, "recipe": 1})


def debian_mirror() -> str:
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.exists():
        for line in src.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "deb":
                return parts[1]
    return "http://deb.debian.org/debian"


def ensure_binfmt() -> None:
    """Register qemu-aarch64 with binfmt_misc (flags PF: it works inside chroots)."""
    mnt = Path("/proc/sys/fs/binfmt_misc")
    if not (mnt / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(mnt)])
    if not (mnt / "qemu-aarch64").exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    if not (mnt / "qemu-aarch64").exists():
        raise FarmError("qemu-aarch64 is not registered with binfmt_misc (install qemu-user-static binfmt-support)")


def _chroot(root: Path, *cmd: str, timeout_s: float = 1800) -> None:
    run(["chroot", str(root), *cmd], timeout_s=timeout_s, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})


def build_tarball(dest: Path) -> Path:
    """debootstrap + venv + wheels -> `dest` (a .tar.zst), written atomically."""
    ensure_binfmt()
    STATE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=STATE))
    root = work / "root"
    mounted: list[Path] = []
    try:
        log.info(f"testfarm: debootstrap stage 1 ({SUITE}, arm64) into {root}")
        run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(root),
             debian_mirror()],
            timeout_s=1200)
        log.info("testfarm: debootstrap stage 2 under qemu (minutes)")
        _chroot(root, "/debootstrap/debootstrap", "--second-stage")
        wheels = root / "opt" / "wheels"
        wheels.mkdir(parents=True)
        log.info("testfarm: downloading aarch64 wheels")
        run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), *PLATFORM_ARGS, *WHEELS], timeout_s=900)
        run(["mount", "-t", "proc", "proc", str(root / "proc")])
        mounted.append(root / "proc")
        run(["mount", "--bind", "/dev", str(root / "dev")])
        mounted.append(root / "dev")
        log.info("testfarm: installing the runtimes into /opt/venv under qemu")
        _chroot(root, "python3", "-m", "venv", "/opt/venv")
        _chroot(root, "/opt/venv/bin/pip", "install", "-q", "--no-index", "--find-links", "/opt/wheels", *WHEELS)
        _chroot(root, "useradd", "-m", "-u", str(FARM_UID), "-s", "/bin/bash", "farm")
        _chroot(root, "usermod", "-p", "*", "farm")
        for m in reversed(mounted):
            run(["umount", "-l", str(m)])
        mounted.clear()
        shutil.rmtree(wheels)
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        log.info(f"testfarm: packing {dest}")
        run(["tar", "-I", "zstd -T0 -3", "-C", str(root), "-cf", str(tmp), "."], timeout_s=900)
        os.replace(tmp, dest)
        return dest
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", "-l", str(m)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def ensure_rootfs() -> Path:
    """The extracted arm64 root filesystem, building or extracting it when missing."""
    key = rootfs_key()
    root = STATE / f"rootfs-arm64-{key}"
    if (root / "opt" / "venv" / "bin" / "python").exists() or (root / "opt" / "venv" / "bin" / "python").is_symlink():
        return root
    tarball = CACHE / f"rootfs-arm64-{key}.tar.zst"
    if not tarball.exists():
        build_tarball(tarball)
    ensure_binfmt()
    tmp = STATE / f".rootfs-arm64-{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.chmod(tmp, 0o755)
    run(["tar", "-I", "zstd", "-C", str(tmp), "-xf", str(tarball)], timeout_s=600)
    try:
        os.rename(tmp, root)
    except OSError:  # another process extracted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root
