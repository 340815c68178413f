#!/usr/bin/env bash
# Debian packages the device side and its test farm need (sshd, qemu, the aarch64 cross compiler, ...).
# Installs only what is missing; as root only (elsewhere it says what to install and the farm tests skip).
set -euo pipefail
PKGS=(openssh-server openssh-client time iproute2 procps nftables qemu-user-static binfmt-support debootstrap
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross zstd)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: the device farm tests need: apt-get install ${missing[*]} (as root); they will skip" >&2
  exit 0
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
