"""Content-addressed cache of stage outputs: a folder per key, published by an atomic rename.

    from eibert.cache import Cache
    cache = Cache(".eib-cache")
    key = cache.key("teacher", {"model": fp, "data": sums, "hp": hp})
    if (hit := cache.get("teacher", key)) is None:
        with cache.publish("teacher", key) as tmp:   # write into tmp; it becomes the entry on success
            ...
        hit = cache.get("teacher", key)

An entry exists only once complete: a crash mid-write leaves a `.tmp-*` folder that is ignored and
cleaned up later, never a half entry.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from eibutil.files import canonical_json

_DONE = "entry.json"


class Cache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def key(self, kind: str, spec: dict) -> str:
        return hashlib.sha256(canonical_json({"kind": kind, **spec}).encode()).hexdigest()[:24]

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get(self, kind: str, key: str) -> Path | None:
        p = self.path(kind, key)
        return p if (p / _DONE).is_file() else None

    def meta(self, kind: str, key: str) -> dict:
        return json.loads((self.path(kind, key) / _DONE).read_text())

    @contextlib.contextmanager
    def publish(self, kind: str, key: str, meta: dict | None = None):
        """Yield a temporary folder; on success it is renamed into place with `entry.json` written last."""
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=final.parent))
        try:
            yield tmp
            info = {"kind": kind, "key": key, "created_at": time.time(), **(meta or {})}
            (tmp / _DONE).write_text(json.dumps(info, indent=2, default=str))
            if final.exists():  # a concurrent writer won; keep its entry
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
