"""The accuracy levers on tiny data: the selection split does not leak, teacher outputs are cached and
equal a fresh forward, augmentation is seeded and soft-labelled, phases run in order and resume after a
SIGKILL with the same weights, the folded head computes the same function, and the paired statistics."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eibert.augment import AugmentSettings, augment_texts
from eibert.data import load_task
from eibert.hub import load_classifier, load_tokenizer
from eibert.phase_data import training_rows
from eibert.selection import SelectionSettings, carve_selection, sub_phrases
from eibert.student import Student, StudentSpec, fold_head
from eibert.teacher_outputs import slot_means, teacher_outputs, word_slots
from eibutil.cache import Cache
from eibutil.stats import mcnemar_exact, wilson

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    ("a gorgeous , witty , seductive movie about love and loss .", 1),
    ("the plot is nothing but boilerplate clichés from start to finish .", 0),
    ("an utterly charming and hilarious film that reminded me why i go to the movies .", 1),
    ("it is a dull , lifeless exercise in style over substance .", 0),
]


def _phrases_of(s: str) -> list[str]:
    w = s.split()
    return [" ".join(w[a:b]) for a in range(len(w)) for b in range(a + 1, len(w) + 1) if (a, b) != (0, len(w))]


@pytest.fixture
def treebank(tmp_path):
    """Train rows shaped like SST-2's: whole sentences and many of their sub-phrases."""
    rows = []
    for s, y in SENTENCES:
        rows.append((s, y))
        rows += [(p, y) for p in _phrases_of(s)[::3]]
    rows += [("the film", 1), ("boring", 0), ("love", 1)]
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    dev.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in SENTENCES))
    return load_task(source="files", train_file=train, dev_file=dev, text_fields=["sentence"])


def test_selection_split_shares_no_sentence_or_sub_phrase_with_train(treebank):
    data = carve_selection(treebank, SelectionSettings(sentences=2, min_words=8, min_phrase_words=3))
    chosen = list(data.selection["text_a"])
    assert len(chosen) == 2 and set(chosen) <= {s for s, _ in SENTENCES}  # whole sentences, not sub-phrases
    train = list(data.train["text_a"])
    banned = set().union(*(sub_phrases(tuple(s.split()), 3) for s in chosen))
    assert not [t for t in train if tuple(t.split()) in banned]
    assert not set(chosen) & set(train)
    assert {"the film", "boring", "love"} <= set(train)  # 1-2 word rows are generic and stay
    rep = data.split_report
    assert rep["removed_rows"] == len(treebank.train) - len(data.train) > 2
    assert data.checksums["selection"] != carve_selection(treebank,
                                                          SelectionSettings(sentences=2, seed=1)).checksums.get("selection", "")


def test_teacher_outputs_equal_a_fresh_forward_and_hit_the_cache(tiny_bert, tmp_path):
    teacher, tok = load_classifier(str(tiny_bert)).eval(), load_tokenizer(str(tiny_bert))
    texts = [s for s, _ in SENTENCES] + ["short one", "[MASK] movie"]
    cache = Cache(tmp_path)
    out, rep = teacher_outputs(teacher, tok, texts, layers=[0, 1], max_seq_len=16, cache=cache, key_spec={"t": "tiny"},
                               progress=False)
    assert not rep["cache_hit"] and rep["rows"] == len(texts) and rep["bytes"] > 0
    for i, t in enumerate(texts):
        enc = tok([t], truncation=True, max_length=16)
        with torch.no_grad():
            ref = teacher(input_ids=torch.tensor(enc["input_ids"]), output_hidden_states=True)
        np.testing.assert_allclose(out.logits[i], ref.logits[0].numpy(), atol=1e-5)
        slots = torch.tensor([word_slots(enc.word_ids(0), len(enc["input_ids"][0]))])
        n = int(slots.max()) + 1
        for j, layer in enumerate([0, 1]):
            want = slot_means(ref.hidden_states[layer + 1], slots, n)[0].numpy()
            np.testing.assert_allclose(out.hidden(i)[:, j].astype(np.float32), want, atol=2e-3, rtol=2e-3)  # fp16
    again, rep2 = teacher_outputs(teacher, tok, texts, layers=[0, 1], max_seq_len=16, cache=cache, key_spec={"t": "tiny"},
                                  progress=False)
    assert rep2["cache_hit"] and np.array_equal(again.logits, out.logits)


def test_augmentation_is_seeded_and_augmented_rows_have_soft_labels_only(tiny_bert, treebank):
    tok, teacher = load_tokenizer(str(tiny_bert)), load_classifier(str(tiny_bert))
    emb = teacher.get_input_embeddings().weight.detach().numpy()
    texts = list(treebank.train["text_a"])
    a = augment_texts(texts, tok, emb, AugmentSettings(copies=2, seed=3))
    assert a == augment_texts(texts, tok, emb, AugmentSettings(copies=2, seed=3))
    assert a != augment_texts(texts, tok, emb, AugmentSettings(copies=2, seed=4))
    new, src = a
    assert abs(len(new) - 2 * len(texts)) < 0.35 * len(texts) and len(new) == len(src)
    lengths = [len(texts[i].split()) for i in src]
    assert np.mean(lengths) > np.mean([len(t.split()) for t in texts])  # copies lean toward long rows
    assert any(n != texts[s] for n, s in zip(new, src))
    all_texts, labels = training_rows(treebank, new)
    assert all_texts[: len(texts)] == texts and labels[: len(texts)] == list(treebank.train["label"])
    assert labels[len(texts):] == [-1] * len(new)  # never a hard label on an augmented row


def test_folded_head_gives_the_same_logits():
    torch.manual_seed(0)
    s = Student(StudentSpec(vocab_size=50, hidden=16, heads=2, ffn=32, embedding_size=8, integrate=True, teacher_hidden=24,
                            max_positions=16)).eval()
    with torch.no_grad():
        s.bridge.weight.normal_()
        s.bridge.bias.normal_()
    f = fold_head(s).eval()
    assert f.bridge is None and f.pooler.weight.shape == (24, 16)
    ids, mask = torch.randint(0, 50, (4, 12)), torch.ones(4, 12, dtype=torch.long)
    torch.testing.assert_close(f(ids, mask)["logits"], s(ids, mask)["logits"], atol=1e-5, rtol=0)
    n_s, n_f = sum(p.numel() for p in s.parameters()), sum(p.numel() for p in f.parameters())
    assert n_s - n_f == 24 * 24 + 24  # the square matrix and one bias are gone


PHASE_SCRIPT = """
import os, signal, sys, json, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from phase_fixture import run
kill_at = int(sys.argv[1])
def on_step(step):
    on_step.n = getattr(on_step, "n", 0) + 1
    if on_step.n == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
rep, state = run(sys.argv[2], sys.argv[3], on_step, qat=sys.argv[5] == "qat")
torch.save(state, sys.argv[4])
json.dump([p["kind"] for p in rep["phases"]], open(sys.argv[4] + ".json", "w"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("qat", ["float", "qat"])
def test_phases_run_in_order_and_resume_after_sigkill_with_the_same_weights(tiny_bert, tmp_path, qat):
    """Killed in the prediction phase (with `qat`: the first quantization-aware one, so the resumed run must
    quantize before it loads the checkpoint), a rerun ends with the unbroken run's weights and step sizes."""
    script = tmp_path / "run.py"
    script.write_text(PHASE_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests")))

    def go(kill_at: int, ck: str, out: str) -> int:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        return subprocess.run([sys.executable, str(script), str(kill_at), str(tiny_bert), ck, out, qat], env=env,
                              capture_output=True, timeout=300).returncode

    ref = str(tmp_path / "ref.pt")
    assert go(0, str(tmp_path / "ck-ref"), ref) == 0
    assert json.loads(Path(ref + ".json").read_text()) == ["intermediate", "prediction", "cross"]
    out = str(tmp_path / "out.pt")
    assert go(19, str(tmp_path / "ck"), out) == -signal.SIGKILL  # prediction phase, step 7 of a 12-step epoch (checkpoint at 5)
    assert len(list((tmp_path / "ck").glob("phase-0-intermediate-*/done.pt"))) == 1
    assert go(0, str(tmp_path / "ck"), out) == 0
    a, b = torch.load(ref, weights_only=True), torch.load(out, weights_only=True)
    assert a.keys() == b.keys()
    assert any(k.endswith(".step") for k in a) == (qat == "qat") and ("bridge.weight" in a) == (qat == "float")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


def test_wilson_interval_and_exact_mcnemar_against_hand_computed_values():
    lo, hi = wilson(0.82, 872)
    # by hand: centre (0.82 + 1.96²/1744) / (1 + 1.96²/872) = 0.818596;
    # half 1.96·sqrt(0.1476/872 + 1.96²/(4·872²)) / 1.004406 = 0.025483
    assert (round(lo, 4), round(hi, 4)) == (0.7931, 0.8441)
    labels = [1] * 10
    one_row = mcnemar_exact([1] * 10, [1] * 9 + [0], labels)
    assert (one_row["a_only"], one_row["b_only"], one_row["p_value"], one_row["within_noise"]) == (1, 0, 1.0, True)
    six = mcnemar_exact([1] * 10, [1] * 4 + [0] * 6, labels)
    assert six["p_value"] == pytest.approx(2 / 64) and not six["within_noise"]  # 2 * 0.5^6


def test_config_sections_default_to_the_eibert_settings():
    from eibert.phase_training import PhaseSettings
    from harness.config.schema import AugmentConfig, PhaseConfig, SelectionConfig

    assert AugmentConfig().model_dump() == AugmentSettings().to_json()
    assert PhaseSettings(**PhaseConfig(kind="prediction").model_dump()) == PhaseSettings("prediction")
    assert SelectionConfig().model_dump() == SelectionSettings().to_json()
