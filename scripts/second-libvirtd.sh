#!/usr/bin/env bash
# A second libvirtd on this machine that looks like another host: its own host UUID, hostname,
# configuration, state and sockets (private mount, UTS and PID namespaces), reachable over TCP
# on 127.0.0.1:PORT (auth none) and over its own unix socket, STATE_DIR/run/libvirt-sock.
# Tests use it as a "remote" hypervisor: its domains' disk paths name files on *its* host,
# which must never be read from this machine's filesystem (issue #10.2).
#
#   scripts/second-libvirtd.sh start STATE_DIR PORT HOST_UUID HOSTNAME   # returns when it answers
#   scripts/second-libvirtd.sh stop STATE_DIR
set -euo pipefail
cmd=${1:?usage: $0 start STATE_DIR PORT HOST_UUID HOSTNAME | stop STATE_DIR}
dir=${2:?state directory}
case "$cmd" in
  stop)
    if [ -s "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; fi
    for _ in $(seq 1 50); do
      [ -s "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null || exit 0
      sleep 0.1
    done
    kill -9 "$(cat "$dir/pid")" 2>/dev/null || true
    exit 0 ;;
  start) ;;
  *) echo "unknown command: $cmd" >&2; exit 2 ;;
esac
port=${3:?tcp port}; uuid=${4:?host uuid}; name=${5:?hostname}
dir=$(realpath -m "$dir")
mkdir -p "$dir"/{etc,run,lib,cache,log}
# The configuration files only: /etc/libvirt/qemu/, storage/ and networks hold this machine's
# domains, pools and networks, which the other host must not have.
find /etc/libvirt -maxdepth 1 -type f -exec cp -a {} "$dir/etc/" \;
# QEMU capabilities probed by the main daemon: without them this one probes every emulator
# again at start-up (minutes under TCG on a busy machine).
if [ ! -d "$dir/cache/qemu" ] && [ -d /var/cache/libvirt/qemu/capabilities ]; then
  mkdir -p "$dir/cache/qemu" && cp -a /var/cache/libvirt/qemu/capabilities "$dir/cache/qemu/"
fi
cat >"$dir/etc/libvirtd.conf" <<CONF
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "$port"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "$uuid"
CONF
# setsid + nohup: the daemon outlives this script; its pid (the namespace's init) is recorded.
setsid unshare --mount --uts --pid --fork --kill-child=SIGTERM --propagation private bash -c '
  set -e
  hostname "$1"
  mount --bind "$2/etc" /etc/libvirt
  mount --bind "$2/run" /run/libvirt
  mount --bind "$2/lib" /var/lib/libvirt
  mount --bind "$2/cache" /var/cache/libvirt
  mount --bind "$2/log" /var/log/libvirt
  exec libvirtd --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
' _ "$name" "$dir" >"$dir/libvirtd.out" 2>&1 </dev/null &
echo $! >"$dir/pid"
for _ in $(seq 1 600); do
  if virsh -c "qemu+tcp://127.0.0.1:$port/system" version >/dev/null 2>&1; then exit 0; fi
  if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "second libvirtd did not answer on 127.0.0.1:$port within 60 s; see $dir/libvirtd.out" >&2
cat "$dir/libvirtd.out" >&2 || true
exit 1
