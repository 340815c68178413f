#!/usr/bin/env bash
# Every Debian package the tests use: the device side and its test farm (sshd, qemu, the aarch64 cross
# compiler, ...), PostgreSQL for the results store, Chromium for the report's browser test, binutils (objdump:
# the VNNI disassembly check), util-linux (unshare and mount: the two-node Ray test's private disk).
# Installs only what is missing; as root only (elsewhere it says what to install and those tests skip;
# under CI=true a skipped test fails the run, see tests/conftest.py).
set -euo pipefail
PKGS=(openssh-server openssh-client time iproute2 procps nftables qemu-user-static binfmt-support debootstrap
      gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross zstd postgresql chromium fonts-dejavu-core binutils util-linux)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: the tests need: apt-get install ${missing[*]} (as root); the tests that use them will skip" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
