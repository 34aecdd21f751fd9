#!/usr/bin/env bash
# Starts a real libvirtd (and virtlogd) without systemd, as the tests and a dev box need.
# Idempotent: does nothing when libvirtd already answers.
set -euo pipefail
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
# QEMU runs as libvirt-qemu: give the kvm group /dev/kvm as udev would (TCG is used otherwise).
if [ -c /dev/kvm ]; then chgrp kvm /dev/kvm && chmod 660 /dev/kvm || true; fi
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/images
if virsh -c qemu:///system version >/dev/null 2>&1; then exit 0; fi
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 1 100); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "libvirtd did not answer on qemu:///system within 10 s" >&2
exit 1
