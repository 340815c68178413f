"""Artifacts are checked against their manifest before evaluate, measure, build or upload: plain files inside the
folder, of the recorded size and sha256; one line and exit 2 otherwise."""

import shutil
from pathlib import Path

import pytest

from eibert.verify import ArtifactError, verify_artifact
from harness.cli.commands import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def art(tmp_path):
    a = tmp_path / "art"
    shutil.copytree(ROOT / "models/sst2-2mb", a)
    return a


def test_the_shipped_artifact_verifies(art):
    deployed = sum(f.stat().st_size for f in (art / "model.onnx", art / "vocab.txt"))  # the budget's bytes, as on disk
    assert verify_artifact(art)["size_bytes"] == deployed <= 2_000_000


def test_a_symlink_out_of_the_folder_is_refused(art, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_bytes((art / "model.onnx").read_bytes())  # same bytes: only the link gives it away
    (art / "model.onnx").unlink()
    (art / "model.onnx").symlink_to(secret)
    with pytest.raises(ArtifactError, match="model.onnx: a symlink"):
        verify_artifact(art)


def test_a_huge_stand_in_is_refused_by_size_without_hashing(art, monkeypatch):
    import eibert.verify as v

    with open(art / "vocab.txt", "ab") as f:  # 10 M lines appended
        f.write(b"tok\n" * 10_000_000)
    monkeypatch.setattr(v, "sha256_file_memo", lambda *a: pytest.fail("hashed a file whose size already differs"))
    with pytest.raises(ArtifactError, match=r"vocab.txt: 40,034,846 bytes, the manifest says 34,846"):
        verify_artifact(art)


def test_same_size_other_bytes_and_old_manifests_are_refused(art):
    n = (art / "vocab.txt").stat().st_size
    (art / "vocab.txt").write_bytes(b"\0" * n)
    with pytest.raises(ArtifactError, match="vocab.txt: sha256 differs"):
        verify_artifact(art)
    (art / "manifest.json").write_text('{"format": "eibert-artifact/1", "size_bytes": 1}')
    with pytest.raises(ArtifactError, match="re-export it"):
        verify_artifact(art)


def test_evaluate_and_measure_refuse_a_tampered_artifact_in_one_line(art, tmp_path, capsys):
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\na fine film\t1\n")
    (art / "vocab.txt").write_bytes(b"\0" * (art / "vocab.txt").stat().st_size)
    assert main(["evaluate", str(art), "--data", str(dev)]) == 2
    assert main(["measure", str(art), "--device", "local", "--inventory", str(ROOT / "inventory.yaml"), "--data", str(dev),
                 "--cache-dir", str(tmp_path / "c"), "--db", str(tmp_path / "db.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("vocab.txt: sha256 differs from the manifest's" in e for e in err), err
