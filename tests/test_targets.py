"""Target teachers (any architecture, ensembles), cached sharded labelling, and the transfer set's contamination filter."""

import json

import numpy as np
import pytest

from eibutil import UserError
from tests.conftest import tiny_sentences


def _st_mpnet_folder(path):
    """A tiny MPNet saved the way sentence-transformers ships all-mpnet-base-v2: base model, no head, modules.json."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    words = sorted({w for s, _ in tiny_sentences(96) for w in s.lower().split()})
    vocab = {w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", *words, "<mask>"])}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                      special_tokens=[("<s>", 0), ("</s>", 2)])
    tok = MPNetTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                             unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    path.mkdir()
    torch.manual_seed(0)
    MPNetModel(MPNetConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=80, pad_token_id=tok.pad_token_id)).save_pretrained(path)
    tok.save_pretrained(path)
    (path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                    "type": "sentence_transformers.models.Transformer"},
                                                   {"idx": 1, "name": "1", "path": "1_Pooling",
                                                    "type": "sentence_transformers.models.Pooling"}]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                "pooling_mode_mean_tokens": True}))
    return path


@pytest.mark.slow
def test_a_sentence_transformers_mpnet_folder_is_a_teacher(tmp_path, task_files):
    from eibert.data import load_task
    from eibert.targets import cached_targets, label_texts
    from eibert.teacher import finetune_teacher
    from eibutil.cache import Cache

    folder = _st_mpnet_folder(tmp_path / "mpnet")
    data = load_task(source="files", train_file=task_files["train"], dev_file=task_files["dev"], text_fields=["sentence"])
    t = finetune_teacher(str(folder), data, cache_dir=str(tmp_path / "c"), hp={"epochs": 1, "batch_size": 16}, max_seq_len=32,
                         progress=False)
    assert t.dev_n == 32 and 0.0 <= t.dev_accuracy <= 1.0 and t.device == "cpu"
    from eibert.hub import load_classifier, load_tokenizer

    model, tok = load_classifier(t.model_dir), load_tokenizer(t.model_dir)
    assert type(model).__name__ == "MPNetForSequenceClassification"
    texts = list(data.dev["text_a"])
    logits, rep = label_texts(model, tok, texts, cache=Cache(tmp_path / "c"), teacher_key=t.cache_key, max_seq_len=32,
                              progress=False)
    assert logits.shape == (32, 2) and not rep["cache_hit"]
    labels = np.array(data.dev["label"])
    assert "".join("1" if c else "0" for c in logits.argmax(1) == labels) == t.dev_correct  # the same model as scored
    again, rep2 = cached_targets(Cache(tmp_path / "c"), t.cache_key, texts, 32)
    assert rep2["cache_hit"] and np.array_equal(again, logits)


def test_ensemble_targets_are_the_mean_of_the_members_scaled_logits(tmp_path):
    from eibert.targets import TargetSettings, ensemble, resolve_targets
    from eibutil.cache import Cache

    a = np.array([[2.0, -2.0], [0.5, 1.5]], np.float32)
    b = np.array([[1.0, 3.0], [-4.0, 0.0]], np.float32)
    assert np.allclose(ensemble([a, b], [2.0, 0.5]), (a / 2.0 + b / 0.5) / 2)
    with pytest.raises(ValueError):
        ensemble([a, b[:1]])
    cache = Cache(tmp_path)
    texts = ["good", "bad"]
    key = "teacher-key-x"
    from eibert.targets import targets_key

    with cache.publish("targets", targets_key(cache, key, texts, 64), {"report": {"rows": 2}}) as tmp:
        np.save(tmp / "logits.npy", b)
    got, rep = resolve_targets(TargetSettings((key, "structural"), (1.0, 2.0)), texts, a, cache=cache, max_seq_len=64)
    assert np.allclose(got, (b + a / 2.0) / 2) and rep["teachers"] == [key, "structural"]
    from eibutil import UserError

    with pytest.raises(UserError, match="target teacher missing-key"):
        resolve_targets(TargetSettings(("missing-key",)), texts, a, cache=cache, max_seq_len=64)


def test_sharded_labelling_resumes_after_a_kill_without_relabelling(tmp_path, monkeypatch, tiny_bert):
    from eibert import targets, textcls
    from eibert.hub import load_classifier, load_tokenizer
    from eibutil.cache import Cache

    monkeypatch.setattr(targets, "SHARD_ROWS", 8)
    texts = [s for s, _ in tiny_sentences(40)]
    model, tok = load_classifier(str(tiny_bert)), load_tokenizer(str(tiny_bert))
    real, calls = textcls.predict_logits, []

    def dying(m, rows, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt("killed mid-shard")
        calls.append(len(rows))
        return real(m, rows, **kw)

    monkeypatch.setattr(textcls, "predict_logits", dying)
    cache = Cache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        targets.label_texts(model, tok, texts, cache=cache, teacher_key="k", max_seq_len=32, progress=False)
    assert calls == [8, 8, 8] and targets.cached_targets(cache, "k", texts, 32) is None
    calls.clear()
    monkeypatch.setattr(textcls, "predict_logits", lambda m, rows, **kw: (calls.append(len(rows)), real(m, rows, **kw))[1])
    logits, rep = targets.label_texts(model, tok, texts, cache=cache, teacher_key="k", max_seq_len=32, progress=False)
    assert calls == [8, 8] and rep["resumed_shards"] == 3 and logits.shape == (40, 2)
    enc = tok(texts, truncation=True, max_length=32)["input_ids"]
    assert np.allclose(logits, real(model, [(ids, 0) for ids in enc], pad_id=tok.pad_token_id), atol=1e-5)


def test_the_transfer_filter_drops_dev_sentences_and_sentences_containing_them(tmp_path):
    from eibert.transfer import TransferSettings, build_transfer
    from eibutil import UserError

    dev = ["a gorgeous , witty , seductive movie .", "bad"]
    src = tmp_path / "reviews.txt"
    src.write_text("A gorgeous, witty, seductive movie.\n"  # the dev sentence itself (other case and punctuation)
                   "I thought it was a gorgeous , witty , seductive movie . Then the sequel came out and it was dull.\n"
                   "The plot is bad but the actors save the film from itself.\n"  # contains the one-word dev row "bad": kept
                   "An honest and moving portrait of a family in crisis.\n")
    texts, rep = build_transfer({"reviews": src}, dev, TransferSettings(phrases_per_sentence=2))
    r = rep["sources"]["reviews"]
    assert r["dropped_contaminated"] == 2 and r["kept"] == 3, r
    norm = [" ".join(t.replace(",", " ").replace(".", " ").split()) for t in texts]
    assert not any("gorgeous witty seductive movie" in t for t in norm)
    assert any("plot is bad" in t for t in texts) and r["phrases"] > 0 and rep["rows"] == len(texts)
    again, _ = build_transfer({"reviews": src}, dev, TransferSettings(phrases_per_sentence=2))
    assert again == texts  # seeded
    bad = tmp_path / "polarity-en-pang&lee2.csv"
    bad.write_text("anything\n")
    with pytest.raises(UserError, match="refused"):
        build_transfer({"rt": bad}, dev, TransferSettings())


def test_an_mpnet_structural_teacher_is_refused_with_its_role_named(tmp_path):
    from eibert.cached_stages import _teacher
    from eibutil import UserError

    folder = _st_mpnet_folder(tmp_path / "mpnet")
    with pytest.raises(UserError, match="structural teacher .* must be a BERT.*target teachers"):
        _teacher(str(folder))


def test_a_second_labeller_of_the_same_rows_waits_for_the_first_and_takes_its_entry(tmp_path, monkeypatch, tiny_bert):
    """Parallel benchmark workers: the rows are labelled once; the second caller blocks on the entry's lock and then
    reads what the first published (no label computed twice, the same logits)."""
    import threading
    import time

    from eibert import targets, textcls
    from eibert.hub import load_classifier, load_tokenizer
    from eibutil.cache import Cache

    monkeypatch.setattr(targets, "SHARD_ROWS", 8)
    texts = [s for s, _ in tiny_sentences(24)]
    model, tok = load_classifier(str(tiny_bert)), load_tokenizer(str(tiny_bert))
    real, calls, started, go = textcls.predict_logits, [], threading.Event(), threading.Event()

    def slow(m, rows, **kw):
        calls.append(threading.current_thread().name)
        started.set()
        go.wait(30)
        return real(m, rows, **kw)

    monkeypatch.setattr(textcls, "predict_logits", slow)
    out: dict = {}

    def label(name):
        out[name] = targets.label_texts(model, tok, texts, cache=Cache(tmp_path), teacher_key="k", max_seq_len=32,
                                        progress=False)

    first = threading.Thread(target=label, args=("first",), name="first")
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=label, args=("second",), name="second")
    second.start()
    time.sleep(0.5)
    assert second.is_alive() and "second" not in out  # waiting on the lock, not labelling beside the first
    go.set()
    first.join(60), second.join(60)
    assert calls == ["first"] * 3 and not out["first"][1]["cache_hit"] and out["second"][1]["cache_hit"]
    assert np.array_equal(out["first"][0], out["second"][0])


def test_an_entry_lock_is_held_across_processes_and_freed_when_its_holder_dies(tmp_path):
    import subprocess
    import sys
    import threading

    from eibutil.cache import Cache

    code = ("import sys, time; from eibutil.cache import Cache\n"
            "with Cache(sys.argv[1]).lock('student', 'k'):\n    print('held', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    got = threading.Event()

    def take():
        with Cache(tmp_path).lock("student", "k"):
            got.set()

    try:
        assert p.stdout.readline().strip() == "held"
        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not got.wait(1.0)  # another process holds it
        p.kill()  # the holder dies mid-computation: its lock goes with it
        assert got.wait(30)
    finally:
        p.kill()
        p.wait()


def _target_rungs(tmp_path, monkeypatch):
    """(args, data, rungs, rows): two target rungs whose rows are a prefix of each other's, one without targets."""
    import argparse

    from bench import target_teacher as tt
    from eibert.augment import AugmentSettings
    from eibert.selection import SelectionSettings, carve_selection
    from tests.conftest import tiny_task

    (tmp_path / "task").mkdir()
    data = carve_selection(tiny_task(tmp_path / "task"), SelectionSettings(sentences=4))
    monkeypatch.setattr(tt, "TEACHER_HP", {"epochs": 1.0, "seed": 0, "batch_size": 16})
    monkeypatch.setattr(tt, "MAX_SEQ_LEN", 32)
    args = argparse.Namespace(target_teacher=_st_mpnet_folder(tmp_path / "mpnet"), cache_dir=tmp_path / "c",
                              targets_store=tmp_path / "store")
    aug = {"augment": AugmentSettings(copies=1.0), "targets": ("mpnet",)}
    rungs = [{"variant": "+short", **aug}, {"variant": "+long", **aug},
             {"variant": "+plain", "augment": AugmentSettings(copies=1.0)}]
    rows = {"+short": ["a b"] * 10, "+long": ["a b"] * 10 + ["c d"] * 5}
    monkeypatch.setattr(tt, "rung_rows", lambda r, *a: (rows[r["variant"]], []))
    return args, data, rungs, rows


def test_the_ladder_fine_tunes_and_labels_its_target_teacher_once_and_uses_targets_made_elsewhere(tmp_path, tiny_bert,
                                                                                                  monkeypatch):
    """bench/quality.py and bench/frontier.py prepare the target teacher themselves: fine-tuned and the longest
    target rung labelled when nothing covers its rows; a prefix rung's entry sliced from it; entries already in the
    cache (labelled elsewhere) used without the teacher's weights."""
    import shutil

    from bench import target_teacher as tt
    from eibert.targets import cached_targets
    from eibutil.cache import Cache

    args, data, rungs, rows = _target_rungs(tmp_path, monkeypatch)
    key = tt.prepare_targets(args, data, rungs, tiny_bert)
    cache = Cache(args.cache_dir)
    assert cache.get("teacher", key) is not None
    long_, short = (cached_targets(cache, key, rows[n], 32) for n in ("+long", "+short"))
    assert long_ is not None and short is not None and np.array_equal(short[0], long_[0][:10])
    assert short[1]["prefix_of"] == long_[1]["key"] and tt.target_teacher_row(args.cache_dir, key)["key"] == key

    shutil.rmtree(cache.path("teacher", key))  # the weights gone: the cached targets suffice, nothing is fine-tuned
    monkeypatch.setattr("eibert.teacher.finetune_teacher", lambda *a, **k: pytest.fail("fine-tuned again"))
    assert tt.prepare_targets(args, data, rungs, tiny_bert) == key


def test_a_fresh_cache_takes_the_labelled_targets_from_the_store_and_labels_nothing(tmp_path, tiny_bert, monkeypatch):
    """The longest rung's targets are kept in the store once labelled; a machine with an empty cache takes them from
    there (no teacher weights, no labelling) and slices the prefix rungs from them: the same logits and report."""
    from bench import target_teacher as tt
    from eibert.targets import cached_targets, targets_key
    from eibutil.cache import Cache

    args, data, rungs, rows = _target_rungs(tmp_path, monkeypatch)
    key = tt.prepare_targets(args, data, rungs, tiny_bert)
    first = Cache(args.cache_dir)
    kept = sorted(p.name for p in args.targets_store.iterdir())
    assert kept == [targets_key(first, key, rows["+long"], 32)]  # the longest only: the prefixes are slices of it

    args.cache_dir = tmp_path / "fresh"
    monkeypatch.setattr("eibert.teacher.finetune_teacher", lambda *a, **k: pytest.fail("fine-tuned on a fresh cache"))
    monkeypatch.setattr("eibert.targets.label_texts", lambda *a, **k: pytest.fail("labelled on a fresh cache"))
    assert tt.prepare_targets(args, data, rungs, tiny_bert) == key
    fresh = Cache(args.cache_dir)
    for name in ("+long", "+short"):
        was, now = cached_targets(first, key, rows[name], 32), cached_targets(fresh, key, rows[name], 32)
        assert now is not None and np.array_equal(now[0], was[0]) and now[1]["teacher"] == was[1]["teacher"]
    row = tt.target_teacher_row
    assert row(args.cache_dir, key)["dev_accuracy"] == row(tmp_path / "c", key)["dev_accuracy"]

    (args.targets_store / kept[0]).rename(args.targets_store / "misnamed")  # a store folder not named by its key
    args.cache_dir = tmp_path / "third"
    with pytest.raises(UserError, match="misnamed/entry.json: not the targets entry misnamed"):
        tt.prepare_targets(args, data, rungs, tiny_bert)
