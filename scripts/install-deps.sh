#!/usr/bin/env bash
# Installs everything vmwarden needs on a fresh Debian 12 machine, as root.
# Idempotent: a second run with everything present costs a few seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
APT_PKGS=(libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
          qemu-system-x86 qemu-utils iptables dnsmasq-base e2fsprogs postgresql
          debootstrap fdisk openssh-client btrfs-progs cryptsetup-bin chromium
          lvm2 xfsprogs ntfs-3g ssg-debian ssg-debderived openscap-scanner
          golang-go golang-github-vmware-govmomi-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
VENV="${VENV:-$here/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.deps-stamp"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  echo "==> pip install -e .[dev]"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$here[dev]"
  touch "$stamp"
fi
