"""Backing chains read from real qemu-img images, including hostile ones."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.qcow2 import EXT_BACKING_FORMAT

SHADOW = "/etc/shadow"


def paths(layers):
    return [layer.path for layer in layers]


def backing_offset(path: Path) -> tuple[int, int]:
    with path.open("rb") as f:
        head = f.read(72)
    offset, size = struct.unpack(">QI", head[8:20])
    return offset, size


def rewrite_backing_name(path: Path, new: str) -> None:
    """Overwrite the backing file name in the header (same length), as an attacker would."""
    offset, size = backing_offset(path)
    assert len(new) == size
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(new.encode())


def test_standalone_qcow2_is_one_layer(images):
    base = images.qcow2("base.qcow2")
    layers = resolve_chain(base)
    assert paths(layers) == [str(base)]
    assert layers[0].format == "qcow2"
    assert layers[0].error is None
    assert layers[0].type == "file"
    assert layers[0].mtime is not None


def test_raw_is_one_layer(images):
    raw = images.raw("disk.img")
    images.qemu_img("create", "-q", "-f", "raw", raw, "8M")
    layers = resolve_chain(raw)
    assert [(layer.format, layer.error) for layer in layers] == [("raw", None)]


def test_three_deep_linked_clone_chain(images):
    base = images.qcow2("base.qcow2")
    mid = images.qcow2("mid.qcow2", backing=str(base))
    top = images.qcow2("top.qcow2", backing=str(mid))
    layers = resolve_chain(top)
    assert paths(layers) == [str(top), str(mid), str(base)]
    assert [layer.format for layer in layers] == ["qcow2"] * 3
    assert all(layer.error is None for layer in layers)


def test_relative_backing_names_resolve_against_the_image_directory(images, monkeypatch):
    base = images.qcow2("templates/base.qcow2")
    clone = images.qcow2("vms/web/clone.qcow2", backing="../../templates/base.qcow2")
    # The process's working directory must not matter.
    monkeypatch.chdir("/")
    layers = resolve_chain(clone)
    assert paths(layers) == [str(clone), str(base)]
    assert layers[-1].error is None


def test_relative_layer0_path_is_made_absolute(images, monkeypatch):
    images.qcow2("base.qcow2")
    images.qcow2("clone.qcow2", backing="base.qcow2")
    monkeypatch.chdir(images.root)
    layers = resolve_chain("clone.qcow2")
    assert paths(layers) == [str(images.root / "clone.qcow2"), str(images.root / "base.qcow2")]


def test_backing_format_from_header_extension_is_used(images):
    images.raw("base.raw", data=b"QFI\xfb pretending to be qcow2")
    clone = images.qcow2("clone.qcow2", backing="base.raw", backing_fmt="raw")
    layers = resolve_chain(clone)
    # Declared raw: never probed, so the fake magic in the raw file is not believed.
    assert [(layer.format, layer.error) for layer in layers] == [("qcow2", None), ("raw", None)]


def test_backing_without_format_is_probed(images):
    """Old images have no backing format extension (qemu-img 7 refuses to make one, so the
    extension's type is overwritten with an unknown one, which readers must skip)."""
    base = images.qcow2("base.qcow2")
    clone = images.qcow2("clone.qcow2", backing=str(base))
    data = bytearray(clone.read_bytes())
    at = data.index(struct.pack(">I", EXT_BACKING_FORMAT), 0, 4096)
    data[at : at + 4] = struct.pack(">I", 0x0BADF00D)
    clone.write_bytes(bytes(data))
    layers = resolve_chain(clone)
    assert [layer.format for layer in layers] == ["qcow2", "qcow2"]


def test_missing_backing_file(images):
    base = images.qcow2("base.qcow2")
    clone = images.qcow2("clone.qcow2", backing="base.qcow2")
    base.unlink()
    layers = resolve_chain(clone)
    assert paths(layers) == [str(clone), str(base)]
    assert layers[0].error is None
    assert layers[-1].error == f"backing file missing: {base}"


def test_loop_between_two_images(images):
    images.qcow2("a.qcow2", backing="b.qcow2")
    images.qcow2("b.qcow2", backing="a.qcow2")
    layers = resolve_chain(images.root / "a.qcow2")
    assert len(layers) == 3
    assert layers[-1].error == f"backing chain loop: {images.root / 'a.qcow2'}"


def test_self_loop_crafted_in_header_bytes(images):
    images.qcow2("t.qcow2")
    clone = images.qcow2("c.qcow2", backing="t.qcow2")
    rewrite_backing_name(clone, "c.qcow2")
    layers = resolve_chain(clone)
    assert len(layers) == 2
    assert layers[-1].error.startswith("backing chain loop")


def test_too_deep_chain_stops_at_max_depth(images):
    images.qcow2("l0.qcow2")
    for i in range(1, 6):
        images.qcow2(f"l{i}.qcow2", backing=f"l{i - 1}.qcow2")
    layers = resolve_chain(images.root / "l5.qcow2", max_depth=3)
    assert len(layers) == 3
    assert layers[-1].error == "backing chain deeper than 3 layers"
    full = resolve_chain(images.root / "l5.qcow2", max_depth=6)
    assert len(full) == 6 and full[-1].error is None


def test_backing_to_etc_shadow_is_refused_without_opening_it(images, opened):
    clone = images.qcow2("evil.qcow2", backing=SHADOW, backing_fmt="raw")
    opened.clear()
    layers = resolve_chain(clone, allowed_dirs=[images.root])
    assert paths(layers) == [str(clone), SHADOW]
    assert layers[-1].error == f"backing file outside allowed directories: {SHADOW}"
    assert str(clone) in opened
    assert not [p for p in opened if p.startswith("/etc/")]


def test_backing_outside_allowed_dirs_is_never_opened(images, opened):
    secret = images.raw("outside/secret.img", data=b"secret")
    secret.chmod(0)
    clone = images.qcow2("inside/clone.qcow2", backing=str(secret), backing_fmt="raw")
    opened.clear()
    layers = resolve_chain(clone, allowed_dirs=[images.root / "inside"])
    assert layers[-1].error.startswith("backing file outside allowed directories")
    assert str(secret) not in opened
    assert opened == [str(clone)]


def test_symlink_escaping_allowed_dirs_is_refused(images, opened):
    outside = images.qcow2("outside/base.qcow2")
    inside = images.root / "inside"
    inside.mkdir()
    (inside / "base.qcow2").symlink_to(outside)
    clone = images.qcow2("inside/clone.qcow2", backing="base.qcow2")
    opened.clear()
    layers = resolve_chain(clone, allowed_dirs=[inside])
    assert layers[-1].error.startswith("backing file outside allowed directories")
    assert str(outside) not in opened


def test_symlink_inside_allowed_dirs_is_followed(images):
    images.qcow2("pool/real-base.qcow2")
    (images.root / "pool" / "base.qcow2").symlink_to("real-base.qcow2")
    clone = images.qcow2("pool/clone.qcow2", backing="base.qcow2")
    layers = resolve_chain(clone, allowed_dirs=[images.root / "pool"])
    assert [layer.error for layer in layers] == [None, None]


def test_allowed_dirs_accepts_chain_inside(images):
    base = images.qcow2("pool/templates/base.qcow2")
    clone = images.qcow2("pool/vms/clone.qcow2", backing="../templates/base.qcow2")
    layers = resolve_chain(clone, allowed_dirs=[images.root / "pool"])
    assert paths(layers) == [str(clone), str(base)]
    assert layers[-1].error is None


def test_fifo_backing_is_refused_without_hanging(images):
    fifo = images.root / "base.qcow2"
    os.mkfifo(fifo)
    clone = images.qcow2("clone.qcow2", backing="base.qcow2")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(resolve_chain(clone)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result, "resolve_chain hung on a FIFO"
    assert result[0][-1].error == f"backing file is not a regular file: {fifo}"


def test_device_as_backing_is_refused(images):
    clone = images.qcow2("clone.qcow2", backing="/dev/zero", backing_fmt="raw")
    layers = resolve_chain(clone)
    assert layers[-1].error == "backing file is not a regular file: /dev/zero"


@pytest.mark.parametrize("keep", [50, 100])
def test_truncated_header(images, keep):
    clone = images.qcow2("clone.qcow2", backing="base.qcow2")
    os.truncate(clone, keep)
    layers = resolve_chain(clone)
    assert len(layers) == 1
    assert layers[0].error.startswith("truncated qcow2 header")


def test_truncated_image_after_header(images):
    images.qcow2("base.qcow2")
    clone = images.qcow2("clone.qcow2", backing="base.qcow2")
    os.truncate(clone, 1024)  # header intact, tables gone
    layers = resolve_chain(clone)
    assert len(layers) == 1
    assert "truncated qcow2" in layers[0].error


def test_backing_name_pointing_past_end_of_file(images):
    clone = images.qcow2("clone.qcow2", backing="base.qcow2")
    with clone.open("r+b") as f:
        f.seek(8)
        f.write(struct.pack(">Q", 10**9))
    layers = resolve_chain(clone)
    assert len(layers) == 1 and layers[0].error.startswith("invalid qcow2 backing file offset")


def test_declared_raw_is_not_probed(images):
    """A guest can write a qcow2 header into its raw disk; libvirt's format wins."""
    images.qcow2("inner.qcow2", backing=SHADOW, backing_fmt="raw")
    data = (images.root / "inner.qcow2").read_bytes()[:4096]
    raw = images.raw("guest-disk.img", data=data)
    assert [(layer.format, layer.error) for layer in resolve_chain(raw, fmt="raw")] == [
        ("raw", None)
    ]


def test_declared_format_contradicting_magic(images):
    raw = images.raw("disk.img")
    layers = resolve_chain(raw, fmt="qcow2")
    assert layers[0].error.startswith("format mismatch: declared qcow2, found raw")


def test_network_backing_is_not_followed(images):
    clone = images.qcow2("clone.qcow2", backing="nbd://127.0.0.1:10809/export", backing_fmt="raw")
    layers = resolve_chain(clone)
    assert layers[-1].type == "network"
    assert layers[-1].path == "nbd://127.0.0.1:10809/export"
    assert layers[-1].error.startswith("network backing not followed")


def test_missing_layer0(images):
    layers = resolve_chain(images.root / "nope.qcow2")
    assert len(layers) == 1
    assert layers[0].error == f"image missing: {images.root / 'nope.qcow2'}"


def test_backing_format_extension_is_read(images):
    clone = images.qcow2("clone.qcow2", backing="base.qcow2", backing_fmt="qcow2")
    data = clone.read_bytes()[:4096]
    assert struct.pack(">I", EXT_BACKING_FORMAT) in data


def test_vmdk_linked_clone_chain(images):
    base = images.qcow2("base.qcow2")
    base_vmdk = images.convert(base, "vmdk", "base.vmdk")
    images.qemu_img("create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk",
                    images.root / "clone.vmdk")  # fmt: skip
    layers = resolve_chain(images.root / "clone.vmdk")
    assert paths(layers) == [str(images.root / "clone.vmdk"), str(base_vmdk)]
    assert [layer.format for layer in layers] == ["vmdk", "vmdk"]


def test_qemu_img_agrees_on_a_trusted_chain(images):
    """Cross-check the Python parser against qemu-img on images we made ourselves."""
    images.qcow2("a/base.qcow2")
    images.qcow2("b/mid.qcow2", backing="../a/base.qcow2")
    top = images.qcow2("top.qcow2", backing="b/mid.qcow2")
    out = subprocess.run(
        ["qemu-img", "info", "--backing-chain", "--output=json", str(top)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    qemu = [os.path.normpath(i["filename"]) for i in json.loads(out)]
    assert paths(resolve_chain(top)) == [os.path.abspath(p) for p in qemu]
