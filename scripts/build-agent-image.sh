#!/usr/bin/env bash
# Builds, once per machine, the bootable guest the QEMU-guest-agent tests start:
# debootstrap --variant=minbase bookworm + qemu-guest-agent, iproute2, kmod → GPT disk with one
# ext4 partition → qcow2, plus the guest's own Debian kernel and initrd (linux-image-amd64,
# installed by debootstrap and copied out) for direct kernel boot (no bootloader, no systemd):
# nothing is borrowed from the host, whose kernel may be anything or absent (containers, CI).
# The guest's PID 1 is /sbin/vmw-ga-init: it mounts proc/sys/run,
# loads virtio_console (the initrd lacks it), sets the *live* hostname to
# "vmw-ga-live" (the disk's /etc/hostname says "vmw-ga-disk": a test tells which source
# won), puts the address from the kernel argument vmw_ip= on the first NIC, and runs
# qemu-ga on the virtio-serial port org.qemu.guest_agent.0 (vmw_ga=off: no agent).
# Idempotent: existing outputs are kept (delete the directory's agent-* files to rebuild).
# Needs root, debootstrap, sfdisk, e2fsprogs, qemu-utils and the Debian mirror apt uses.
#   usage: scripts/build-agent-image.sh [DIR]   (default below, or $VMWARDEN_AGENT_DIR)
set -euo pipefail
dir="${1:-${VMWARDEN_AGENT_DIR:-/var/cache/vmwarden-test}}"
out="$dir/agent-guest.qcow2"
if [ -s "$out" ] && [ -s "$dir/agent-vmlinuz" ] && [ -s "$dir/agent-initrd.img" ] && [ -s "$dir/agent-release" ]; then
  exit 0
fi
# shellcheck source=scripts/debian-disk.sh
. "$(dirname "$0")/debian-disk.sh"
need_tools build-agent-image
mirror=$(apt_mirror)
work=$(mktemp -d /var/tmp/vmwarden-agent.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "==> debootstrap minbase + qemu-guest-agent from $mirror (a few minutes, once)"
bootstrap "$work" "$mirror" --include=qemu-guest-agent,iproute2,kmod,linux-image-amd64
# The guest's kernel, its initrd (update-initramfs ran in the chroot) and virtio_console.
kernel=$(ls -1 "$work/root/boot/"vmlinuz-* 2>/dev/null | sort -V | tail -n1 || true)
release="${kernel##*/vmlinuz-}"
initrd="$work/root/boot/initrd.img-$release"
if [ -z "$kernel" ] || [ ! -s "$initrd" ] || [ ! -d "$work/root/lib/modules/$release" ]; then
  tail -n 30 "$work/debootstrap.log" >&2
  echo "build-agent-image: debootstrap left no kernel/initrd in the guest" >&2
  exit 1
fi
console=$(find "$work/root/lib/modules/$release" -name 'virtio_console.ko*' | head -n1)
[ -n "$console" ] || { echo "build-agent-image: no virtio_console module for $release" >&2; exit 1; }
echo "vmw-ga-disk" > "$work/root/etc/hostname"
case "$console" in
  *.ko) cp "$console" "$work/root/lib/virtio_console.ko" ;;
  *.ko.xz) xz -dc "$console" > "$work/root/lib/virtio_console.ko" ;;
  *.ko.zst) zstd -qdc "$console" > "$work/root/lib/virtio_console.ko" ;;
  *) echo "build-agent-image: cannot unpack $console" >&2; exit 1 ;;
esac
cat > "$work/root/sbin/vmw-ga-init" <<'INIT'
#!/bin/sh
# PID 1 of the vmwarden agent test guest (see scripts/build-agent-image.sh).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc 2>/dev/null  # the initramfs may have moved these already
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
insmod /lib/virtio_console.ko
hostname vmw-ga-live
ip link set lo up
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n1; }
nic=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
if [ -n "$nic" ] && [ -n "$(arg vmw_ip)" ]; then
  ip addr add "$(arg vmw_ip)" dev "$nic" && ip link set "$nic" up
fi
port=""
for _ in $(seq 100); do
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port="/dev/${p##*/}"
  done
  [ -n "$port" ] && [ -e "$port" ] && break
  sleep 0.1
done
echo "vmw-ga-init: agent port ${port:-missing}" >/dev/console
if [ "$(arg vmw_ga)" != off ] && [ -n "$port" ]; then
  qemu-ga -m virtio-serial -p "$port" -t /run &
  echo $! >/run/qemu-ga.pid  # qemu-ga writes its -f pidfile only when it daemonizes
fi
while :; do wait; sleep 1; done  # PID 1 reaps orphans and never exits
INIT
chmod 755 "$work/root/sbin/vmw-ga-init"
cp "$kernel" "$work/vmlinuz" && cp "$initrd" "$work/initrd.img"
rm -rf "$work/root/boot/"* "$work/root/lib/modules" "$work/root/usr/lib/firmware"
mkdir -p "$dir"
cp "$work/vmlinuz" "$dir/agent-vmlinuz.tmp" && mv "$dir/agent-vmlinuz.tmp" "$dir/agent-vmlinuz"
cp "$work/initrd.img" "$dir/agent-initrd.img.tmp"
mv "$dir/agent-initrd.img.tmp" "$dir/agent-initrd.img"
echo "$release" > "$dir/agent-release"  # what the running guest's uname -r says
gpt_ext4_qcow2 "$work/root" "$work/disk.raw" "$out"
echo "==> $out ($(du -h "$out" | cut -f1)), kernel $release"
