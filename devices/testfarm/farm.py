"""A farm of real SSH devices on this machine: each device is a network namespace running its own sshd;
an ARM device's sessions are chrooted into an arm64 Debian run by qemu, so every program it runs is aarch64.

    with Farm() as farm:
        farm.add("x86a")                      # 10.77.I.2, x86_64
        farm.add("arm1", arch="aarch64")      # needs the cached arm64 root filesystem
        inv = farm.write_inventory(path)      # an inventory.yaml the agent and `eib` read
        farm.cut_link("x86a"); farm.restore_link("x86a")

Traffic only goes to addresses of namespaces made here; a route `unreachable 10.77.0.0/16` goes in first
so a downed link cannot fall through to the default route. Everything started is stopped by PID and
every namespace, link and folder made is removed by `close()`. Needs root (see `missing_requirements`).
"""

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devices.testfarm.faults import FarmFaults
from devices.testfarm.hostenv import FARM_UID, FARM_USER, FarmError, missing_requirements, run
from devices.testfarm.rootfs import STATE, ensure_rootfs
from eibutil.files import content_key

log = logging.getLogger(__name__)

SUBNET = "10.77.0.0/16"
X86_WHEELS = ("numpy==2.4.6", "onnxruntime==1.32.0", "apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1")
# onnxruntime's aarch64 wheel parses /proc/cpuinfo at import and segfaults on the host's x86 one under qemu.
FAKE_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
    "cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
    "CPU part\t: 0xd0b\nCPU revision\t: 1\n\n" for i in range(2))


@dataclass
class FarmDevice:
    name: str
    index: int
    arch: str
    dir: Path
    netns: str
    veth: str
    workdir: str  # as the device's sessions see it
    host_workdir: Path  # the same folder as this machine sees it
    python: str
    proc: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"10.77.{self.index}.2"


def _ensure_x86_venv() -> Path:
    """A Python for x86 devices that the device user can read (the host's may live under /root)."""
    venv = STATE / f"venv-x86-{content_key(X86_WHEELS)}"
    py = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return py
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o755)
    shutil.rmtree(venv, ignore_errors=True)
    log.info(f"testfarm: creating the x86 device Python in {venv}")
    run(["/usr/bin/python3", "-m", "venv", str(venv)], timeout_s=300)
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *X86_WHEELS], timeout_s=900)
    (venv / ".complete").write_text("ok\n")
    return py


class Farm(FarmFaults):
    def __init__(self):
        why = missing_requirements()
        if why:
            raise FarmError(why)
        self.devices: dict[str, FarmDevice] = {}
        STATE.mkdir(parents=True, exist_ok=True)
        os.chmod(STATE, 0o755)
        self.base = Path(tempfile.mkdtemp(prefix="farm-", dir=STATE))
        os.chmod(self.base, 0o755)
        self._route_added = False
        self._ensure_route()
        self._ensure_user()
        self.client_key = self.base / "client_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "eib-testfarm", "-f", str(self.client_key)])
        self.known_hosts = self.base / "known_hosts"
        self.known_hosts.write_text("")
        (self.base / f"{FARM_USER}.authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())

    # setup ------------------------------------------------------------------------------------
    def _ensure_route(self) -> None:
        routes = run(["ip", "route", "show", "type", "unreachable"]).stdout
        if SUBNET not in routes:
            run(["ip", "route", "add", "unreachable", SUBNET])
            self._route_added = True

    def _ensure_user(self) -> None:
        p = subprocess.run(["id", "-u", FARM_USER], capture_output=True, text=True)
        if p.returncode != 0:
            run(["useradd", "-m", "-u", str(FARM_UID), "-s", "/bin/bash", FARM_USER])
        elif p.stdout.strip() != str(FARM_UID):
            raise FarmError(f"user {FARM_USER} exists with uid {p.stdout.strip()}, the farm needs {FARM_UID}")
        run(["usermod", "-p", "*", FARM_USER])  # a locked '!' password makes sshd (UsePAM no) refuse the user
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def _free_index(self) -> int:
        used = run(["ip", "-o", "-4", "addr", "show"]).stdout
        taken = {d.index for d in self.devices.values()}
        for i in range(1, 255):
            if i not in taken and f"10.77.{i}.1/" not in used:
                return i
        raise FarmError("no free 10.77.N.0/24 subnet")

    def add(self, name: str, arch: str = "x86_64") -> FarmDevice:
        """Create and start one device; returns once its sshd answers."""
        if name in self.devices:
            raise FarmError(f"device {name} exists")
        i = self._free_index()
        d = self.base / name
        d.mkdir(mode=0o755)
        if arch == "aarch64":
            workdir, python = "/home/farm/eib", "/opt/venv/bin/python"
            host_workdir = d / "upper" / "home" / "farm" / "eib"
        else:
            host_workdir = d / "work"
            host_workdir.mkdir(mode=0o700)  # the device script refuses a work dir others may write to
            os.chown(host_workdir, FARM_UID, FARM_UID)
            workdir, python = str(host_workdir), str(_ensure_x86_venv())
        dev = FarmDevice(name, i, arch, d, f"eibf{i}", f"eibv{i}", workdir, host_workdir, python)
        self.devices[name] = dev
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "ssh_host_ed25519_key")])
        pub = (d / "ssh_host_ed25519_key.pub").read_text().split()
        self._known_host(dev.address, f"{dev.address} {pub[0]} {pub[1]}\n")
        self._write_sshd_config(dev)
        self._net_up(dev)
        self.start(name)
        return dev

    def _known_host(self, address: str, line: str = "") -> None:
        """Replace the known_hosts entry of `address` (addresses are reused by later devices)."""
        kept = [ln for ln in self.known_hosts.read_text().splitlines(keepends=True) if ln.split(" ", 1)[0] != address]
        self.known_hosts.write_text("".join(kept) + line)

    def _write_sshd_config(self, dev: FarmDevice) -> None:
        lines = [
            f"ListenAddress {dev.address}", "Port 22", f"HostKey {dev.dir / 'ssh_host_ed25519_key'}",
            f"PidFile {dev.dir / 'sshd.pid'}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            f"AuthorizedKeysFile {self.base}/%u.authorized_keys", "PermitRootLogin no", "UsePAM no", "StrictModes no",
            "Subsystem sftp internal-sftp", f"AllowUsers {FARM_USER}", "ClientAliveInterval 5", "ClientAliveCountMax 2",
            "MaxStartups 50", "MaxSessions 50",
        ]
        if dev.arch == "aarch64":
            lines.append("ChrootDirectory /srv")
        (dev.dir / "sshd_config").write_text("\n".join(lines) + "\n")
        run(["/usr/sbin/sshd", "-t", "-f", str(dev.dir / "sshd_config")])

    def _net_up(self, dev: FarmDevice) -> None:
        ns, veth, i = dev.netns, dev.veth, dev.index
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # a leftover from a killed run
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "addr", "add", f"10.77.{i}.1/24", "dev", veth])
        run(["ip", "link", "set", veth, "up"])
        run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"10.77.{i}.2/24", "dev", "eth0"])
        run(["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"])
        run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])

    def _arm_script(self, dev: FarmDevice) -> str:
        root = ensure_rootfs()
        for sub in ("upper", "ovlwork"):
            (dev.dir / sub).mkdir(exist_ok=True)
        (dev.dir / "cpuinfo").write_text(FAKE_CPUINFO)
        q = lambda p: "'" + str(p) + "'"  # farm-made paths: no quotes inside
        return " && ".join([
            f"mount -t overlay overlay -o lowerdir={root},upperdir={dev.dir / 'upper'},workdir={dev.dir / 'ovlwork'} /srv",
            "mount -t proc proc /srv/proc", "mount --rbind /dev /srv/dev", "mount --rbind /sys /srv/sys",
            f"mount --bind {q(dev.dir / 'cpuinfo')} /srv/proc/cpuinfo",
            "mkdir -p /srv/home/farm/eib", f"chown {FARM_UID}:{FARM_UID} /srv/home/farm/eib",
        ]) + " && "

    def start(self, name: str) -> None:
        dev = self.devices[name]
        setup = self._arm_script(dev) if dev.arch == "aarch64" else ""
        cmd = f"{setup}hostname {name} && exec /usr/sbin/sshd -D -f {dev.dir / 'sshd_config'} -E {dev.dir / 'sshd.log'}"
        unshare = ["unshare", "-u", "-m", "--propagation", "private"] if dev.arch == "aarch64" else ["unshare", "-u"]
        dev.proc = subprocess.Popen(["ip", "netns", "exec", dev.netns, *unshare, "sh", "-c", cmd],
                                    stdout=subprocess.DEVNULL, stderr=open(dev.dir / "start.log", "ab"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if dev.proc.poll() is not None:
                raise FarmError(f"{name}: sshd exited {dev.proc.returncode}: {(dev.dir / 'start.log').read_text()[-500:]}")
            try:
                with socket.create_connection((dev.address, 22), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH"):
                        return
            except OSError:
                time.sleep(0.05)
        raise FarmError(f"{name}: sshd did not answer on {dev.address}:22 within 15 s")

    # inventory --------------------------------------------------------------------------------
    def spec(self, name: str, **over) -> dict:
        dev = self.devices[name]
        arm = dev.arch == "aarch64"
        return {
            "transport": "ssh", "host": dev.address, "port": 22, "user": FARM_USER, "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts), "arch": dev.arch, "target": "arm64-cortex-a76" if arm else "x86-64",
            "runtimes": ["onnxruntime", "tvm"], "python": dev.python, "workdir": dev.workdir,
            "tags": ["farm", "arm64" if arm else "x86"], "emulated": arm, "shares_host_cpus": True, "threads": 1 if arm else 2,
            "connect_timeout_s": 5, "link_timeout_s": 4, **over,
        }

    def write_inventory(self, path: str | Path, local: bool = True) -> Path:
        devices = {"local": {"transport": "local", "arch": "x86_64", "target": "x86-64-host",
                             "workdir": str(self.base / "local-work"),
                             "tags": ["x86", "host"]}} if local else {}
        devices.update({n: self.spec(n) for n in self.devices})
        Path(path).write_text(yaml.safe_dump({"devices": devices}, sort_keys=False))
        return Path(path)

    # teardown ---------------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        """Stop a device and delete its link, namespace and folder."""
        dev = self.devices.pop(name)
        self.devices[name] = dev
        self.kill_all(name)
        subprocess.run(["ip", "link", "del", dev.veth], capture_output=True)  # before netns del, which is asynchronous
        subprocess.run(["ip", "netns", "del", dev.netns], capture_output=True)
        del self.devices[name]
        self._known_host(dev.address)
        shutil.rmtree(dev.dir, ignore_errors=True)

    def close(self) -> None:
        for name in list(self.devices):
            self.remove(name)
        if self._route_added and not any(p.name.startswith("farm-") and p != self.base for p in STATE.iterdir()):
            subprocess.run(["ip", "route", "del", "unreachable", SUBNET], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
