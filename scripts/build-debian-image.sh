#!/usr/bin/env bash
# Builds, once per machine, the real Debian image the inspect tests read:
# debootstrap --variant=minbase bookworm → GPT disk with one ext4 partition → qcow2.
# Idempotent: an existing image is kept (delete it to rebuild). Needs root, debootstrap,
# sfdisk (fdisk), e2fsprogs and qemu-utils, and the Debian mirror apt already uses.
#   usage: scripts/build-debian-image.sh [OUTPUT]   (default below, or $VMWARDEN_DEBIAN_IMAGE)
set -euo pipefail
out="${1:-${VMWARDEN_DEBIAN_IMAGE:-/var/cache/vmwarden-test/debian-minbase.qcow2}}"
if [ -s "$out" ]; then
  exit 0
fi
for tool in debootstrap sfdisk mkfs.ext4 qemu-img; do
  command -v "$tool" >/dev/null || { echo "build-debian-image: $tool missing (make deps)" >&2; exit 1; }
done
# The mirror apt is configured with (deb822 or one-line sources), else deb.debian.org.
mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
         | grep -v security | head -n1 | tr -d ' ' || true)
mirror="${mirror:-http://deb.debian.org/debian}"
work=$(mktemp -d /var/tmp/vmwarden-debian.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "==> debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/root/var/cache/apt/archives/"*.deb
echo "vmwarden-debian" > "$work/root/etc/hostname"
# GPT: one Linux partition from 1 MiB; ext4 written straight into it (no loop device).
disk="$work/disk.raw"
truncate -s 1536M "$disk"
printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n' \
  | sfdisk -q "$disk"
read -r start sectors < <(sfdisk -J "$disk" | python3 -c \
  'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][0]; print(p["start"], p["size"])')
mkfs.ext4 -F -q -L root -E offset=$((start * 512)) -d "$work/root" "$disk" "$((sectors / 2))k"
mkdir -p "$(dirname "$out")"
qemu-img convert -q -f raw -O qcow2 "$disk" "$out.tmp"
mv "$out.tmp" "$out"
echo "==> $out ($(du -h "$out" | cut -f1))"
