"""Format detection by magic, on images converted by qemu-img."""

from __future__ import annotations

import pytest

from vmwarden.errors import InspectError
from vmwarden.inspect.digest import fingerprint
from vmwarden.inspect.magic import detect_format, detect_format_bytes

MIB = 1024 * 1024


@pytest.fixture
def base(images):
    return images.qcow2("base.qcow2", size="64M")


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vhdx", "vhdx"), ("raw", "raw"), ("vpc", "vpc")],
)
def test_detect_converted_images(images, base, fmt, expected):
    out = images.convert(base, fmt, f"disk.{fmt}")
    assert detect_format(out) == expected


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhdx", "raw"])
def test_fingerprint_virtual_size_from_header(images, base, fmt):
    out = images.convert(base, fmt, f"disk.{fmt}")
    fp = fingerprint(out)
    assert fp["format"] == fmt
    assert fp["virtual_size"] == 64 * MIB
    assert fp["size"] == out.stat().st_size
    assert fp["backing"] is None
    assert fp["encrypted"] is False


def test_fingerprint_of_a_clone_names_its_backing(images, base):
    clone = images.qcow2("clone.qcow2", backing="base.qcow2")
    fp = fingerprint(clone)
    assert fp["backing"] == "base.qcow2"
    assert fp["backing_format"] == "qcow2"
    assert fp["path"] == str(clone)


def test_vmdk_text_descriptor(images, base):
    images.qemu_img("convert", "-q", "-O", "vmdk", "-o", "subformat=monolithicFlat",
                    base, images.root / "flat.vmdk")  # fmt: skip
    desc = images.root / "flat.vmdk"
    assert desc.read_bytes().startswith(b"# Disk DescriptorFile")
    assert detect_format(desc) == "vmdk"
    assert fingerprint(desc)["virtual_size"] == 64 * MIB


def test_large_raw_starting_with_descriptor_text_is_raw():
    head = b"# Disk DescriptorFile\nversion=1\n"
    assert detect_format_bytes(head, file_size=10 * MIB) == "raw"
    assert detect_format_bytes(head, file_size=1024) == "vmdk"


def test_unknown_content_is_raw():
    assert detect_format_bytes(b"") == "raw"
    assert detect_format_bytes(b"\x00" * 512) == "raw"
    assert detect_format_bytes(b"QFI") == "raw"


def test_encrypted_qcow2_is_reported(images):
    # qemu-img's LUKS key benchmark is unreliable in containers, so set crypt_method (header
    # offset 32) the way an encrypting qemu-img would.
    out = images.qcow2("enc.qcow2", size="16M")
    with out.open("r+b") as f:
        f.seek(32)
        f.write((2).to_bytes(4, "big"))
    assert fingerprint(out)["encrypted"] is True


def test_detect_refuses_special_files():
    with pytest.raises(InspectError, match="not a regular file"):
        detect_format("/dev/null")


def test_detect_missing_file(tmp_path):
    with pytest.raises(InspectError, match="image missing"):
        detect_format(tmp_path / "nope")
