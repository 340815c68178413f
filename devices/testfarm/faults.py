"""The faults a farm inflicts on its devices, and what the tests read back: processes killed, links cut or slowed,
the work directory's entries. A mixin of `Farm` (its `devices`: name -> FarmDevice)."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from devices.testfarm.hostenv import run


class FarmFaults:
    devices: dict

    def pids(self, name: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.devices[name].netns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def cmdlines(self, name: str) -> dict[int, bytes]:
        """pid -> raw command line of the device's live processes (ones that exit meanwhile are left out)."""
        out = {}
        for pid in self.pids(name):
            try:
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
        return out

    def kill_all(self, name: str) -> None:
        """sshd, its sessions and everything they started: a dead server (a power-off keeps the link)."""
        for pid in self.pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc = self.devices[name].proc
        if proc is not None:
            proc.wait(timeout=10)

    def kill_matching(self, name: str, needle: str) -> list[int]:
        """SIGKILL the device's processes whose command line contains `needle` (the remote process dies)."""
        killed = []
        for pid, raw in self.cmdlines(name).items():
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
            if needle in cmdline and "sshd" not in cmdline.split(" ")[0]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed

    def cut_link(self, name: str) -> None:
        run(["ip", "link", "set", self.devices[name].veth, "down"])

    def restore_link(self, name: str) -> None:
        dev = self.devices[name]
        run(["ip", "link", "set", dev.veth, "up"])
        subprocess.run(["ip", "neigh", "flush", "dev", dev.veth], capture_output=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # carrier and neighbour entries take a moment
            try:
                socket.create_connection((dev.address, 22), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)

    def limit_rate(self, name: str, rate: str | None) -> None:
        """Cap host-to-device bandwidth (tc tbf), or remove the cap with None: makes an upload last long enough to cut."""
        veth = self.devices[name].veth
        subprocess.run(["tc", "qdisc", "del", "dev", veth, "root"], capture_output=True)
        if rate:
            run(["tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"])

    def workdir_entries(self, name: str) -> dict[str, list[str]]:
        """What is in the device's work directory: {'runs': [...], 'blobs': [...], 'other': [...]}."""
        root = self.devices[name].host_workdir
        out = {"runs": [], "blobs": [], "other": []}
        if root.is_dir():
            for p in sorted(root.iterdir()):
                key = p.name if p.name in ("runs", "blobs") else "other"
                out[key] += [c.name for c in sorted(p.iterdir())] if p.is_dir() and key != "other" else [p.name]
        return out
