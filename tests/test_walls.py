"""The one-way data flow, kept by tests: eibert never reaches devices/harness/ray/paramiko; devices never reaches
torch/eibert/the compiler; the compiler (TVM, and torch to load the exported program) never reaches eibert or the
harness; planning a sweep imports none of torch, tvm or ray."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "eibert": {"devices", "harness", "ray", "paramiko"},
    "devices": {"torch", "eibert", "transformers", "compiler", "harness"},
    "compiler": {"eibert", "harness", "transformers", "ray", "paramiko"},
    "eibutil": {"torch", "eibert", "devices", "harness", "ray", "paramiko", "tvm", "transformers"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_inside_walls(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no python files in {package}/"
    bad = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert not {k: v for k, v in bad.items() if v}


def test_only_the_build_and_the_runner_import_tvm():
    pkgs = ("eibert", "devices", "compiler", "harness", "eibutil", "bench")
    files = [f for pkg in pkgs for f in sorted((ROOT / pkg).rglob("*.py"))]
    users = sorted(str(f.relative_to(ROOT)) for f in files if "tvm" in imported_roots(f))
    # the device runner uses the runtime only; compiler/int8.py is imported by the build's child alone
    assert users == ["compiler/build.py", "compiler/int8.py", "devices/remote/eib_device.py"]


def test_wall_checker_sees_a_violation(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import ray.util\n    from harness import cli\n")
    assert {"ray", "harness"} <= imported_roots(f)


def test_plan_imports_no_heavy_module():
    code = (
        "import sys, json; from harness.cli.commands import main;"
        "rc = main(['plan', 'configs/quickstart.yaml', '--json']);"
        "heavy = sorted(m for m in ('torch', 'tvm', 'ray', 'transformers', 'datasets', 'paramiko', 'onnxruntime') if m in "
        "sys.modules);print('HEAVY=' + json.dumps(heavy)); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    heavy = json.loads(out.stdout.rsplit("HEAVY=", 1)[1])
    assert heavy == []
    plan = json.loads(out.stdout.rsplit("HEAVY=", 1)[0])
    assert len(plan["variants"]) == 4


LAYERS = ["config", "measure", "results", "stages", "engine", "report", "cli"]  # harness's folders, bottom up


def _module(f: Path) -> str:
    parts = f.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(f) for f in (ROOT / "harness").rglob("*.py")}


def harness_imports(path: Path) -> set[str]:
    """The harness modules a file imports, function-local imports included (`from harness.stages import x` too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("harness.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "harness":
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES
            out |= subs or {node.module}
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(n, path):
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d in graph and not state.get(d) and (c := visit(d, path + [d])):
                return c
        state[n] = 2
        return None

    for n in sorted(graph):
        if not state.get(n) and (c := visit(n, [n])):
            return c
    return None


def test_harness_is_folders_that_follow_the_flow():
    flat = sorted(f.name for f in (ROOT / "harness").glob("*.py") if f.name != "__init__.py")
    assert not flat, f"modules outside the folders: {flat}"
    assert sorted(d.name for d in (ROOT / "harness").iterdir() if d.is_dir() and (d / "__init__.py").exists()) == sorted(LAYERS)


def test_harness_has_no_import_circle_and_the_engine_never_imports_the_cli():
    graph = {_module(f): harness_imports(f) - {_module(f)} for f in sorted((ROOT / "harness").rglob("*.py"))}
    assert len(graph) > 30 and "harness.stages.registry" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    engine = {m: sorted(d for d in deps if d.startswith("harness.cli")) for m, deps in graph.items()
              if not m.startswith("harness.cli")}
    assert not {m: d for m, d in engine.items() if d}
    # the folders are layers, imports only go down them: config at the bottom, then measurement and results, the
    # stages, the engine that drives them, the reports, and the command line on top
    layer = {m: LAYERS.index(m.split(".")[1]) for m in graph if m.count(".") >= 2}
    up = sorted(f"{m} -> {d}" for m, deps in graph.items() if m in layer for d in deps if layer.get(d, -1) > layer[m])
    assert not up, up
    # the checker sees a circle hidden in function-local imports
    assert _cycle({"harness.a": {"harness.b"}, "harness.b": {"harness.a"}}) == ["harness.a", "harness.b", "harness.a"]


def test_every_content_key_and_cache_path_comes_from_the_one_helper_and_owner():
    """Keys are `eibutil.files.content_key` (sha256 of canonical JSON); cache folders are `eibutil.cache.Cache`'s areas:
    no module hashes its own key or joins an area name onto the cache root by hand."""
    import re

    hand_key = re.compile(r"hexdigest\(\)\[")
    hand_path = re.compile(r"""(cache_dir\)?|\.root) / ["']""")
    found = []
    for pkg in ("eibert", "devices", "compiler", "harness", "eibutil", "bench"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            rel = str(f.relative_to(ROOT))
            for i, line in enumerate(f.read_text().splitlines(), 1):
                key = hand_key.search(line) and rel != "eibutil/files.py"
                if key or (hand_path.search(line) and rel != "eibutil/cache.py"):
                    found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, "\n".join(found)
