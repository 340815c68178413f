"""Property-based hostile input: generated malformed configs and inventories (wrong types, bounds, unknown
keys, aliases, deep nesting, odd bytes) through the CLI's own entry point, in-process. Each `eib plan` /
`eib devices list` ends with exit 0 or 2, within 10 s, and a failure is one line naming the file."""

import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli.commands import main

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30), st.just("../../etc/passwd"), st.just("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"))
VALUES = st.recursive(SCALARS,
                      lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                      max_leaves=12)
CONFIG_KEYS = {
    "name": st.one_of(st.just("t"), VALUES),
    "teacher": st.dictionaries(st.sampled_from(["epochs", "batch_size", "learning_rate", "seed", "epoch"]), VALUES, max_size=3),
    "task": st.dictionaries(st.sampled_from(["source", "max_seq_len", "text_fields", "train_file", "selection"]), VALUES,
                            max_size=3),
    "compress": st.dictionaries(st.sampled_from(["student", "vocab", "distill", "quant", "augment", "bogus"]), VALUES,
                                max_size=3),
    "measure": st.dictionaries(st.sampled_from(["seq_len", "min_count", "max_duration_s", "runtimes"]), VALUES, max_size=3),
    "sweep": st.dictionaries(st.sampled_from(["grid", "variants", "ablation"]), VALUES, max_size=2),
    "devices": VALUES, "results": VALUES,
}
DEVICE = st.dictionaries(st.sampled_from(["transport", "host", "port", "user", "key_file", "key_env", "use_agent", "workdir",
                                          "threads",
                                          "connect_timeout_s", "link_timeout_s", "arch", "target", "colour"]), VALUES, max_size=6)
ODD = st.sampled_from([
    "name: &a [*a]\n",
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, "
    "*e]\nname: *f\n",
    "name: " + "[" * 5000 + "]" * 5000 + "\n", "\xff\xfe\x00n\x00a", "name: t\nname: u\n", "- a\n- b\n", "", "{",
    "name: !!python/object:os.system x\n",
    "connect_timeout_s: .inf\n", "link_timeout_s: 1e300\n",
])


def _check(path, argv, capsys) -> None:
    t0 = time.perf_counter()
    code = main(argv)
    took = time.perf_counter() - t0
    out = capsys.readouterr()
    assert code in (0, 2), (code, out.err[-500:])
    assert took < 10, took
    assert "Traceback" not in out.err + out.out
    if code == 2:
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], out.err[-500:]


def _write(path, doc) -> None:
    if isinstance(doc, str):
        path.write_bytes(doc.encode("utf-8", "surrogatepass"))
    else:
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "inventory.yaml").write_text("devices:\n  local: {transport: local}\n")
    return d


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(doc=st.one_of(st.fixed_dictionaries({"inventory": st.just("inventory.yaml")},
                                           optional=CONFIG_KEYS), ODD, VALUES))
def test_malformed_configs_end_with_exit_0_or_one_line_and_exit_2(folder, capsys, doc):
    path = folder / "exp.yaml"
    _write(path, doc)
    _check(path, ["plan", str(path)], capsys)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(doc=st.one_of(st.fixed_dictionaries({"devices": st.dictionaries(st.sampled_from(["pi", "box", "bad name!"]),
                                                                       st.one_of(DEVICE, VALUES),
                                                                       max_size=3)}), ODD, VALUES))
def test_malformed_inventories_end_with_exit_0_or_one_line_and_exit_2(folder, capsys, doc):
    path = folder / "inv.yaml"
    _write(path, doc)
    _check(path, ["devices", "list", "--inventory", str(path)], capsys)


def _subcommands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, prefix + (name,))
            return
    yield prefix, parser


def _flag_cases():
    """(argv, flag) for every option of every subcommand that takes a typed or chosen value, given a bad one."""
    import argparse

    from harness.cli.commands import build_parser

    for words, sub in _subcommands(build_parser()):
        positional = [a for a in sub._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
        required = [x for a in sub._actions if a.option_strings and a.required for x in (a.option_strings[0], "x")]
        for a in sub._actions:
            if not a.option_strings or a.nargs == 0 or (a.type is None and not a.choices):
                continue
            for bad in ("not-a-value", "-1e999", "nan"):
                yield [*words, *["x"] * len(positional), *[r for r in required if r not in a.option_strings],
                       a.option_strings[0], bad], a.option_strings[0]


@pytest.mark.parametrize("argv, flag", list(_flag_cases()), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_subcommand_refuses_a_bad_value_for_each_flag_in_one_line(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert e.value.code == 2 and "Traceback" not in out.err, out.err[-400:]
    assert len(lines) == 1 and flag in lines[0], lines
