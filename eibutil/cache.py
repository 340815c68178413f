"""Content-addressed cache of stage outputs: a folder per key, published by an atomic rename; and the one owner
of the cache folder's layout: every area below the root is named in AREAS and reached through `Cache.area`.

    from eibutil.cache import Cache
    cache = Cache(".eib-cache")
    key = cache.key("teacher", {"model": fp, "data": sums, "hp": hp})
    if (hit := cache.get("teacher", key)) is None:
        with cache.publish("teacher", key) as tmp:   # write into tmp; it becomes the entry on success
            ...
        hit = cache.get("teacher", key)

An entry exists only once complete: a crash mid-write leaves a `.tmp-*` folder that is ignored and
cleaned up later, never a half entry. Expensive entries are computed under `cache.lock(kind, key)`: a second
process asking for the same entry (parallel benchmark workers) waits for the first and then finds it published,
instead of computing it again beside it.
"""

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from eibutil.files import content_key

_DONE = "entry.json"
AREAS = {
    # entries (a folder per key, published whole): eibert's stages and the target teachers' labels
    "teacher": "fine-tuned teachers", "importance": "attention importance of tokens", "vocab": "pruned vocabularies",
    "student": "trained students", "artifact": "deployable artifacts", "augment": "augmented texts",
    "teacher_outputs": "cached teacher logits and hidden states", "targets": "target teachers' logits",
    "phased": "phased students (their checkpoint keys)",
    # files and folders the harness and devices keep by content key
    "checkpoints": "training checkpoints (eibert.trainloop)", "nodes": "memo of finished graph nodes",
    "measure": "stored measurements", "inputs": "prepared device inputs", "onnx": "float ONNX exports",
    "qdq": "QDQ exports for OpenVINO", "tvm": "TVM builds", "tuning": "MetaSchedule databases",
    "programs": "torch.export programs", "e2e": "end-to-end texts", "null": "null-model floors",
    "logs": "benchmark workers' logs (bench/workers.py)",
}


class Cache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def key(self, kind: str, spec: dict) -> str:
        return content_key({"kind": kind, **spec})

    def area(self, name: str) -> Path:
        """The folder of one area of the layout (AREAS); a name not listed there is a KeyError."""
        if name not in AREAS:
            raise KeyError(f"{name!r} is not an area of the cache; areas: {', '.join(AREAS)}")
        return self.root / name

    def path(self, kind: str, key: str) -> Path:
        return self.area(kind) / key

    def file(self, kind: str, key: str, suffix: str = ".json") -> Path:
        """A single file kept by key in an area (node memos, measurements)."""
        return self.area(kind) / f"{key}{suffix}"

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

    @contextlib.contextmanager
    def lock(self, kind: str, key: str):
        """Hold one entry's lock (an exclusive flock on `.lock-KEY` in its area) while computing it; released when
        the block ends or the process dies. Check `get` again once inside: another process may have published it."""
        import fcntl

        area = self.area(kind)
        area.mkdir(parents=True, exist_ok=True)
        with open(area / f".lock-{key}", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
