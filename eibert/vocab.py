"""Hard token (vocabulary) pruning by attention importance.

    from eibert.vocab import attention_importance, select_tokens, build_pruned_tokenizer
    scores = attention_importance(teacher, rows)            # (V,) float64
    keep = select_tokens(tokenizer, scores, size=8000)      # old ids, specials first
    new_tok, old_ids = build_pruned_tokenizer(tokenizer, keep, out_dir)
    embeddings = old_embeddings[old_ids]                    # row i of the new matrix = token i

Importance (method.md): the attention probability a token receives, summed over layers l, heads h,
sentences s and query positions i, over every key position j holding that token, normalised by
L*H*N:  I(t) = 1/(L*H*N) * sum_l sum_h sum_s sum_i sum_{j: token_j = t} A[l,h,s][i,j].
Padding positions are neither queries nor keys.
"""

from pathlib import Path

import numpy as np
import torch

# Printable ASCII characters and their "##" continuations: with them kept, any ASCII word can still be
# spelled out by WordPiece instead of collapsing to [UNK]. A project choice (method.md is silent): it
# costs ~190 rows and cuts the [UNK] rate on unseen words.
ASCII_ALPHABET = [chr(c) for c in range(33, 127)]


@torch.no_grad()
def attention_importance(model, rows: list, batch_size: int = 64, pad_id: int = 0, progress: bool = False) -> np.ndarray:
    """I(t) for every token id of the model's vocabulary, from `rows` = [(ids, label), ...]."""
    from tqdm.auto import tqdm

    from eibert.textcls import collate

    model.eval()
    vocab = model.config.vocab_size
    total = torch.zeros(vocab, dtype=torch.float64)
    layers = heads = None
    rows_by_len = sorted(rows, key=lambda r: len(r[0]))  # little padding; the sum does not depend on order
    for i in tqdm(range(0, len(rows), batch_size), desc="importance", disable=not progress, unit="batch", mininterval=1.0):
        b = collate(rows_by_len[i : i + batch_size], pad_id)
        ids, mask = b["input_ids"], b["attention_mask"]
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        att = torch.stack(out.attentions)  # (L, B, H, T, T): [l, s, h, i, j]
        layers, heads = att.shape[0], att.shape[2]
        att = att * mask[None, :, None, :, None]  # only real query positions i
        received = att.double().sum(dim=(0, 2, 3))  # (B, T): summed over l, h, i
        received = received * mask  # only real key positions j
        total.index_add_(0, ids.flatten(), received.flatten())
    n = len(rows)
    return (total / (layers * heads * n)).numpy() if n else total.numpy()


def token_frequency(rows: list, vocab_size: int) -> np.ndarray:
    """How often each token id occurs in `rows`: the baseline selection for ablations."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for ids, _ in rows:
        np.add.at(counts, np.asarray(ids), 1.0)
    return counts


def select_tokens(tokenizer, scores: np.ndarray, size: int | None, keep_alphabet: bool = True) -> list[int]:
    """Old ids to keep: special tokens first, then (optionally) the ASCII alphabet, then the top
    scores until `size` ids are kept (ties broken by the lower id). Tokens never seen (score 0) are not
    kept: asking for more than the corpus holds gives a smaller vocabulary, not one padded with
    arbitrary tokens. `size=None` keeps everything."""
    vocab = tokenizer.get_vocab()
    if size is None or size >= len(vocab):
        return list(range(len(vocab)))
    special = [i for i in sorted(set(tokenizer.all_special_ids))]
    forced = list(special)
    if keep_alphabet:
        for ch in ASCII_ALPHABET:
            for tok in (ch, "##" + ch):
                if tok in vocab and vocab[tok] not in forced:
                    forced.append(vocab[tok])
    if size < len(forced):
        raise ValueError(f"vocabulary size {size} is below the {len(forced)} special and alphabet tokens that are always kept")
    taken = set(forced)
    order = np.lexsort((np.arange(len(scores)), -scores))  # by score descending, then id
    ranked = [int(i) for i in order if int(i) not in taken and scores[i] > 0]
    return forced + ranked[: size - len(forced)]


def build_pruned_tokenizer(tokenizer, keep_ids: list[int], out_dir: str | Path):
    """A real BERT WordPiece tokenizer over the kept tokens, saved to `out_dir` (loads with
    `AutoTokenizer`). Returns (tokenizer, old_ids) where new id i was old id old_ids[i]; special tokens
    keep their order at the front ([PAD] first, so pad id stays 0)."""
    from transformers import BertTokenizerFast

    inv = {i: t for t, i in tokenizer.get_vocab().items()}
    pad = tokenizer.pad_token_id
    specials = [pad] + [i for i in keep_ids if i in set(tokenizer.all_special_ids) and i != pad]
    old_ids = specials + [i for i in keep_ids if i not in set(specials)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("".join(inv[i] + "\n" for i in old_ids), encoding="utf-8")
    new = BertTokenizerFast(  # transformers 5: `vocab` takes the mapping itself
        vocab={inv[i]: n for n, i in enumerate(old_ids)},
        do_lower_case=getattr(tokenizer, "do_lower_case", True),
        unk_token=tokenizer.unk_token,
        sep_token=tokenizer.sep_token,
        pad_token=tokenizer.pad_token,
        cls_token=tokenizer.cls_token,
        mask_token=tokenizer.mask_token,
        model_max_length=tokenizer.model_max_length,
    )
    new.save_pretrained(out)
    return new, old_ids


def coverage(rows_old: list, keep_ids: list[int]) -> float:
    """Share of token occurrences in `rows_old` (original ids) that the kept vocabulary still holds."""
    kept = np.zeros(max(max(keep_ids) + 1, 1), dtype=bool)
    kept[keep_ids] = True
    total = hit = 0
    for ids, _ in rows_old:
        a = np.asarray(ids)
        total += len(a)
        hit += int(kept[a[a < len(kept)]].sum())
    return hit / total if total else float("nan")


def unk_rate(rows_new: list, unk_id: int) -> float:
    """Share of tokens that are [UNK] after tokenising with the pruned tokenizer."""
    total = sum(len(ids) for ids, _ in rows_new)
    unk = sum(sum(1 for t in ids if t == unk_id) for ids, _ in rows_new)
    return unk / total if total else float("nan")
