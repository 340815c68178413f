"""One rule for relative paths: what a config writes is relative to its folder; what it leaves out takes the
CLI's default, relative to the working directory (where `eib runs`, `eib report`, `eib measure` look)."""

from pathlib import Path

from harness.config.load import load_config
from harness.config.schema import DEFAULT_CACHE_DIR, DEFAULT_DATABASE, DEFAULT_INVENTORY, DEFAULT_REPORTS_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_written_paths_follow_the_config_and_defaults_follow_the_cli(tmp_path, monkeypatch, tiny_bert):
    import shutil

    (tmp_path / "work").mkdir()
    shutil.copy(ROOT / "inventory.yaml", tmp_path / "work" / DEFAULT_INVENTORY)
    conf = tmp_path / "configs"
    conf.mkdir()
    shutil.copytree(tiny_bert, conf / "teacher")
    monkeypatch.chdir(tmp_path / "work")
    (conf / "bare.yaml").write_text("name: bare\n")
    cfg = load_config(conf / "bare.yaml")
    cwd = Path.cwd()
    assert cfg.results.database == str((cwd / DEFAULT_DATABASE).resolve())
    assert cfg.results.reports_dir == (cwd / DEFAULT_REPORTS_DIR).resolve()
    assert cfg.cache_dir == (cwd / DEFAULT_CACHE_DIR).resolve() and cfg.inventory == (cwd / DEFAULT_INVENTORY).resolve()
    (conf / "written.yaml").write_text(f"name: written\nteacher: {{model: ./teacher}}\ninventory: {ROOT / 'inventory.yaml'}\n"
                                       "results: {database: db.sqlite, reports_dir: out}\ncache_dir: cache\n")
    cfg = load_config(conf / "written.yaml")
    assert cfg.results.database == str(conf / "db.sqlite") and cfg.results.reports_dir == conf / "out"
    assert cfg.cache_dir == conf / "cache" and cfg.teacher.model == str(conf / "teacher")
    (conf / "hub.yaml").write_text(f"name: hub\nteacher: {{model: org/some-model}}\ninventory: {ROOT / 'inventory.yaml'}\n")
    assert load_config(conf / "hub.yaml").teacher.model == "org/some-model"  # no such folder: a Hugging Face id


def test_the_cli_defaults_are_the_configs():
    from harness.cli.commands import build_parser

    p = build_parser()
    for argv, dest, want in ((["runs"], "db", DEFAULT_DATABASE), (["report", "r"], "db", DEFAULT_DATABASE),
                             (["report", "r"], "reports_dir", DEFAULT_REPORTS_DIR),
                             (["measure", "x", "--device", "local"], "cache_dir", DEFAULT_CACHE_DIR),
                             (["measure", "x", "--device", "local"], "inventory", DEFAULT_INVENTORY)):
        assert getattr(p.parse_args(argv), dest) == want, argv
