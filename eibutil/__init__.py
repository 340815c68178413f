"""Small pieces shared by `eibert`, `devices` and `harness`: errors, strict YAML, hashing, atomic files.

    >>> from eibutil import sha256_bytes
    >>> sha256_bytes(b"")[:12]
    'e3b0c44298fc'

Imports nothing heavy (no torch, tvm, ray, paramiko), so every package may use it.
"""

from eibutil.errors import ConfigError, UserError
from eibutil.files import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes, sha256_file
from eibutil.yamlio import load_yaml, validation_error

__all__ = [
    "ConfigError",
    "UserError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_yaml",
    "sha256_bytes",
    "sha256_file",
    "validation_error",
]
