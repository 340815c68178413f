"""The device's pure-Python WordPiece gives the same ids as `tokenizers` with the artifact's tokenizer.json."""

from pathlib import Path

from devices.remote.wordpiece import WordPiece

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/sst2-2mb"
DEV = [ROOT / "eibert/data/sst2/validation.tsv", ROOT.parent / "shared/datasets/sst2/validation.tsv"]


def _sentences() -> list[str]:
    rows = []
    for f in DEV:
        if f.is_file():
            rows += [line.rsplit("\t", 1)[0] for line in f.read_text(encoding="utf-8").splitlines()[1:]]
    return rows + ["Ünïcödé café — naïve résumé!", "日本語のテキスト and ascii", "tab\there\x00 ctrl\u200b zero-width",
                   "a" * 150 + " long", "émigré's 'quoted' (bracketed) [x] {y} <z> #tag @user $5 50% a&b ~ `tick`"]


def test_same_ids_as_tokenizers_on_every_dev_sentence():
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    ref.enable_truncation(64)
    mine = WordPiece.from_vocab(str(MODEL / "vocab.txt"))
    sents = _sentences()
    assert len(sents) >= 872 + 5 or len(sents) > 100
    got = [mine.encode(s, max_length=64) for s in sents]
    want = [e.ids for e in ref.encode_batch(sents)]
    bad = [(s, g, w) for s, g, w in zip(sents, got, want) if g != w]
    assert not bad, bad[:3]
