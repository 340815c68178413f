"""Artifacts checked against their manifest before anything uses them (evaluate, measure, build, upload).

    from eibert.verify import verify_artifact, ArtifactError
    manifest = verify_artifact("models/sst2-2mb")     # or ArtifactError: one line naming the file

The manifest (eibert.export) records each file's size and sha256; a file replaced, truncated,
swapped for a symlink to a host file, or grown to gigabytes is refused before it is read, hashed at
length, uploaded to a device or scored. Hashes are memoised per (file, size, mtime).
"""

import json
from pathlib import Path

from eibutil import UserError
from eibutil.files import sha256_file_memo


class ArtifactError(UserError):
    """An artifact folder whose files do not match its manifest (one line: the folder and the file)."""


def verify_artifact(artifact_dir: str | Path) -> dict:
    """The manifest, after checking every file it names: a regular file inside the folder (no symlink out),
    of the recorded size (checked first: a huge stand-in is never hashed) and sha256. Raises ArtifactError."""
    folder = Path(artifact_dir)
    mpath = folder / "manifest.json"
    if mpath.is_symlink() or not mpath.is_file():
        raise ArtifactError(f"{mpath}: {'a symlink' if mpath.is_symlink() else 'missing'}: not an artifact")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
        checks = {name: (int(f["bytes"]), str(f["sha256"])) for name, f in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{mpath}: no file sizes and checksums ({type(e).__name__}); re-export it with "
                            "`eib compress`") from None
    if "model.onnx" not in checks:
        raise ArtifactError(f"{mpath}: names no model.onnx")
    for name, (size, _) in checks.items():  # every size before any hash: a huge stand-in is never read
        p = folder / name
        if "/" in name or name in ("", ".", "..") or p.is_symlink() or not p.is_file():
            plain = "/" not in name and name not in ("", ".", "..")
            why = "a symlink" if p.is_symlink() else "missing" if plain else "not a plain file name"
            raise ArtifactError(f"{p}: {why} (artifacts hold plain files only)")
        st = p.stat()
        if st.st_size != size:
            raise ArtifactError(f"{p}: {st.st_size:,} bytes, the manifest says {size:,}: not the exported file")
    for name, (_, sha) in checks.items():
        p = folder / name
        if sha256_file_memo(p) != sha:
            raise ArtifactError(f"{p}: sha256 differs from the manifest's: the file was changed after export")
    return manifest
