"""Task-text augmentation for distillation (Tang et al. 2019; TinyBERT's word-replacement branch).

    from eibert.augment import AugmentSettings, augment_texts
    new = augment_texts(texts, teacher_tokenizer, teacher_embeddings, AugmentSettings(copies=4, seed=0))

Each new row comes from one training row: every word that is a single word piece of the teacher's
vocabulary is, with probability `p_replace`, replaced by one of its `neighbours` nearest words in the
teacher's input-embedding space (cosine; the bundled teacher ships no MLM head), else masked with
probability `p_mask`; then, with probability `p_ngram`, only a random n-gram (n in 1..5) is kept.
Rows get copies in proportion to their length (dev sentences are twice as long as train rows), so
the `copies * len(texts)` new rows lean toward long sentences. New rows carry no hard label: their
targets are the teacher's soft labels only (a swap can flip the sentiment). Seeded: same inputs and
seed, same rows.
"""

import math
import random
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentSettings:
    copies: float = 0.0  # new rows per training row on average (0: no augmentation)
    p_replace: float = 0.4
    neighbours: int = 15
    p_mask: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def word_neighbours(tokenizer, embeddings: np.ndarray, words: set[str], k: int) -> dict[str, list[str]]:
    """For each of `words` that is a whole word piece: its k nearest whole-word pieces by cosine."""
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    pool = [t for t in vocab if t.isalpha() and t not in special and not t.startswith("##") and not t.startswith("[")]
    pool_ids = np.array([vocab[t] for t in pool])
    emb = embeddings[pool_ids].astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-8
    index = {t: i for i, t in enumerate(pool)}
    queries = sorted(w for w in words if w in index)
    out: dict[str, list[str]] = {}
    for a in range(0, len(queries), 2048):
        chunk = queries[a : a + 2048]
        sims = emb[[index[w] for w in chunk]] @ emb.T  # (q, P)
        top = np.argpartition(-sims, k + 1, axis=1)[:, : k + 1]
        for w, cand, row in zip(chunk, top, sims):
            ranked = cand[np.argsort(-row[cand])]
            out[w] = [pool[j] for j in ranked if pool[j] != w][:k]
    return out


def copies_per_row(lengths: list[int], copies: float, rng: random.Random) -> list[int]:
    """Stochastically rounded copies proportional to length; they sum to about copies * rows."""
    mean = sum(lengths) / max(1, len(lengths))
    return [math.floor(copies * n / mean + rng.random()) for n in lengths]


def augment_one(words: list[str], nb: dict[str, list[str]], st: AugmentSettings, rng: random.Random, mask: str) -> str:
    out = []
    for w in words:
        r = rng.random()
        if w in nb and nb[w] and r < st.p_replace:
            out.append(rng.choice(nb[w]))
        elif r < st.p_replace + st.p_mask:
            out.append(mask)
        else:
            out.append(w)
    if len(out) > 1 and rng.random() < st.p_ngram:
        n = rng.randint(1, min(st.max_ngram, len(out)))
        a = rng.randint(0, len(out) - n)
        out = out[a : a + n]
    return " ".join(out)


def augment_texts(texts: list[str], tokenizer, embeddings: np.ndarray, st: AugmentSettings) -> tuple[list[str], list[int]]:
    """(new texts, index of the source row of each); empty when `st.copies` is 0."""
    if st.copies <= 0:
        return [], []
    rng = random.Random(st.seed)
    split = [t.split() for t in texts]
    nb = word_neighbours(tokenizer, embeddings, {w for ws in split for w in ws}, st.neighbours)
    new, src = [], []
    for i, (ws, c) in enumerate(zip(split, copies_per_row([len(ws) for ws in split], st.copies, rng))):
        for _ in range(c):
            new.append(augment_one(ws, nb, st, rng, tokenizer.mask_token))
            src.append(i)
    return new, src
