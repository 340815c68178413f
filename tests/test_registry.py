"""The registry is the wiring: a stage added to it (a throwaway one, for the duration of a test) is keyed by its
config sections and inputs, placed in the graph and run by the scheduler with no engine file edited; and no engine
module names a stage."""

import ast
from dataclasses import dataclass, field
from pathlib import Path

from eibutil.records import Record
from tests.test_pipeline import edit_config, write_config

ROOT = Path(__file__).resolve().parents[1]
ENGINE = sorted(str(f.relative_to(ROOT)) for f in (ROOT / "harness/engine").glob("*.py")) + [
    "harness/stages/node.py", "harness/stages/base.py", "harness/stages/travel.py", "harness/config/variants.py"]


@dataclass
class ShoutRecord(Record):
    text: str
    teacher_accuracy: float
    extra: dict = field(default_factory=dict)


def shout(node, inputs: dict, ctx: dict) -> ShoutRecord:
    return ShoutRecord(node.payload.config.name.upper(), inputs["teacher"].dev_accuracy)


def _graph(cfg_path: Path):
    from devices.inventory import load_inventory
    from harness.config.load import load_raw, validate_config
    from harness.config.variants import expand
    from harness.engine.graph import build_graph

    raw = load_raw(cfg_path)
    cfg = validate_config(raw, cfg_path)
    inventory = load_inventory(ROOT / "inventory.yaml").devices
    return build_graph(expand(cfg, cfg_path, raw), inventory), inventory


def test_a_throwaway_stage_is_keyed_placed_and_run_with_no_engine_file_edited(tiny_bert, task_files, tmp_path):
    from harness.engine.executors import InlineExecutor
    from harness.engine.scheduler import Scheduler
    from harness.results.store import Store
    from harness.stages.base import Stage
    from harness.stages.registry import REGISTRY, registered

    cfg_path = write_config(tmp_path, tiny_bert, task_files)
    with registered(Stage("shout", shout, ("teacher",), ShoutRecord, sections=("task.max_seq_len",))):
        nodes, inventory = _graph(cfg_path)
        (node,) = [n for n in nodes if n.stage == "shout"]  # shared by both variants, as the teacher is
        (teacher,) = [n for n in nodes if n.stage == "teacher"]
        assert node.deps == [teacher.key] and node.dep_stages == ["teacher"] and len(node.variant_ids) == 2
        # keyed by its section and its input: another quantization shares it, another length does not
        same, _ = _graph(edit_config(tmp_path / "exp.yaml", {"compress.quant.granularity": "per-tensor"}))
        assert [n.key for n in same if n.stage == "shout"] == [node.key]
        other, _ = _graph(edit_config(tmp_path / "exp.yaml", {"task.max_seq_len": 48}))
        assert node.key not in [n.key for n in other if n.stage == "shout"]

        store = Store(str(tmp_path / "r.sqlite"))
        run_id = store.create_run("tiny", {}, str(cfg_path))
        todo = [n for n in nodes if n.stage in ("teacher", "shout")]
        counts = Scheduler(todo, InlineExecutor(), store, run_id, None, inventory, tmp_path / "errors").run()
        rows = {r["stage"]: r for r in store.stage_results(run_id)}
        assert counts["done"] == 2 and counts["failed"] == 0, (counts, rows)
        out = rows["shout"]["output"]
        assert out["text"] == "TINY" and out["teacher_accuracy"] == rows["teacher"]["output"]["dev_accuracy"]
    assert "shout" not in REGISTRY


def _config_keys(tree: ast.AST) -> set[int]:
    """ids of the string constants that are keys, not values: config sections share names with stages
    (cfg["measure"], {"teacher": seed}, m.get("teacher")), and a parameter default is the command's word."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Subscript) and "REGISTRY" not in ast.unparse(n.value):
            out.add(id(n.slice))
        elif isinstance(n, ast.Dict):
            out.update(id(k) for k in n.keys if k is not None)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("get", "pop") and n.args:
            out.add(id(n.args[0]))
        elif isinstance(n, ast.arguments):
            out.update(id(d) for d in n.defaults + n.kw_defaults if d is not None)
    return out


def test_no_engine_module_names_a_stage():
    """Stage names live in the registry and the stage adapters (harness/stages/model.py, device.py); the engine asks
    the registry (its roles: root, model, build, measure) and compares no stage name."""
    from harness.stages.registry import ORDER

    found = []
    for rel in ENGINE:
        tree = ast.parse((ROOT / rel).read_text())
        keys = _config_keys(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and n.value in ORDER and id(n) not in keys:
                found.append(f"{rel}:{n.lineno}: {n.value!r}")
    assert not found, "\n".join(found)


def test_the_scan_finds_a_stage_compared_by_name():
    tree = ast.parse('if node.stage == "teacher" or s in ("build", "x"):\n    cfg["measure"], REGISTRY["student"]\n')
    keys = _config_keys(tree)
    named = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in ("teacher", "build", "measure",
                                                                                             "student") and id(n) not in keys]
    assert sorted(named) == ["build", "student", "teacher"]
