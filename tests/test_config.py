"""Config validation: valid configs load; each malformed one gives one line naming file, key and what
is allowed, with exit code 2 and no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eibutil import ConfigError
from harness.cli.commands import main
from harness.config.load import load_config
from harness.config.variants import expand

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    inv = tmp_path / "inventory.yaml"
    if not inv.exists():
        inv.write_text("devices:\n  local: {transport: local}\n  box: {transport: local, tags: [x86]}\n")
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


BASE = "name: t\ninventory: inventory.yaml\n"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_plan(path, tmp_path):
    import yaml

    raw = yaml.safe_load(path.read_text())
    if not (path.parent / raw.get("inventory", "../inventory.yaml")).exists():
        # an inventory written at run time (the test farm's): stand in one with the same device names
        devices = {d: {"transport": "local"} for d in raw["devices"]}
        (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({"devices": devices}))
        raw.update(inventory=str(tmp_path / "inventory.yaml"))
        path = tmp_path / path.name
        path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    variants = expand(cfg, path)
    assert variants and len({v.variant_id for v in variants}) == len(variants)


def test_quickstart_has_at_least_four_variants():
    cfg = load_config(ROOT / "configs/quickstart.yaml")
    assert len(expand(cfg, ROOT / "configs/quickstart.yaml")) >= 4
    assert cfg.cache_dir.is_absolute() and cfg.results.database.startswith("/")


def test_defaults_fill_a_minimal_config(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.teacher.model == "bundled" and cfg.compress.quant.bits == 8 and cfg.devices == ["local"]


def test_variant_id_is_stable_and_content_addressed(tmp_path):
    a = expand(load_config(write(tmp_path, BASE + "sweep: {grid: {compress.vocab.size: [2000, 4000]}}\n")), tmp_path / "exp.yaml")
    b = expand(load_config(write(tmp_path, "name: other\ninventory: inventory.yaml\ncompress: {vocab: {size: 4000}}\n")),
               tmp_path / "exp.yaml")
    assert a[1].variant_id == b[0].variant_id  # same settings, different experiment name: same variant
    assert a[0].variant_id != a[1].variant_id


def test_ablation_preset_crosses_the_grid(tmp_path):
    cfg = load_config(write(tmp_path, BASE + "sweep: {ablation: eibert, grid: {compress.vocab.size: [2000, 4000]}}\n"))
    vs = expand(cfg, tmp_path / "exp.yaml")
    assert len(vs) == 10
    assert {v.config.compress.distill.mode for v in vs} == {"finetune", "standard", "cross"}


def test_explicit_variant_list(tmp_path):
    cfg = load_config(write(tmp_path, BASE + "sweep:\n  variants:\n    - {name: small, set: {compress.student.hidden: 128}}\n"))
    (v,) = expand(cfg, tmp_path / "exp.yaml")
    assert v.name == "small" and v.config.compress.student.hidden == 128


# (yaml body after BASE, or a full text when it starts with '!full:'), expected key, expected message part
MALFORMED = [
    ("nmae: x\n", "nmae", "unknown key; allowed: cache_dir, cluster, compress, devices"),
    ("teacher: {epoch: 3}\n", "teacher.epoch", "unknown key; allowed: batch_size, epochs, learning_rate"),
    ("teacher: {epochs: three}\n", "teacher.epochs", "Input should be a valid number"),
    ("teacher: {learning_rate: 2}\n", "teacher.learning_rate", "less than 1"),
    ("compress: {quant: {granularity: per-row}}\n", "compress.quant.granularity",
     "'none', 'per-tensor', 'per-channel' or 'per-module'"),
    ("!full:inventory: inventory.yaml\n", "name", "required key is missing"),
    ("!full:name: 'my run!'\ninventory: inventory.yaml\n", "name", "String should match pattern"),
    ("task: {source: files}\n", "task", "source 'files' needs both task.train_file and task.dev_file"),
    ("task: {source: files, train_file: nope.tsv, dev_file: nope.tsv}\n", "task.train_file", "file not found"),
    ("task: {source: files, train_file: a.xlsx, dev_file: a.xlsx}\n", "task.train_file", "unsupported format '.xlsx'"),
    ("compress: {student: {hidden: 130, heads: 4}}\n", "compress.student", "hidden (130) must be divisible by heads (4)"),
    ("devices: [rpi9]\n", "devices[0]", "unknown device 'rpi9'; inventory.yaml has: local, box"),
    ("targets: [riscv]\n", "targets[0]", "unknown target 'riscv'; allowed: x86-64"),
    ("sweep: {grid: {compress.vocab.sise: [1000]}}\n", "sweep.grid.compress.vocab.sise",
     "unknown key path 'compress.vocab.sise'; keys under compress.vocab: importance_rows, method, size"),
    ("sweep: {grid: {compress.vocab.size: [4000, 5]}}\n", "sweep.grid", "gives an invalid config: compress.vocab.size"),
    ("sweep: {grid: {name: [a, b]}}\n", "sweep.grid.name", "'name' cannot be swept"),
    ("teacher: {epochs: 3\n", "", "invalid YAML: line"),
    ("teacher: {epochs: 3}\nteacher: {epochs: 4}\n", "", "duplicate key 'teacher'"),
    ("!full:- name: t\n", "", "expected a mapping of keys at the top, got list"),
    ("!full:", "", "config file is empty"),
    ("measure: {min_duration_s: 10, max_duration_s: 5}\n", "measure", "max_duration_s (5.0) is below min_duration_s (10.0)"),
    ("devices: [local, local]\n", "devices", "listed twice: local"),
    ("!full:name: t\ninventory: missing.yaml\n", "inventory", "inventory file not found"),
    ("task: {text_fields: [a, b, c]}\n", "task.text_fields", "at most 2 items"),
    ("compress: {quant: {bits: 3}}\n", "compress.quant.bits", "Input should be 4 or 8"),
    ("compress: {quant: {bits: 8, block: 32}}\n", "compress.quant", "block is for INT4 weights"),
    ("compress: {quant: {bits: 4, block: 48}}\n", "compress.quant.block", "Input should be 16, 32, 64, 128 or 256"),
    ("compress: {quant: {mixed: true, granularity: per-module}}\n", "compress.quant",
     "INT4 (bits: 4 or mixed: true) needs granularity per-tensor or per-channel"),
    ("compress: {distill: {phases: [{kind: prediction, qat: true}]}}\n", "compress.distill",
     "phases[0].qat needs qat: true (quantization-aware training) in distill"),
    ("compress: {distill: {qat: true}, quant: {granularity: none}}\n", "compress",
     "distill.qat trains with the artifact's quantization: set quant.granularity"),
    ("task: {source: hub}\n", "task", "source 'hub' needs task.hub_id"),
    ("compress: {student: {max_positions: 32}}\n", "", "compress.student.max_positions (32) is below task.max_seq_len (64)"),
    ("measure: {seq_len: 128}\n", "", "measure.seq_len (128) exceeds the student's positions (64"),
    ("!full:a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, "
     "*b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, "
     "*d]\nname: *e\n", "", "expands to more than 100,000 values"),
    ("teacher: {epochs: " + "[" * 20000 + "]" * 20000 + "}\n", "", "nested deeper than 64 levels"),
    ("sweep: {grid: {" + ", ".join(f"compress.distill.alpha_{k}: [0, 1, 2, 3]" for k in ("ce", "kl", "hidden", "attn")) + ", "
     + ", ".join(f"teacher.{k}: [0.1, 0.2, 0.3, 0.4]" for k in ("warmup_ratio", "weight_decay", "learning_rate")) + ", "
     + "compress.distill.temperature: [1, 2, 3, 4], compress.quant.lr: [0.1, 0.2, 0.3, 0.4], compress.distill.teacher_kl: [1, "
     "2, 3, 4]}}\n",
     "sweep", "1,048,576 sweep points; at most 1,000"),
    ("!full:name: " + "x" * 2000 + "\ninventory: inventory.yaml\n", "name", "String should have at most 64 characters"),
    # numbers that cannot train, and values YAML did not mean as integers or booleans
    ("compress: {distill: {alpha_kl: .inf}}\n", "compress.distill.alpha_kl", "finite number"),
    ("compress: {distill: {alpha_ce: 1e308}}\n", "compress.distill.alpha_ce", "less than or equal to 1000"),
    ("compress: {distill: {temperature: .nan}}\n", "compress.distill.temperature", "finite number"),
    ("compress: {student: {layers: true}}\n", "compress.student", "layers: must be an integer, not True"),
    ("compress: {student: {layers: 2.0}}\n", "compress.student", "layers: must be an integer, not 2.0"),
    ("teacher: {seed: 1e38}\n", "teacher.seed", "Input should be a valid integer"),  # YAML 1.1 reads 1e38 as a string
    ("teacher: {seed: 1.0e+38}\n", "teacher", "seed: must be an integer, not 1e+38"),
    ("teacher: {seed: 99999999999}\n", "teacher.seed", "less than or equal to 4294967295"),
    ("compress: {distill: {integrate: 1}}\n", "compress.distill", "integrate: must be true or false, not 1"),
]


@pytest.mark.parametrize("body,key,message", MALFORMED, ids=[f"{i:02d}-{k or 'file'}" for i, (_, k, _) in enumerate(MALFORMED)])
def test_malformed_config_names_file_key_and_allowed(tmp_path, capsys, body, key, message):
    text = body[len("!full:"):] if body.startswith("!full:") else BASE + body
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        expand(load_config(path), path)
    assert exc.value.file == str(path)
    assert exc.value.key == key
    assert message in exc.value.message
    # The CLI prints exactly one line and exits 2.
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and message in err[0]


def test_a_config_over_the_size_limit_is_refused_unread(tmp_path, capsys):
    path = write(tmp_path, BASE + "# " + "x" * 1_000_000 + "\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bytes; at most 1,000,000" in err[0]


def test_missing_config_file(capsys, tmp_path):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_cli_exit_code_and_no_traceback_in_a_real_process(tmp_path):
    path = write(tmp_path, BASE + "teacher: {batch_size: -1}\n")
    out = subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == f"eib: error: {path}: teacher.batch_size: Input should be greater than or equal to 1 (got -1)"


def test_malformed_inventory_names_device_and_key(tmp_path):
    (tmp_path / "inventory.yaml").write_text("devices:\n  pi:\n    transport: ssh\n    host: 10.0.0.2\n")
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key == "devices.pi" and "needs user" in exc.value.message
    assert exc.value.file.endswith("inventory.yaml")


def test_every_example_in_configs_dir_is_yaml_mapping():
    for p in CONFIGS:
        assert isinstance(yaml.safe_load(p.read_text()), dict), p


def test_read_only_commands_never_create_or_alter_a_database(tmp_path, capsys):
    import sqlite3

    from eibutil import sha256_file

    new = tmp_path / "new" / "deeper" / "eib.sqlite"
    assert main(["runs", "--db", str(new)]) == 2 and not (tmp_path / "new").exists()
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = sha256_file(foreign)
    assert main(["runs", "--db", str(foreign)]) == 2
    assert main(["report", "some-run", "--db", str(foreign)]) == 2
    assert sha256_file(foreign) == before and sorted(p.name for p in tmp_path.iterdir()) == ["foreign.sqlite"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no results database there" in err[0] and "not an eib results database" in err[1]


@pytest.mark.parametrize("argv, message", [
    (["measure", "x", "--device", "local", "--seq-len", "0"], "--seq-len: must be an integer between 8 and 512"),
    (["measure", "x", "--device", "local", "--rows", "-3"], "--rows: must be an integer >= 1"),
    (["measure", "x", "--device", "local", "--min-count", "0"], "--min-count: must be an integer >= 1"),
    (["measure", "x", "--device", "local", "--max-duration-s", "-1"], "--max-duration-s: must be a finite number > 0"),
    (["measure", "x", "--device", "local", "--min-duration-s", "inf"], "--min-duration-s: must be a finite number >= 0"),
    (["evaluate", "bundled", "--data", "x.tsv", "--max-seq-len", "0"], "--max-seq-len: must be an integer between 8 and 512"),
    (["evaluate", "bundled", "--data", "x.tsv", "--text-fields", "a,b,c"], "--text-fields: one column, or two"),
])
def test_bad_command_line_values_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_evaluate_a_truncated_model_or_a_corrupt_manifest_is_one_line_and_exit_2(tmp_path, capsys):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(ROOT / "models/sst2-2mb", art)
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\na fine film\t1\n")
    (art / "model.onnx").write_bytes((ROOT / "models/sst2-2mb/model.onnx").read_bytes()[:5000])
    assert main(["evaluate", str(art), "--data", str(dev)]) == 2
    (art / "manifest.json").write_text("{not json")
    assert main(["evaluate", str(art), "--data", str(dev)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "model.onnx: 5,000 bytes, the manifest says" in err[0]
    assert "manifest.json: no file sizes and checksums" in err[1]


def test_budget_values_must_be_numbers():
    from eibutil import UserError
    from harness.report.summary import parse_budget

    assert parse_budget("size=2MB,accuracy=0.88,latency_ms=.5") == {"size": 2e6, "accuracy": 0.88, "latency_ms": 0.5}
    for bad in ("size=1.2.3MB", "size=.MB", "accuracy=..", "size=2XB"):
        with pytest.raises(UserError, match="--budget"):
            parse_budget(bad)
