"""How stage outputs reach the node that consumes them when the nodes of a Ray cluster share no disk.

    blobs = pack(["/c/student/ab12", "/c/vocab/cd34"])      # {path: (sha256, tar bytes)}
    unpack(blobs)                                           # on the consumer: verified, then placed

A stage's output folders live in the content-addressed cache (`cache_dir/<stage>/<key>`, same
`cache_dir` string on every node), so a folder keeps its path on every node: the producer packs the
folders its record names and returns them beside the record as a Ray object; the consumer's task takes
that object as an argument (Ray moves it between nodes), checks each tar's sha256 and places the
folder at its path, atomically, unless the folder is already there (a cache entry of the same key
holds the same content). Inputs outside the cache (the task's files, a teacher folder) travel the
same way and land under `cache_dir/inputs/<sha256>/`. On one machine (every node sees one disk)
nothing is packed: the executor turns travel on only for a cluster of several nodes.
"""

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from eibutil import sha256_bytes
from eibutil.cache import Cache
from eibutil.files import KEY_CHARS
from harness.stages.base import StageError


def _tar(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(path), arcname=path.name, recursive=True)
    return buf.getvalue()


def pack(paths: list[str]) -> dict[str, tuple[str, bytes]]:
    """{path: (sha256, tar)} for every path that exists here (folders whole, files alone)."""
    out = {}
    for p in dict.fromkeys(paths):
        if p and Path(p).exists():
            data = _tar(Path(p))
            out[str(p)] = (sha256_bytes(data), data)
    return out


def place(path: str, sha: str, data: bytes) -> Path:
    """Put the folder or file of a verified tar at `path` (a same-named entry already there is kept)."""
    if sha256_bytes(data) != sha:
        raise StageError(f"output {path} arrived corrupted (sha256 mismatch); refused", "infrastructure", "integrity")
    dest = Path(path)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".arrive-{dest.name}-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        got = tmp / dest.name
        try:
            os.replace(got, dest)
        except OSError:
            if not dest.exists():  # a concurrent arrival won the rename otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def unpack(blobs: dict[str, tuple[str, bytes]]) -> None:
    for path, (sha, data) in blobs.items():
        place(path, sha, data)


def pack_inputs(cfg) -> dict:
    """The files a stage reads that are not in the cache (task files, a local teacher folder), keyed by path."""
    paths = [str(p) for p in (cfg.task.train_file, cfg.task.dev_file) if p]
    if Path(str(cfg.teacher.model)).is_dir():
        paths.append(str(cfg.teacher.model))
    return pack(paths)


def arrive_inputs(cfg, blobs: dict, cache_dir: Path) -> tuple[object, dict]:
    """(config pointing at this node's copies of the inputs, {split: source as the user named it})."""
    local = {}
    for path, (sha, data) in blobs.items():
        local[path] = str(place(str(Cache(cache_dir).path("inputs", sha[:KEY_CHARS]) / Path(path).name), sha, data))
    t = cfg.task
    task = t.model_copy(update={k: Path(local[str(getattr(t, k))]) for k in ("train_file", "dev_file")
                                if getattr(t, k) and str(getattr(t, k)) in local})
    teacher = cfg.teacher.model_copy(update={"model": local.get(str(cfg.teacher.model), cfg.teacher.model)})
    sources = {"train": str(t.train_file), "dev": str(t.dev_file)} if t.train_file else {}
    return cfg.model_copy(update={"task": task, "teacher": teacher}), sources
