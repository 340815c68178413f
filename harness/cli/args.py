"""Argument types and the parser class of the `eib` command line: bad values are one line and exit 2.

    p.add_argument("--rows", type=int_in(1))            # "argument --rows: must be an integer >= 1 (got '-3')"
"""

import argparse
import math
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line (`eib: error: ...`) and exit code 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: " + " ".join(message.split()), file=sys.stderr)
        sys.exit(2)


def int_in(lo: int, hi: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo or (hi is not None and v > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound} (got {text[:40]!r})")
        return v

    parse.__name__ = "int"
    return parse


def float_in(lo: float, *, strict: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or v < lo or (strict and v == lo):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {lo:g} (got {text[:40]!r})")
        return v

    parse.__name__ = "float"
    return parse
