"""Rewrite one marked section of a Markdown file, leaving the others (each benchmark owns one).

    replace_section(Path("docs/results.md"), "quality", "## Compression quality ...")
"""

from pathlib import Path

from eibutil import atomic_write_text


def replace_section(path: Path, name: str, body: str, title: str = "# Results") -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else f"{title}\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(path, text)
