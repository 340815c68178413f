"""Every version constant that changes an output is part of the keys downstream of it: bump each, the keys change."""

from pathlib import Path

import pytest

from eibert import versions
from harness.stages.state import Payload


def _memo(tmp_path):
    from types import SimpleNamespace

    from harness.stages.node import _memo_path

    cfg = SimpleNamespace(task=SimpleNamespace(train_file=None, dev_file=None), teacher=SimpleNamespace(model="bundled"),
                          cache_dir=tmp_path)
    return _memo_path(SimpleNamespace(key="k" * 20, payload=Payload(cfg)))


def _student_key(tmp_path):
    from types import SimpleNamespace

    from eibert.augment import AugmentSettings
    from eibert.cached_stages import student_key
    from eibert.distill import DistillSettings
    from eibert.phase_training import PhaseSettings
    from eibert.student import StudentSpec
    from eibert.targets import TargetSettings
    from eibutil.cache import Cache

    data = SimpleNamespace(checksums={"train": "a", "dev": "b"}, train=[1, 2, 3])
    spec = StudentSpec(vocab_size=100, num_labels=2, teacher_hidden=32)
    return student_key(Cache(tmp_path), "vocab-key", "teacher-fp", spec, "teacher",
                       DistillSettings(phases=(PhaseSettings("prediction"),)),
                       data, 64, AugmentSettings(copies=1), TargetSettings(("t",)), ["x"])[0]


@pytest.mark.parametrize("name", versions.NAMES)
def test_bumping_a_version_changes_the_keys_downstream(name, monkeypatch, tmp_path):
    memo, student = _memo(tmp_path), _student_key(tmp_path)
    monkeypatch.setattr(versions, name, getattr(versions, name) + 1)
    assert _memo(tmp_path) != memo, f"{name} is not in the node memo key"
    if name not in ("EXPORT", "TEACHER_TRAINING"):  # those are upstream/downstream of the student through other keys
        assert _student_key(tmp_path) != student, f"{name} is not in the student key"


def test_the_build_version_is_in_the_memo_key(monkeypatch, tmp_path):
    import compiler.build as tb

    memo = _memo(tmp_path)
    monkeypatch.setattr(tb, "BUILD_VERSION", tb.BUILD_VERSION + 1)
    assert _memo(tmp_path) != memo


def test_each_version_is_read_where_its_output_is_keyed():
    """Each constant is used by the module that makes that output (no constant defined and never keyed)."""
    root = Path(__file__).resolve().parents[1] / "eibert"
    users = {"STAGES": "cached_stages.py", "EXPORT": "compress.py", "TEACHER_TRAINING": "teacher.py",
             "TEACHER_OUTPUTS": "teacher_outputs.py",
             "AUGMENT": "phase_data.py", "TARGETS": "targets.py"}
    assert set(users) == set(versions.NAMES)
    for name, module in users.items():
        assert f"versions.{name}" in (root / module).read_text(), (name, module)


def test_a_diverged_student_fails_its_stage_with_the_reason():
    import torch

    from eibert.cached_stages import NonFiniteModel, check_finite

    m = torch.nn.Linear(3, 2)
    check_finite(m)
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteModel, match=r"1 parameter tensor\(s\) hold inf or NaN \(weight\)"):
        check_finite(m)
