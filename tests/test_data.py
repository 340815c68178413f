"""Task data from every local format, sentence pairs, string labels, and the errors for bad files."""

import json

import pandas as pd
import pytest

from eibert.data import DataError, load_eval_file, load_task
from eibutil import sha256_file
from tests.conftest import tiny_sentences

ROWS = tiny_sentences(40)


def write_all_formats(folder, rows, stem):
    df = pd.DataFrame(rows, columns=["sentence", "label"])
    paths = {
        "tsv": folder / f"{stem}.tsv",
        "csv": folder / f"{stem}.csv",
        "json": folder / f"{stem}.json",
        "jsonl": folder / f"{stem}.jsonl",
        "parquet": folder / f"{stem}.parquet",
    }
    paths["tsv"].write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows), encoding="utf-8")
    df.to_csv(paths["csv"], index=False)
    paths["json"].write_text("\n".join(json.dumps({"sentence": s, "label": y}) for s, y in rows) + "\n")
    paths["jsonl"].write_text("\n".join(json.dumps({"sentence": s, "label": y}) for s, y in rows) + "\n")
    df.to_parquet(paths["parquet"])
    return paths


@pytest.mark.parametrize("fmt", ["tsv", "csv", "json", "jsonl", "parquet"])
def test_each_local_format_loads_the_same_rows(tmp_path, fmt):
    train = write_all_formats(tmp_path, ROWS[:30], "train")[fmt]
    dev = write_all_formats(tmp_path, ROWS[30:], "dev")[fmt]
    data = load_task(source="files", train_file=train, dev_file=dev, text_fields=["sentence"])
    assert list(data.train["text_a"]) == [s for s, _ in ROWS[:30]]
    assert list(data.train["label"]) == [y for _, y in ROWS[:30]]
    assert len(data.dev) == 10 and data.num_labels == 2 and not data.pair
    assert data.checksums == {"train": sha256_file(train), "dev": sha256_file(dev)}


def test_tsv_with_quotes_is_read_without_quoting(tmp_path):
    p = tmp_path / "q.tsv"
    p.write_text('sentence\tlabel\n"a quoted start\t1\nit \'s " odd\t0\n')
    ds, sha, _ = load_eval_file(p)
    assert list(ds["text_a"]) == ['"a quoted start', 'it \'s " odd'] and sha == sha256_file(p)


def test_embedded_sample_is_stratified_sst2():
    data = load_task(source="embedded", name="sst2")
    assert len(data.train) == 2000 and len(data.dev) == 872
    share = sum(data.train["label"]) / len(data.train)
    assert 0.54 < share < 0.58  # SST-2 train is 55.8% positive


def test_sentence_pairs_and_string_labels(tmp_path):
    rows = [("a man sleeps", "a person rests", "entailment"), ("a cat", "a dog", "contradiction"), ("x", "y", "neutral")]
    for name in ("train", "dev"):
        (tmp_path / f"{name}.csv").write_text("premise,hypothesis,label\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    data = load_task(source="files", train_file=tmp_path / "train.csv", dev_file=tmp_path / "dev.csv", text_fields=None)
    assert data.pair and data.num_labels == 3
    assert data.label_names == ["contradiction", "entailment", "neutral"]
    assert list(data.train["label"]) == [1, 0, 2] and data.train[0]["text_b"] == "a person rests"


def test_max_train_rows_subsamples_stratified(tmp_path):
    data = load_task(source="embedded", name="sst2", max_train_rows=200, seed=1)
    assert len(data.train) == 200
    assert 100 < sum(data.train["label"]) < 125


def test_missing_column_names_file_and_columns(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("text\tlabel\nhello\t1\n")
    with pytest.raises(DataError, match=r"t\.tsv: no column 'sentence'; columns: text, label"):
        load_task(source="files", train_file=p, dev_file=p, text_fields=["sentence"])


def test_unsupported_format_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unsupported format '.xlsx'"):
        load_eval_file(tmp_path / "x.xlsx")
    with pytest.raises(DataError, match="file not found"):
        load_eval_file(tmp_path / "missing.tsv")


def test_unknown_embedded_dataset():
    with pytest.raises(DataError, match="no embedded dataset 'mnli'; embedded: sst2"):
        load_task(source="embedded", name="mnli")


def test_unreachable_hub_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"hub dataset 'glue/sst2' could not be loaded \(offline\?"):
        load_task(source="hub", hub_id="glue", hub_config="sst2")
