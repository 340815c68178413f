"""Hashing and atomic file writes: a crash leaves either the old file or the new one, never half."""

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should look like any written file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def canonical_json(obj: Any) -> str:
    """The one JSON spelling of `obj` that content hashes are taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


KEY_CHARS = 24  # every cache key; variant ids, which people read and type, keep the first 16 (ID_CHARS)
ID_CHARS = 16


def content_key(obj: Any, chars: int = KEY_CHARS) -> str:
    """The one content key: the sha256 of `obj`'s canonical JSON, its first `chars` hex digits. Every cache key
    and id in the project is made here."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:chars]


def writable_dir(path) -> Path:
    """`path` as a folder to write into (created), or one line (UserError) when it is a file or cannot be made."""
    from eibutil.errors import UserError

    p = Path(path)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            raise UserError(f"{q}: a file, not a folder (reports and results go into a folder)")
        if q.exists():
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{p}: cannot create the folder ({e.strerror})") from None
    return p


RAY_RESERVED = ("CPU", "GPU", "TPU", "memory", "object_store_memory", "accelerator_type", "node")


def check_ray_resource(name: str) -> str:
    """A custom Ray resource name as a node is started with (`ray start --resources '{"NAME": 1}'`): letters,
    digits, '_', '-', '.', starting with a letter; never one of Ray's own (CPU, GPU, memory, ...)."""
    import re

    if name in RAY_RESERVED or name.startswith(("node:", "accelerator_type:")):
        raise ValueError(f"{name!r} is one of Ray's own resources, not a custom one marking a node")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,127}", name):
        raise ValueError(f"{name!r} is not a custom resource name (letters, digits, _ - ., starting with a letter)")
    return name


@functools.lru_cache(maxsize=256)
def _sha_memo(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def sha256_file_memo(path) -> str:
    """sha256_file, memoised per (resolved path, size, mtime): a sweep hashes an unchanged file once."""
    p = Path(path)
    st = p.stat()
    return _sha_memo(str(p.resolve()), st.st_size, st.st_mtime_ns)
