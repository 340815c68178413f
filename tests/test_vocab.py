"""Vocabulary pruning: importance equals a hand computation; the pruned tokenizer is real and round-trips."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from eibert.hub import load_classifier, load_tokenizer
from eibert.vocab import attention_importance, build_pruned_tokenizer, coverage, select_tokens, token_frequency, unk_rate

SENTENCES = ["a gripping , funny film .", "the film is dull"]


def test_importance_equals_hand_computation(tiny_bert):
    model = load_classifier(str(tiny_bert))
    tok = load_tokenizer(str(tiny_bert))
    rows = [(tok(s)["input_ids"], 0) for s in SENTENCES]
    # By hand: each sentence alone (no padding), explicit loops over l, h, i, j.
    hand: dict[int, float] = {}
    with torch.no_grad():
        for ids, _ in rows:
            att = model(input_ids=torch.tensor([ids]), output_attentions=True).attentions
            for layer in att:
                a = layer[0]  # (H, T, T)
                for h in range(a.shape[0]):
                    for i in range(len(ids)):
                        for j, t in enumerate(ids):
                            hand[t] = hand.get(t, 0.0) + float(a[h, i, j])
    L, H, N = model.config.num_hidden_layers, model.config.num_attention_heads, len(rows)
    scores = attention_importance(model, rows, batch_size=2)  # one padded batch
    assert set(np.nonzero(scores)[0].tolist()) == set(hand)
    for t, v in hand.items():
        assert scores[t] == pytest.approx(v / (L * H * N), rel=1e-5)
    # Each query's attention sums to 1 over its keys: the total is the mean tokens per sentence.
    assert scores.sum() == pytest.approx(sum(len(r[0]) for r in rows) / N, rel=1e-5)


def test_selection_keeps_specials_alphabet_and_top_scores(tiny_bert):
    tok = load_tokenizer(str(tiny_bert))
    scores = np.zeros(tok.vocab_size)
    film, dull = tok.convert_tokens_to_ids(["film", "dull"])
    scores[film], scores[dull] = 2.0, 1.0
    keep = select_tokens(tok, scores, size=300)
    # specials + alphabet + the only two tokens ever seen: never padded with unseen tokens
    assert len(keep) == len(set(keep)) < 300
    assert set(tok.all_special_ids) <= set(keep) and film in keep and dull in keep
    assert keep.index(film) < keep.index(dull)
    scores[np.arange(1000, 1500)] = np.linspace(0.5, 0.1, 500)
    keep = select_tokens(tok, scores, size=300)
    assert len(keep) == 300 and 1000 in keep and 1499 not in keep
    with pytest.raises(ValueError, match="below the"):
        select_tokens(tok, scores, size=10)
    assert select_tokens(tok, scores, size=None) == list(range(tok.vocab_size))


def test_pruned_tokenizer_round_trips(tiny_bert, tmp_path):
    tok = load_tokenizer(str(tiny_bert))
    rows = [(tok(s)["input_ids"], 0) for s in SENTENCES]
    keep = select_tokens(tok, token_frequency(rows, tok.vocab_size), size=400)
    new, old_ids = build_pruned_tokenizer(tok, keep, tmp_path / "tok")
    assert len(new) == len(keep) and new.pad_token_id == 0 and sorted(old_ids) == sorted(keep)
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for s in SENTENCES:
        ids = loaded(s)["input_ids"]
        assert loaded.decode(ids, skip_special_tokens=True) == tok.decode(tok(s)["input_ids"], skip_special_tokens=True)
        assert [old_ids[i] for i in ids] == tok(s)["input_ids"]  # same tokens, new numbering
    # A word never seen is spelled with kept pieces (the alphabet), not [UNK]; coverage counts it out.
    unseen = [(loaded("zyx")["input_ids"], 0)]
    assert unk_rate(unseen, loaded.unk_token_id) == 0.0
    assert coverage([(tok("zyx film")["input_ids"], 0)], keep) < 1.0
    assert coverage(rows, keep) == 1.0
