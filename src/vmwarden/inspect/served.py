"""Bytes of layers that are not files here, served to the inspector worker by its parent.

The worker never opens a host path or a socket of its own (:mod:`~vmwarden.inspect.worker`).
For a local disk the parent passes open descriptors; for another host's volume there is no
descriptor to pass, so the parent passes one end of a Unix socket pair per layer and answers
the worker's range requests from a :class:`~vmwarden.model.ranged.RangedReader` (the remote
volume's reader and its block cache). The worker can ask only for ranges of the layers it
was given, at most :data:`MAX_READ` bytes at a time; a remote read error reaches it as
``EIO`` with the reason, so dissect fails, the disk is ``uninspectable`` with that reason,
and nothing crashes.

Wire format (big-endian): request ``offset:u64 length:u32``; answer ``status:u8 length:u32``
then ``length`` bytes: the data (status 0) or a UTF-8 error message (status 1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
from types import TracebackType
from typing import Self

from vmwarden.model.ranged import RangedReader

REQUEST = struct.Struct(">QI")
ANSWER = struct.Struct(">BI")
#: Most bytes one request may ask for (the worker splits bigger reads).
MAX_READ = 8 * 1024 * 1024
OK, ERROR = 0, 1


class LayerServer:
    """The parent's side for one inspection: a socket pair and a thread per layer.

    ``worker_fds`` go to the worker with the request (``SCM_RIGHTS``); ``served`` counts the
    bytes answered and ``errors`` keeps each read error's reason (the parent reports the
    first, clearer than whatever dissect made of ``EIO``).
    """

    def __init__(self, readers: list[RangedReader]) -> None:
        self.served = 0
        self.errors: list[str] = []
        self._ours: list[socket.socket] = []
        self._theirs: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        for reader in readers:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._ours.append(ours)
            self._theirs.append(theirs)
            thread = threading.Thread(
                target=self._serve, args=(ours, reader), daemon=True, name="serve-layer"
            )
            thread.start()
            self._threads.append(thread)

    def worker_fds(self) -> list[int]:
        return [s.fileno() for s in self._theirs]

    def _serve(self, sock: socket.socket, reader: RangedReader) -> None:
        try:
            while True:
                head = _recv_exactly(sock, REQUEST.size)
                if head is None:
                    return  # the worker is done with this layer (or gone)
                offset, length = REQUEST.unpack(head)
                if length > MAX_READ:
                    self._answer(sock, ERROR, f"read of {length} bytes refused".encode())
                    continue
                try:
                    data = reader.read(offset, length)
                except OSError as exc:
                    reason = str(exc) or type(exc).__name__
                    with self._lock:
                        self.errors.append(reason)
                    self._answer(sock, ERROR, reason.encode(errors="replace")[:4096])
                    continue
                with self._lock:
                    self.served += len(data)
                self._answer(sock, OK, data)
        except OSError:
            return  # the worker was killed mid-answer

    @staticmethod
    def _answer(sock: socket.socket, status: int, payload: bytes) -> None:
        sock.sendall(ANSWER.pack(status, len(payload)) + payload)

    def close(self) -> None:
        for s in self._theirs + self._ours:
            with contextlib.suppress(OSError):
                s.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ServedSource:
    """The worker's side: ``pread`` of a layer the parent serves over descriptor ``fd``.

    Plain ``os.read``/``os.write`` on the passed descriptor: no socket object is made, no
    address used (the worker's audit hook refuses both).
    """

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = max(0, int(size))

    def pread(self, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset``, shorter only at the end of the layer.

        Raises:
            OSError: EIO with the parent's reason (a remote read failed), or the parent gone.
        """
        end = min(self.size, offset + max(0, n))
        pieces: list[bytes] = []
        while offset < end:
            length = min(end - offset, MAX_READ)
            _write_all(self.fd, REQUEST.pack(offset, length))
            head = _read_exactly(self.fd, ANSWER.size)
            status, size = ANSWER.unpack(head)
            payload = _read_exactly(self.fd, size) if size else b""
            if status != OK:
                raise OSError(errno.EIO, payload.decode(errors="replace"))
            if len(payload) > length:
                raise OSError(errno.EIO, "served more bytes than asked for")
            pieces.append(payload)
            if len(payload) < length:
                break
            offset += length
        return b"".join(pieces)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_exactly(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), 1024 * 1024))
        if not chunk:
            raise OSError(errno.EIO, "layer server closed the connection")
        buf += chunk
    return bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
