"""A SIGKILL mid-epoch resumes to the same weights in every training mode: teacher fine-tuning, live
(cross-)distillation with stage gates off and on (the gates' counters are checkpointed), and the cached phases
(tests/test_accuracy_levers.py runs intermediate -> prediction -> cross). Each run is a real process that kills
itself after a step; the rerun resumes from the last checkpoint and must end bit for bit where an unbroken run ends."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _go(mode: str, kill_at: int, teacher_dir: Path, work: Path, out: Path) -> int:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tests.resume_fixture", mode, str(kill_at), str(teacher_dir), str(work),
                           str(out)], env=env, cwd=ROOT, capture_output=True, timeout=300).returncode


def _same(a_path: Path, b_path: Path) -> None:
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


@pytest.mark.parametrize("mode,kill_at,resumes_from", [("teacher", 11, "step 8: mid-way through epoch 2"), ("live", 5, "step 3"),
                                                       ("live-gates", 5, "step 3: one gate hit, stage 1")])
def test_a_sigkilled_run_resumes_to_the_weights_of_an_unbroken_one(tiny_bert, tmp_path, mode, kill_at, resumes_from):
    ref = tmp_path / "ref.pt"
    assert _go(mode, 0, tiny_bert, tmp_path / "ref", ref) == 0
    out = tmp_path / "out.pt"
    assert _go(mode, kill_at, tiny_bert, tmp_path / "run", out) == -signal.SIGKILL, resumes_from
    assert not out.exists()
    assert _go(mode, 0, tiny_bert, tmp_path / "run", out) == 0
    _same(ref, out)


def test_the_gates_change_the_run_so_the_gate_test_can_fail(tiny_bert, tmp_path):
    """With gates on, the first steps train the intermediate layers only: the weights differ from a gateless run."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    assert _go("live", 0, tiny_bert, tmp_path / "a", a) == 0 and _go("live-gates", 0, tiny_bert, tmp_path / "b", b) == 0
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert int(sa["stage1_steps"]) == 0 and int(sb["stage1_steps"]) == 4
    assert not torch.equal(sa["student.classifier.weight"], sb["student.classifier.weight"])
