"""A selection split carved from train that shares no sentence or sub-phrase with the rows left to train on.

    from eibert.selection import SelectionSettings, carve_selection
    data = carve_selection(data, SelectionSettings(sentences=600))
    data.selection, len(data.train), data.split_report["removed_rows"]

SST-2's train rows are phrases of the treebank's sentences, so a random row split leaks: the held-out
sentence's sub-phrases stay in train with their labels. The split takes whole sentences (rows that are
no sub-phrase of a longer row) of at least `min_words` words, seeded, and removes from train every row of
at least `min_phrase_words` words that is a contiguous whole-word sub-phrase of a selection sentence;
shorter rows ("the film") are generic and stay. Early stopping, checkpoint choice and variant choice
use the selection split; the dev set is only reported.
"""

import hashlib
import random
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class SelectionSettings:
    sentences: int = 0  # whole train sentences held out (0: no selection split; bench/quality.py uses 600)
    min_words: int = 8
    min_phrase_words: int = 3
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.lower().split())


def pick_sentences(texts: list[str], st: SelectionSettings) -> list[int]:
    """Indices of `st.sentences` whole sentences: >= min_words words and not inside any other row."""
    padded = [" " + " ".join(_words(t)) + " " for t in texts]
    haystack = "\n".join(padded)
    order = [i for i, p in enumerate(padded) if p.count(" ") - 1 >= st.min_words]
    random.Random(st.seed).shuffle(order)
    chosen: list[int] = []
    taken: set[str] = set()
    for i in order:
        if len(chosen) >= st.sentences:
            break
        p = padded[i]
        if p in taken or haystack.count(p) > 1:  # a sub-phrase of a longer row, or a duplicate
            continue
        chosen.append(i)
        taken.add(p)
    return sorted(chosen)


def sub_phrases(words: tuple[str, ...], min_words: int) -> set[tuple[str, ...]]:
    n = len(words)
    return {words[a:b] for a in range(n) for b in range(a + min_words, n + 1)}


def leaked_rows(texts: list[str], sentences: list[str], min_phrase_words: int) -> list[int]:
    """Rows of `texts` with >= min_phrase_words words that are a contiguous sub-phrase of a sentence."""
    phrases: set[tuple[str, ...]] = set()
    for s in sentences:
        phrases |= sub_phrases(_words(s), min_phrase_words)
    return [i for i, t in enumerate(texts) if len(w := _words(t)) >= min_phrase_words and w in phrases]


def carve_selection(data, st: SelectionSettings):
    """A copy of `data` with `selection` (the held-out sentences) and `train` without them or their
    sub-phrases; `split_report` says what was removed; the split's spec joins `checksums`."""
    if st.sentences <= 0:
        return data
    if data.pair:
        raise ValueError("the selection split needs single-sentence rows (sentence pairs have no sub-phrase structure)")
    texts = list(data.train["text_a"])
    chosen = pick_sentences(texts, st)
    if not chosen:
        raise ValueError(f"no train row of {st.min_words}+ words is a whole sentence: nothing to select")
    leak = set(leaked_rows(texts, [texts[i] for i in chosen], st.min_phrase_words)) | set(chosen)
    keep = [i for i in range(len(texts)) if i not in leak]
    spec = hashlib.sha256(f"{data.checksums.get('train')}|{sorted(asdict(st).items())}".encode()).hexdigest()
    report = {"selection_sentences": len(chosen), "removed_rows": len(leak), "train_rows_before": len(texts),
              "train_rows_after": len(keep), "removed_share": len(leak) / len(texts), **st.to_json()}
    return replace(data, train=data.train.select(keep), selection=data.train.select(chosen),
                   checksums={**data.checksums, "selection": spec}, split_report=report)
