# Shared by build-debian-image.sh and build-agent-image.sh (sourced, not run): the tools
# they need, the Debian mirror apt already uses, debootstrap with its log kept for errors,
# and a root tree turned into a GPT disk with one ext4 partition, as qcow2.

# need_tools SCRIPT: fail early, naming the missing tool, before any download.
need_tools() {
  local tool
  for tool in debootstrap sfdisk mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || { echo "$1: $tool missing (make deps)" >&2; exit 1; }
  done
}

# apt_mirror: the mirror apt is configured with (deb822 or one-line sources), else deb.debian.org.
apt_mirror() {
  local m
  m=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
      | grep -v security | head -n1 | tr -d ' ' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# bootstrap WORK MIRROR [debootstrap options...]: minbase bookworm into WORK/root, no .debs kept.
bootstrap() {
  local work=$1 mirror=$2
  shift 2
  debootstrap --variant=minbase "$@" bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/root/var/cache/apt/archives/"*.deb
}

# gpt_ext4_qcow2 ROOT RAW OUT: GPT with one Linux partition from 1 MiB, ext4 written straight
# into it from ROOT (no loop device), converted to qcow2 at OUT (atomically, via OUT.tmp).
gpt_ext4_qcow2() {
  local root=$1 disk=$2 out=$3 start sectors
  truncate -s 1536M "$disk"
  printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n' \
    | sfdisk -q "$disk"
  read -r start sectors < <(sfdisk -J "$disk" | python3 -c \
    'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][0]; print(p["start"], p["size"])')
  mkfs.ext4 -F -q -L root -E offset=$((start * 512)) -d "$root" "$disk" "$((sectors / 2))k"
  mkdir -p "$(dirname "$out")"
  qemu-img convert -q -f raw -O qcow2 "$disk" "$out.tmp"
  mv "$out.tmp" "$out"
}
