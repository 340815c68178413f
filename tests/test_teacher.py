"""Teacher fine-tuning on tiny data: trains, scores on dev, and a second call is a cache hit."""

import json
import subprocess
import sys

import pytest

from eibert.data import load_task
from eibert.hub import ModelNotFound, model_fingerprint, resolve_model
from eibert.teacher import finetune_teacher


@pytest.fixture
def tiny_task(task_files):
    return load_task(source="files", train_file=task_files["train"], dev_file=task_files["dev"], text_fields=["sentence"])


def test_second_call_is_a_cache_hit(tiny_bert, tiny_task, tmp_path):
    hp = {"max_steps": 3, "batch_size": 16, "learning_rate": 1e-3}
    first = finetune_teacher(str(tiny_bert), tiny_task, cache_dir=str(tmp_path / "c"), hp=hp, max_seq_len=32, progress=False)
    assert not first.cache_hit and first.steps == 3 and first.dev_n == 32
    assert 0.0 <= first.dev_accuracy <= 1.0
    second = finetune_teacher(str(tiny_bert), tiny_task, cache_dir=str(tmp_path / "c"), hp=hp, max_seq_len=32, progress=False)
    assert second.cache_hit and second.model_dir == first.model_dir and second.dev_accuracy == first.dev_accuracy
    assert second.wall_s < first.wall_s
    # Any change to the hyper-parameters (or data, or model) is a different entry.
    third = finetune_teacher(str(tiny_bert), tiny_task, cache_dir=str(tmp_path / "c"), hp={**hp, "seed": 1}, max_seq_len=32,
                             progress=False)
    assert not third.cache_hit and third.cache_key != first.cache_key


def test_training_changes_the_weights_and_is_deterministic(tiny_bert, tiny_task, tmp_path):
    from eibert.hub import load_classifier

    hp = {"max_steps": 4, "batch_size": 16, "learning_rate": 1e-3}
    a = finetune_teacher(str(tiny_bert), tiny_task, cache_dir=str(tmp_path / "a"), hp=hp, max_seq_len=32, progress=False)
    b = finetune_teacher(str(tiny_bert), tiny_task, cache_dir=str(tmp_path / "b"), hp=hp, max_seq_len=32, progress=False)
    wa = load_classifier(a.model_dir).bert.encoder.layer[0].attention.self.query.weight
    wb = load_classifier(b.model_dir).bert.encoder.layer[0].attention.self.query.weight
    w0 = load_classifier(str(tiny_bert)).bert.encoder.layer[0].attention.self.query.weight
    assert (wa - wb).abs().max().item() == 0.0
    assert (wa - w0).abs().max().item() > 0.0


def test_bundled_teacher_resolves_offline():
    path = resolve_model("bundled")
    assert path.endswith("model") and len(model_fingerprint(path)) == 64


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(ModelNotFound, match="no such model folder"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="not a model folder"):
        resolve_model(str(tmp_path / "empty"))


def test_eib_evaluate_prints_accuracy_n_and_sha(tiny_bert, task_files):
    from eibutil import sha256_file

    out = subprocess.run([sys.executable, "-m", "harness.cli", "evaluate", str(tiny_bert), "--data", str(task_files["dev"])],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["n"] == 32 and 0 <= res["accuracy"] <= 1 and res["sha256"] == sha256_file(task_files["dev"])


def test_eib_evaluate_bad_data_file_exits_2(tiny_bert, tmp_path):
    out = subprocess.run([sys.executable, "-m", "harness.cli", "evaluate", str(tiny_bert), "--data", str(tmp_path / "x.tsv")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "file not found" in out.stderr and "Traceback" not in out.stderr
