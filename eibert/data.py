"""Task data: the embedded SST-2 sample, a Hugging Face hub dataset, or local TSV/CSV/JSON/Parquet files.

    from eibert.data import load_task
    data = load_task(source="embedded", name="sst2")
    data.train[0], data.num_labels, data.checksums["train"]

Everything is read through Hugging Face `datasets`. Each split is normalised to the columns
`text_a` (and `text_b` for sentence pairs) and an integer `label`; the sha256 of every file read is kept
so that every result can name the exact data behind it.
"""

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from eibutil import UserError, sha256_file

EMBEDDED_DIR = Path(__file__).resolve().parent / "data"
FORMATS = {".tsv": "csv", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class DataError(UserError):
    """A data file or dataset that cannot be used (missing column, unknown format, unreachable hub)."""


@dataclass
class TaskData:
    """Both splits of a task, normalised; `checksums` maps split -> sha256 (or hub fingerprint)."""

    train: "datasets.Dataset"  # noqa: F821  (columns: text_a[, text_b], label)
    dev: "datasets.Dataset"  # noqa: F821
    num_labels: int
    pair: bool
    label_names: list[str] = field(default_factory=list)
    checksums: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    selection: "datasets.Dataset | None" = None  # noqa: F821  (eibert.selection: held out from train, for choosing)
    split_report: dict = field(default_factory=dict)


def embedded_files(name: str) -> tuple[Path, Path]:
    folder = EMBEDDED_DIR / name
    train, dev = folder / "train.tsv", folder / "validation.tsv"
    if not train.is_file():
        have = sorted(p.name for p in EMBEDDED_DIR.iterdir() if p.is_dir())
        raise DataError(f"no embedded dataset '{name}'; embedded: {', '.join(have)}")
    return train, dev


def read_file(path: str | os.PathLike) -> "datasets.Dataset":  # noqa: F821
    """Read one local data file into a `datasets.Dataset` (TSV without quoting, as GLUE ships it)."""
    import datasets

    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported format {path.suffix!r}; allowed: {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    kwargs = {}
    if path.suffix.lower() == ".tsv":
        kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its own "Failed to load JSON" line would precede ours
    try:
        ds = datasets.load_dataset(kind, data_files={"data": str(path)}, split="data", **kwargs)
    except Exception as e:  # datasets raises many types for malformed files
        if "corresponds to no data" in str(e) or path.stat().st_size == 0:
            raise DataError(f"{path}: has no rows (a header at most)") from None
        while e.__cause__ is not None:  # datasets wraps the parser's error in "An error occurred while generating"
            e = e.__cause__
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]}: {first[:200]}") from None
    return ds


def guess_fields(columns: list[str], label_field: str | None = None) -> tuple[list[str], str]:
    """Pick text and label columns when the user names none: `label`, then one or two text columns."""
    label = label_field or next((c for c in ("label", "labels") if c in columns), None)
    if label is None:
        raise DataError(f"no label column (looked for 'label'); columns: {', '.join(columns)}")
    for pair in (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"), ("question1", "question2")):
        if all(p in columns for p in pair):
            return list(pair), label
    for single in ("sentence", "text"):
        if single in columns:
            return [single], label
    rest = [c for c in columns if c != label and c != "idx"]
    if 1 <= len(rest) <= 2:
        return rest, label
    raise DataError(f"cannot tell the text columns; name them (text_fields); columns: {', '.join(columns)}")


def normalise(ds, text_fields: list[str], label_field: str, where: str, label_names: list[str] | None = None):
    """Rename to text_a/text_b/label, map string labels to ids; returns (dataset, label_names)."""
    missing = [c for c in [*text_fields, label_field] if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: no column {', '.join(map(repr, missing))}; columns: {', '.join(ds.column_names)}")
    names = ["text_a", "text_b"][: len(text_fields)]
    ds = ds.select_columns([*text_fields, label_field])
    ds = ds.rename_columns({**dict(zip(text_fields, names)), label_field: "label"} if label_field != "label"
                           else dict(zip(text_fields, names)))
    labels = ds["label"]
    if any(x is None for x in labels):
        raise DataError(f"{where}: empty label in column '{label_field}'")
    if isinstance(labels[0], str):
        label_names = label_names or sorted(set(labels))
        unknown = sorted(set(labels) - set(label_names))
        if unknown:
            raise DataError(f"{where}: labels not seen in train: {', '.join(unknown[:5])}")
        index = {n: i for i, n in enumerate(label_names)}
        ds = ds.remove_columns("label").add_column("label", [index[x] for x in labels])
    elif any(not isinstance(x, int) or x < 0 for x in labels):
        raise DataError(f"{where}: labels must be non-negative integers or strings in column '{label_field}'")
    for n in names:  # None texts (empty TSV cells) become ""
        ds = ds.map(lambda r, n=n: {n: r[n] or ""})
    return ds, label_names or []


def stratified_subsample(ds, rows: int, seed: int):
    """Keep `rows` rows with each label's share unchanged (seeded)."""
    import random

    if rows >= len(ds):
        return ds
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(ds["label"]):
        by_label.setdefault(y, []).append(i)
    rng = random.Random(seed)
    keep: list[int] = []
    for y in sorted(by_label):
        keep += rng.sample(by_label[y], max(1, round(rows * len(by_label[y]) / len(ds))))
    return ds.select(sorted(keep[:rows]))


def load_task(
    source: str = "embedded",
    name: str = "sst2",
    train_file: str | os.PathLike | None = None,
    dev_file: str | os.PathLike | None = None,
    hub_id: str | None = None,
    hub_config: str | None = None,
    train_split: str = "train",
    dev_split: str = "validation",
    text_fields: list[str] | None = None,
    label_field: str | None = "label",
    max_train_rows: int | None = None,
    seed: int = 0,
) -> TaskData:
    """Load both splits of a task (see module docstring); raises `DataError` on unusable data."""
    if source == "hub":
        import datasets

        try:
            raw = datasets.load_dataset(hub_id, hub_config)
        except Exception as e:
            name = f"{hub_id}/{hub_config}" if hub_config else hub_id
            raise DataError(f"hub dataset '{name}' could not be loaded (offline? use task.source: files): "
                            f"{str(e).splitlines()[0][:200]}") from e
        splits = {"train": raw[train_split], "dev": raw[dev_split]}
        checksums = {k: f"hub:{hub_id}/{hub_config or ''}:{v._fingerprint}" for k, v in splits.items()}
        sources = {k: f"hub:{hub_id}/{hub_config or ''}:{s}" for k, s in (("train", train_split), ("dev", dev_split))}
    else:
        if source == "embedded":
            train_file, dev_file = embedded_files(name)
        elif train_file is None or dev_file is None:
            raise DataError("source 'files' needs a train file and a dev file")
        splits = {"train": read_file(train_file), "dev": read_file(dev_file)}
        checksums = {"train": sha256_file(train_file), "dev": sha256_file(dev_file)}
        sources = {"train": str(train_file), "dev": str(dev_file)}

    fields, label = (text_fields, label_field) if text_fields else guess_fields(splits["train"].column_names, label_field)
    train, names = normalise(splits["train"], fields, label, sources["train"])
    dev, _ = normalise(splits["dev"], fields, label, sources["dev"], names or None)
    if max_train_rows:
        train = stratified_subsample(train, max_train_rows, seed)
    num_labels = len(names) if names else max(max(train["label"]), max(dev["label"])) + 1
    if num_labels < 2:
        raise DataError(f"{sources['train']}: needs at least 2 labels, found {num_labels}")
    return TaskData(train, dev, num_labels, len(fields) == 2, names, checksums, sources)


def load_eval_file(path: str | os.PathLike, text_fields: list[str] | None = None, label_field: str | None = None):
    """One labelled file for scoring: returns (dataset with text_a[/text_b]/label, sha256)."""
    ds = read_file(path)
    fields, label = (text_fields, label_field or "label") if text_fields else guess_fields(ds.column_names, label_field)
    ds, names = normalise(ds, fields, label, str(path))
    return ds, sha256_file(path), names
