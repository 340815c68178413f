"""Rebuild the embedded SST-2 sample shipped in `eibert/data/sst2/`.

    python scripts/make_sst2_sample.py ../shared/datasets/sst2 --train-rows 2000

Stratified by label with a fixed seed; the dev split is copied whole (872 rows).
"""
import argparse
import random
from pathlib import Path


def read_tsv(path: Path) -> tuple[str, list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], lines[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="folder with train.tsv and validation.tsv")
    ap.add_argument("--train-rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "eibert/data/sst2")
    args = ap.parse_args()

    header, rows = read_tsv(args.src / "train.tsv")
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(row.rsplit("\t", 1)[1], []).append(row)
    rng = random.Random(args.seed)
    picked = []
    for label in sorted(by_label):
        share = round(args.train_rows * len(by_label[label]) / len(rows))
        picked += rng.sample(by_label[label], share)
    rng.shuffle(picked)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.tsv").write_text("\n".join([header, *picked]) + "\n", encoding="utf-8")
    dev = (args.src / "validation.tsv").read_text(encoding="utf-8")
    (args.out / "validation.tsv").write_text(dev, encoding="utf-8")
    print(f"wrote {len(picked)} train rows and the dev split to {args.out}")


if __name__ == "__main__":
    main()
