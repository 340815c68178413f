"""Logging: one logger per package (eibert, harness, devices, bench), each module logging under its own name
(`logging.getLogger(__name__)`). The command line sets the level once: `--quiet` shows warnings only, `-v`
debug lines too. Messages print as they are, with no prefix: information on stdout, warnings and errors on stderr.

    from eibutil.logs import configure
    configure(verbosity=0)    # -1: --quiet, 0: default, 1: -v
"""

import logging
import sys

PACKAGES = ("eibert", "harness", "devices", "bench")


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def level_of(verbosity: int) -> int:
    return logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG


def configure(verbosity: int = 0) -> None:
    """Route the packages' loggers to stdout (below WARNING) and stderr (WARNING and above) at the level of `verbosity`.
    Handlers write to the streams of the moment (sys.stdout at call time), so a test's captured output sees them."""
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_Below(logging.WARNING))
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for h in (out, err):
        h.setFormatter(logging.Formatter("%(message)s"))
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.handlers = [out, err]
        logger.setLevel(level_of(verbosity))
        logger.propagate = False


def quiet(logger: logging.Logger) -> bool:
    """Whether progress bars should stay off: the logger does not show information."""
    return not logger.isEnabledFor(logging.INFO)
