"""sshd settings (as sshd would resolve them) and SSH host key fingerprints."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import posixpath
import struct

from vmwarden.inspect.guest.files import GuestFiles, GuestReadError
from vmwarden.model import HostKey

SSHD_CONFIG = "/etc/ssh/sshd_config"
SSH_DIR = "/etc/ssh"
MAX_INCLUDE_DEPTH = 16
MAX_INCLUDED_FILES = 256
_OPENSSH_KEY_MAGIC = b"openssh-key-v1\x00"


def read_sshd_config(files: GuestFiles) -> dict[str, str] | None:
    """Lower-cased directive → value of the global section, first value winning as in sshd.

    ``Include`` is followed (globs, relative to /etc/ssh, in sorted order as sshd does),
    ``Match`` blocks are conditional and so skipped. ``None`` when there is no sshd_config.
    """
    if files.read_text(SSHD_CONFIG, limit=1024 * 1024) is None:
        return None
    settings: dict[str, str] = {}
    state = {"files": 0}
    _parse(files, SSHD_CONFIG, settings, depth=0, state=state)
    return settings


def _parse(
    files: GuestFiles, path: str, settings: dict[str, str], *, depth: int, state: dict[str, int]
) -> None:
    if depth > MAX_INCLUDE_DEPTH:
        raise GuestReadError(f"{path}: Include nested deeper than {MAX_INCLUDE_DEPTH}")
    state["files"] += 1
    if state["files"] > MAX_INCLUDED_FILES:
        raise GuestReadError(f"{path}: more than {MAX_INCLUDED_FILES} included files")
    text = files.read_text(path, limit=1024 * 1024)
    if text is None:
        return
    in_match = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        keyword, value = _split(line)
        key = keyword.lower()
        if key == "match":
            in_match = True
            continue
        if in_match:
            continue
        if key == "include":
            for pattern in value.split():
                for included in _expand(files, pattern):
                    _parse(files, included, settings, depth=depth + 1, state=state)
            continue
        settings.setdefault(key, value)


def _split(line: str) -> tuple[str, str]:
    if "=" in line.split(None, 1)[0]:
        keyword, _, value = line.partition("=")
    else:
        parts = line.split(None, 1)
        keyword, value = parts[0], parts[1] if len(parts) > 1 else ""
    return keyword.strip(), value.strip().lstrip("=").strip().strip('"')


def _expand(files: GuestFiles, pattern: str) -> list[str]:
    if not pattern.startswith("/"):
        pattern = posixpath.join(SSH_DIR, pattern)
    directory, name = posixpath.split(pattern)
    if not any(c in name for c in "*?["):
        return [pattern]
    if any(c in directory for c in "*?["):
        raise GuestReadError(f"sshd Include with a wildcard directory not supported: {pattern}")
    return [
        posixpath.join(directory, n)
        for n in files.listdir(directory) or []
        if fnmatch.fnmatchcase(n, name)
    ]


def fingerprint_blob(blob: bytes) -> str:
    """``SHA256:<base64, unpadded>`` of a public key blob, as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_public_key(text: str) -> tuple[str, bytes] | None:
    """``(type, blob)`` of an OpenSSH public key line (``type base64 [comment]``)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith("#"):
            continue
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            continue
        key_type = _blob_type(blob)
        if key_type is not None:
            return key_type, blob
    return None


def public_blob_of_private(data: bytes) -> tuple[str, bytes] | None:
    """The public key blob stored (unencrypted) in an OpenSSH-format private key file."""
    text = data.decode("ascii", "replace")
    begin, end = "-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY-----"
    if begin not in text or end not in text:
        return None
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        raw = base64.b64decode("".join(body.split()))
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_OPENSSH_KEY_MAGIC):
        return None
    pos = len(_OPENSSH_KEY_MAGIC)
    try:
        for _ in range(3):  # ciphername, kdfname, kdfoptions
            pos = _skip_string(raw, pos)
        (count,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        if count < 1:
            return None
        (length,) = struct.unpack_from(">I", raw, pos)
        blob = raw[pos + 4 : pos + 4 + length]
    except struct.error:
        return None
    key_type = _blob_type(blob)
    return (key_type, blob) if key_type else None


def _skip_string(raw: bytes, pos: int) -> int:
    (length,) = struct.unpack_from(">I", raw, pos)
    if pos + 4 + length > len(raw):
        raise struct.error("string beyond end")
    return pos + 4 + length


def _blob_type(blob: bytes) -> str | None:
    if len(blob) < 4:
        return None
    (length,) = struct.unpack_from(">I", blob, 0)
    if not 0 < length <= 64 or 4 + length > len(blob):
        return None
    name = blob[4 : 4 + length]
    if not all(32 < c < 127 for c in name):
        return None
    return name.decode("ascii")


def read_host_keys(files: GuestFiles) -> list[HostKey] | None:
    """Fingerprints of ``/etc/ssh/ssh_host_*_key`` (from ``.pub``, else the private key file).

    ``None`` when /etc/ssh does not exist; ``[]`` when it holds no host keys (a template
    whose keys are generated at first boot).
    """
    names = files.listdir(SSH_DIR)
    if names is None:
        return None
    keys: list[HostKey] = []
    for name in names:
        if not (name.startswith("ssh_host_") and name.endswith("_key")):
            continue
        path = posixpath.join(SSH_DIR, name)
        found = None
        if name + ".pub" in names:
            text = files.read_text(path + ".pub", limit=64 * 1024)
            found = parse_public_key(text) if text else None
        if found is None:
            data = files.read_bytes(path, limit=64 * 1024)
            found = public_blob_of_private(data) if data else None
        if found is not None:
            key_type, blob = found
            keys.append(HostKey(type=key_type, fingerprint=fingerprint_blob(blob), path=path))
    return keys
