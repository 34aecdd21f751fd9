"""Messages between the pool and its workers: length-prefixed JSON over a Unix stream socket,
with the image's open descriptors passed as ``SCM_RIGHTS`` beside a request."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_LEN = struct.Struct(">I")
MAX_MESSAGE = 256 * 1024 * 1024
MAX_FDS = 32


class WireClosed(EOFError):
    """The other end closed the socket (a worker that died, or a parent that went away)."""


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    payload = json.dumps(message, separators=(",", ":"), default=str).encode()
    head = _LEN.pack(len(payload))
    if fds:
        socket.send_fds(sock, [head], fds)
    else:
        sock.sendall(head)
    sock.sendall(payload)


def recv(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One message and the descriptors that came with it (blocking)."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _LEN.size, MAX_FDS)
    if not head:
        raise WireClosed("connection closed")
    head += _exactly(sock, _LEN.size - len(head))
    (length,) = _LEN.unpack(head)
    if length > MAX_MESSAGE:
        raise ValueError(f"message too large: {length} bytes")
    return json.loads(_exactly(sock, length)), list(fds)


class Reader:
    """Incremental reader for the parent, which waits with ``select`` and a deadline."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> dict[str, Any] | None:
        """Add bytes; return the message once it is complete."""
        self._buf += data
        if len(self._buf) < _LEN.size:
            return None
        (length,) = _LEN.unpack_from(self._buf)
        if length > MAX_MESSAGE:
            raise ValueError(f"message too large: {length} bytes")
        if len(self._buf) < _LEN.size + length:
            return None
        payload = bytes(self._buf[_LEN.size : _LEN.size + length])
        del self._buf[: _LEN.size + length]
        return json.loads(payload)


def _exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(min(n - len(chunks), 1024 * 1024))
        if not chunk:
            raise WireClosed("connection closed mid-message")
        chunks += chunk
    return bytes(chunks)
