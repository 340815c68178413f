"""What a config is, by content: the view every variant id and graph node key hashes.

    from harness.config.identity import content_view
    content_view(cfg)   # the config as JSON with each path replaced by what it names

Paths differ between checkouts, machines and CI workspaces; what they name does not. So data files
count by sha256, a local teacher folder by its fingerprint (eibert.hub.model_fingerprint), and the
places results and caches are written (cache_dir, results, inventory) not at all: the same config
planned from two copies of the repository gets the same ids, and a nightly run from another folder
compares against the runs before it.
"""

from pathlib import Path

from eibutil.files import sha256_file_memo

NOT_CONTENT = ("cache_dir", "inventory", "results")  # where things go, not what is computed


def file_digest(path) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    return "sha256:" + sha256_file_memo(p)


def teacher_ref(model: str) -> str:
    """A local teacher folder by its fingerprint; "bundled" and hub ids as they are."""
    p = Path(model)
    if model != "bundled" and p.is_dir():
        from eibert.hub import model_fingerprint

        return "fingerprint:" + model_fingerprint(str(p.resolve()))
    return model


def content_view(cfg) -> dict:
    """`cfg.model_dump(mode="json")` without output locations, with paths replaced by content digests."""
    data = cfg.model_dump(mode="json", exclude={k: True for k in NOT_CONTENT})
    task = data.get("task") or {}
    for key in ("train_file", "dev_file"):
        if task.get(key):
            task[key] = file_digest(task[key]) or task[key]
    if data.get("teacher", {}).get("model"):
        data["teacher"]["model"] = teacher_ref(data["teacher"]["model"])
    return data
