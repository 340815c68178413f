"""Ids from content: the same config planned from two checkouts gives the same variant ids and node keys."""

import shutil
from pathlib import Path

from tests.test_pipeline import edit_config

ROOT = Path(__file__).resolve().parents[1]


def _checkout(dest: Path) -> Path:
    shutil.copytree(ROOT, dest,
                    ignore=shutil.ignore_patterns(".git", ".gpu", ".whl", "__pycache__", "*.sqlite", ".eib-cache", "models"))
    return dest


def _plan(config: Path) -> tuple[list[str], list[str]]:
    from devices.inventory import load_inventory
    from harness.config.load import load_config_file
    from harness.config.variants import expand
    from harness.engine.graph import build_graph

    cfg, raw = load_config_file(config)
    variants = expand(cfg, config, raw)
    nodes = build_graph(variants, load_inventory(cfg.inventory).devices)
    return [v.variant_id for v in variants], [n.key for n in nodes]


def test_two_checkouts_plan_identical_ids(tmp_path, tiny_bert, task_files):
    a, b = _checkout(tmp_path / "a"), _checkout(tmp_path / "b" / "deeper")
    for co in (a, b):  # a config with local files and a local teacher folder, named relative to the config
        shutil.copytree(tiny_bert, co / "configs" / "teacher")
        for name, f in task_files.items():
            shutil.copy(f, co / "configs" / f"{name}.tsv")
        shutil.copy(co / "configs" / "quickstart.yaml", co / "configs" / "files.yaml")
        edit_config(co / "configs" / "files.yaml", {"task.source": "files", "teacher.model": "./teacher"},
                    add={"task.train_file": "train.tsv", "task.dev_file": "dev.tsv"})
    for rel in ("configs/quickstart.yaml", "bench/configs/student-128.yaml", "configs/files.yaml"):
        ids_a, keys_a = _plan(a / rel)
        ids_b, keys_b = _plan(b / rel)
        assert ids_a == ids_b and keys_a == keys_b, rel
        assert ids_a and keys_a
    # content, not names: a changed data file changes the ids
    (b / "configs" / "train.tsv").write_text((b / "configs" / "train.tsv").read_text() + "one more row .\t1\n")
    assert _plan(a / "configs/files.yaml")[0] != _plan(b / "configs/files.yaml")[0]
