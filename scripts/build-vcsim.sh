#!/usr/bin/env bash
# Builds vcsim (govmomi's vSphere API simulator) for the vSphere connector's tests from
# Debian's packages only (golang-go, golang-github-vmware-govmomi-dev): GOPATH mode, no
# module proxy, no network. The binary is cached under /var/cache/vmwarden-test/ keyed by
# the launcher's source hash, so a rebuild happens only when tools/vcsim/ changes (~30 s).
#   usage: scripts/build-vcsim.sh [OUTPUT_DIR]   (prints the binary's path)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
outdir="${1:-/var/cache/vmwarden-test}"
src="$here/tools/vcsim/main.go"
hash=$(sha256sum "$src" | cut -c1-16)
bin="$outdir/vcsim-$hash"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ]; then
  echo "build-vcsim: needs golang-go and golang-github-vmware-govmomi-dev (make deps)" >&2
  exit 1
fi
mkdir -p "$outdir"
work=$(mktemp -d /var/tmp/vmwarden-vcsim.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "==> go build vcsim ($src)" >&2
(cd "$here/tools/vcsim" && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off \
   GOCACHE="${GOCACHE:-/var/cache/vmwarden-test/go-build}" \
   go build -o "$work/vcsim" main.go)
mv "$work/vcsim" "$bin"
echo "$bin"
