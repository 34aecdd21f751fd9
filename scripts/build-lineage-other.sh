#!/usr/bin/env bash
# Builds, once per machine, "another build of the same release" for the content-lineage
# tests and bench: a second debootstrap --variant=minbase bookworm with a few more packages
# (less, nano, procps), laid out like debian-minbase.qcow2 (GPT, one ext4 partition, qcow2).
# A full clone must match debian-minbase.qcow2; this image must not.
# Idempotent: an existing image is kept. Needs what build-debian-image.sh needs.
#   usage: scripts/build-lineage-other.sh [OUTPUT]
set -euo pipefail
out="${1:-/var/cache/vmwarden-test/debian-minbase-other-build.qcow2}"
if [ -s "$out" ]; then
  exit 0
fi
# shellcheck source=scripts/debian-disk.sh
. "$(dirname "$0")/debian-disk.sh"
need_tools build-lineage-other
mirror=$(apt_mirror)
work=$(mktemp -d /var/tmp/vmwarden-other.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "==> debootstrap --variant=minbase bookworm + less, nano, procps from $mirror"
bootstrap "$work" "$mirror" --include=less,nano,procps
echo "vmwarden-debian" > "$work/root/etc/hostname"
gpt_ext4_qcow2 "$work/root" "$work/disk.raw" "$out"
echo "==> $out ($(du -h "$out" | cut -f1))"
