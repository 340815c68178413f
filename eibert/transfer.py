"""The transfer set: offline sentences and sub-phrases for the teacher to label, never a dev sentence.

    from eibert.transfer import TransferSettings, build_transfer
    texts, report = build_transfer({"pang-lee1": path, ...}, blocked=dev_texts + selection_texts, st=TransferSettings())
    report["sources"]["pang-lee1"]   # {"lines", "sentences", "kept", "dropped_contaminated", "phrases", ...}

Each source file holds one text per line (scripts/get-corpora.sh writes them). Lines are split into
sentences of `min_words`..`max_words` words; SST-2's train rows are phrases of sentences, so
`phrases_per_sentence` contiguous sub-phrases (`min_words`.. words) are sampled from each kept sentence
too. Every candidate is normalised (lowercase, `[a-z0-9]` words, single spaces) and dropped if it
equals a blocked sentence (the dev set and the selection split) or contains one of at least
`min_contained_words` words ("bad" and "cool" are dev sentences: containing them is no leak), counted
per source; a sub-phrase is checked again. `polarity-en-pang&lee2.csv` (Rotten Tomatoes snippets, the source of SST:
714 of the 872 SST-2 dev sentences verbatim) is refused by name. Seeded: same inputs, same texts.
"""

import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from eibutil import UserError

REFUSED = ("pang&lee2", "pang_lee2", "pang-lee2", "panglee2")
_SENT = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class TransferSettings:
    min_words: int = 4
    max_words: int = 40
    max_sentences: int | None = None  # per source, after filtering (None: all)
    phrases_per_sentence: float = 1.0
    min_contained_words: int = 4  # a blocked sentence this long or longer is also dropped when contained
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


class Blocklist:
    """Normalised blocked sentences; `hit(words)` is True when the word sequence equals or contains one."""

    def __init__(self, sentences, min_contained_words: int = 4):
        self.by_head: dict[tuple, list[tuple]] = {}
        self.exact: set[tuple] = set()
        for s in sentences:
            w = tuple(normalise(s).split())
            self.exact.add(w)
            if len(w) >= min_contained_words:  # "bad", "cool": containing them is no leak, equality is
                self.by_head.setdefault(w[:2], []).append(w)

    def hit(self, words: tuple) -> bool:
        if words in self.exact:
            return True
        for i in range(len(words)):
            for cand in self.by_head.get(words[i : i + 2], ()):
                if words[i : i + len(cand)] == cand:
                    return True
        return False


def check_source(path: Path) -> None:
    name = Path(path).name.lower()
    if any(r in name for r in REFUSED):
        raise UserError(f"{path}: refused: pang&lee2 holds SST-2's dev sentences verbatim (contamination)")
    if not Path(path).is_file():
        raise UserError(f"{path}: file not found (scripts/get-corpora.sh fetches the transfer corpora)")


def sentences(line: str, st: TransferSettings) -> list[str]:
    out = []
    for s in _SENT.split(line.strip()):
        n = len(normalise(s).split())
        if st.min_words <= n <= st.max_words:
            out.append(" ".join(s.split()))
    return out


def phrases(sentence: str, k: int, st: TransferSettings, rng: random.Random) -> list[str]:
    words = sentence.split()
    out = []
    for _ in range(k):
        if len(words) <= st.min_words:
            break
        n = rng.randint(st.min_words, len(words) - 1)
        a = rng.randint(0, len(words) - n)
        out.append(" ".join(words[a : a + n]))
    return out


def from_source(path: Path, block: Blocklist, st: TransferSettings, rng: random.Random) -> tuple[list[str], dict]:
    check_source(path)
    rep = {"lines": 0, "sentences": 0, "dropped_contaminated": 0, "dropped_duplicate": 0, "kept": 0, "phrases": 0,
           "phrases_dropped_contaminated": 0}
    seen, kept = set(), []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        rep["lines"] += 1
        for s in sentences(line, st):
            rep["sentences"] += 1
            norm = normalise(s)
            if norm in seen:
                rep["dropped_duplicate"] += 1
            elif block.hit(tuple(norm.split())):
                rep["dropped_contaminated"] += 1
            else:
                seen.add(norm)
                kept.append(s.lower())
    rng.shuffle(kept)
    kept = kept[: st.max_sentences] if st.max_sentences else kept
    out = list(kept)
    for s in kept:
        k = int(st.phrases_per_sentence) + (rng.random() < st.phrases_per_sentence % 1)
        for p in phrases(s, k, st, rng):
            if block.hit(tuple(normalise(p).split())):
                rep["phrases_dropped_contaminated"] += 1
            else:
                out.append(p)
                rep["phrases"] += 1
    rep["kept"] = len(kept)
    return out, rep


def build_transfer(sources: dict[str, Path], blocked: list[str], st: TransferSettings) -> tuple[list[str], dict]:
    """(texts, report) from `sources` (name -> file), in the order given; see module doc."""
    block = Blocklist(blocked, st.min_contained_words)
    rng = random.Random(st.seed)
    texts, report = [], {"settings": st.to_json(), "blocked_sentences": len(blocked), "sources": {}}
    for name, path in sources.items():
        got, rep = from_source(Path(path), block, st, rng)
        texts += got
        report["sources"][name] = {**rep, "rows": len(got), "file": Path(path).name}
    report["rows"] = len(texts)
    return texts, report
