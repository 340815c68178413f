"""A BERT WordPiece tokenizer in pure Python, for devices without compiled packages.

    tok = WordPiece.from_vocab("vocab.txt")          # lowercase, as the artifacts' tokenizer.json says
    tok.encode("A gorgeous, witty movie.", max_length=64)   # [CLS] ... [SEP] ids, truncated

It reproduces `tokenizers`' BertNormalizer (clean text, spaces around CJK characters, accents stripped
when lowercasing, lowercase), BertPreTokenizer (whitespace, and every punctuation character its own
piece) and WordPiece (greedy longest match, `##` continuations, `[UNK]` for a word it cannot spell or
longer than 100 characters), then `[CLS] ... [SEP]` with truncation, as the artifact's tokenizer.json
does. tests/test_wordpiece.py checks the ids equal `tokenizers`' on every SST-2 dev sentence. It runs on
the device beside eib_device.py, so it imports nothing outside the standard library.
"""

import unicodedata


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Co", "Cs")  # as `tokenizers`' is_control: every C* but whitespace


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    def __init__(self, vocab: dict[str, int], lowercase: bool = True, unk: str = "[UNK]", cls: str = "[CLS]", sep: str = "[SEP]",
                 max_word_chars: int = 100):
        self.vocab, self.lowercase, self.max_word_chars = vocab, lowercase, max_word_chars
        self.unk_id, self.cls_id, self.sep_id = vocab[unk], vocab[cls], vocab[sep]

    @classmethod
    def from_vocab(cls, path: str, lowercase: bool = True) -> "WordPiece":
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        return cls({t: i for i, t in enumerate(tokens) if t}, lowercase)

    def normalize(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out)
        if self.lowercase:  # strip_accents follows lowercase, as in BertNormalizer
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn").lower()
        return text

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        words, cur = [], []
        for ch in text:
            if _is_whitespace(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif _is_punctuation(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def word_ids(self, word: str) -> list[int]:
        if len(word) > self.max_word_chars:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        ids = [i for w in self.pre_tokenize(self.normalize(text)) for i in self.word_ids(w)]
        if max_length is not None:
            ids = ids[: max(0, max_length - 2)]
        return [self.cls_id, *ids, self.sep_id]
