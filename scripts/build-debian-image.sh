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
# shellcheck source=scripts/debian-disk.sh
. "$(dirname "$0")/debian-disk.sh"
need_tools build-debian-image
mirror=$(apt_mirror)
work=$(mktemp -d /var/tmp/vmwarden-debian.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "==> debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
bootstrap "$work" "$mirror"
echo "vmwarden-debian" > "$work/root/etc/hostname"
gpt_ext4_qcow2 "$work/root" "$work/disk.raw" "$out"
echo "==> $out ($(du -h "$out" | cut -f1))"
