"""End-to-end latency on the device: text in, label out, tokeniser included, beside the model-only numbers."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/sst2-2mb"


def test_a_local_measurement_stores_both_latencies_and_the_same_labels(tmp_path):
    from devices.inventory import DeviceSpec
    from eibert.data import load_task
    from harness.measure.run import MeasureSettings, measure_on_device

    st = MeasureSettings(seq_len=64, rows=24, warmup=2, min_count=20, min_duration_s=0.2, null_floor=False)
    spec = DeviceSpec(transport="local", workdir=str(tmp_path / "dev"), threads=1)
    out = measure_on_device(MODEL, "local", spec, "onnxruntime", load_task().dev, st, tmp_path / "cache")
    e = out["metrics"]["end_to_end"]
    assert e["n"] == out["n"] == 24 and e["predictions_agree"] == 24  # the text path labels what the model path labels
    assert e["count"] >= 20 and e["p50_ms"] > 0 and e["p90_ms"] >= e["p50_ms"] and out["p50_ms"] > 0
    assert e["tokenizer"].startswith(("tokenizers", "pure-python"))
    off = measure_on_device(MODEL, "local", spec, "onnxruntime", load_task().dev,
                            MeasureSettings(seq_len=64, rows=8, warmup=1, min_count=5, min_duration_s=0, null_floor=False,
                                            end_to_end=False),
                            tmp_path / "cache")
    assert off["metrics"]["end_to_end"] is None


def test_the_runner_tokenises_in_pure_python_where_tokenizers_is_missing(monkeypatch):
    spec = importlib.util.spec_from_file_location("textpass_under_test", ROOT / "devices/remote/textpass.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # a device without the compiled package
    encode, how = runner.tokenizer(str(MODEL / "vocab.txt"), 64)
    assert how == "pure-python wordpiece"
    monkeypatch.delitem(sys.modules, "tokenizers")
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    text = "A gorgeous, witty, seductive movie."
    assert encode(text) == ref.encode(text).ids
