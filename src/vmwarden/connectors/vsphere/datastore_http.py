"""One vCenter's datastore files over HTTPS (``/folder/…``): requests, HEAD, ranged reads.

vCenter serves every datastore file at ``https://VC/folder/<path>?dcPath=<dc>&dsName=<ds>``
with the session cookie of the API login. A file is read with ranged GETs (``Range:
bytes=a-b``) through a block cache with sequential read-ahead
(:func:`~vmwarden.model.ranged.gather_blocks`, as a remote libvirt volume is), so dissect's
small scattered reads become few requests over a few kept-alive connections. TLS is
verified exactly as the API session is: an own context, verification off only with
``insecure=1`` in the URI. The cookie is sent, never logged.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import hashlib
import http.client
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from vmwarden.connectors.base import DiskUnavailableError
from vmwarden.model.ranged import gather_blocks

if TYPE_CHECKING:
    from vmwarden.connectors.vsphere.disks import DatastorePath

#: The unit of ranged reads and of the cache: 32 KiB blocks, read-ahead to 512 KiB, kept the
#: bytes transferred within ~3x of what dissect asks at ~35 requests per Debian inspection
#: (a request to vcsim on loopback TLS costs ~1 ms; bench/vsphere_disk.py).
BLOCK = 32 * 1024
#: Most bytes one sequential read-ahead fetches.
MAX_READAHEAD = 512 * 1024
#: Bytes of cached blocks per file.
CACHE_BYTES = 16 * 1024 * 1024
#: HTTPS connections kept open per vCenter (readers of different layers read at once).
MAX_IDLE = 4
STREAM_CHUNK = 1024 * 1024


class DatastoreFileUnavailable(DiskUnavailableError):
    """A datastore path this connection cannot serve (no such datastore or file, refused)."""


class DatastoreReadError(OSError):
    """A ranged read of a datastore file failed (the file went away, HTTP or TLS error)."""


@functools.cache
def ssl_context(insecure: bool) -> ssl.SSLContext:
    """Verified against the system trust store unless the URI says ``insecure=1``.

    Built once per process and shared (a context is safe to share between connections and
    threads): loading the trust store costs 50-100 ms, as much as inspecting a disk. A CA
    installed later is seen by the next process (``watch`` restarts pick it up)."""
    if insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no trust store to load
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context()


class DatastoreHttp:
    """HTTPS requests to one vCenter's ``/folder`` endpoint with the API session's cookie.

    Keeps a few idle connections (keep-alive) so ranged reads do not pay a TLS handshake each.
    ``cookie`` is called per request (a re-login changes it); it is never logged.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        insecure: bool,
        cookie: Callable[[], str | None],
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port = host, port
        self._context = ssl_context(insecure)
        self._cookie = cookie
        self._timeout = timeout
        self._idle: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()
        self.requests = 0
        self.transferred = 0

    def _connection(self) -> http.client.HTTPSConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return http.client.HTTPSConnection(
            self.host, self.port, context=self._context, timeout=self._timeout
        )

    def _release(self, conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"User-Agent": "vmwarden", **extra}
        cookie = self._cookie()
        if cookie:
            headers["Cookie"] = cookie
        return headers

    @contextlib.contextmanager
    def open(
        self, method: str, url: str, headers: dict[str, str] | None = None
    ) -> Iterator[http.client.HTTPResponse]:
        """A response whose body the caller reads; the connection is reused when it was read
        to the end. Retries once on a connection the server closed while idle."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, url, headers=self._headers(headers or {}))
                response = conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                conn.close()
                if attempt:
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            self.requests += 1
            try:
                yield response
            finally:
                if response.isclosed() and not response.will_close:
                    self._release(conn)  # the body was read to its end: reusable
                else:
                    conn.close()
            return

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class DatastoreFile:
    """One datastore file read by ranges over HTTPS, block-cached with read-ahead.

    Implements :class:`~vmwarden.model.ranged.RangedReader`. ``transferred`` and
    ``requests`` count what came over the wire (the bench compares them with what dissect
    needed).
    """

    def __init__(
        self, http_: DatastoreHttp, where: DatastorePath, url: str, size: int, mtime_ns: int
    ) -> None:
        self._http = http_
        self.host = http_.host  # the vCenter (as a remote volume reader names its host)
        self.where = where
        self.path = str(where)
        self.url = url
        self._size = size
        self.mtime_ns = mtime_ns
        self.transferred = 0
        self.requests = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._capacity = max(1, CACHE_BYTES // BLOCK)
        self._next = -1
        self._ahead = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def identity(self) -> dict[str, Any]:
        return {
            "host": self._http.host,
            "path": self.path,
            "size": self._size,
            "mtime_ns": self.mtime_ns,
        }

    def read(self, offset: int, n: int) -> bytes:
        end = min(self._size, offset + max(0, n))
        if offset < 0 or end <= offset:
            return b""
        with self._lock:
            return gather_blocks(self._blocks, offset, end, BLOCK, self._fetch)

    def _fetch(self, first: int, stop: int) -> list[bytes]:
        if first == self._next:
            self._ahead = min(max(1, self._ahead * 2), MAX_READAHEAD // BLOCK)
        else:
            self._ahead = 0
        last_block = (self._size - 1) // BLOCK
        fetch_stop = min(stop + self._ahead, last_block + 1)
        while fetch_stop > stop and (fetch_stop - 1) in self._blocks:
            fetch_stop -= 1
        offset = first * BLOCK
        data = self.get_range(offset, min(self._size, fetch_stop * BLOCK) - offset)
        blocks = [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]
        for i, block in enumerate(blocks):
            self._blocks[first + i] = block
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)
        self._next = fetch_stop
        return blocks

    def get_range(self, offset: int, length: int) -> bytes:
        """Exactly ``offset..offset+length`` in one ranged GET (uncached).

        Raises:
            DatastoreReadError: not a 206 with that range, short body, HTTP/TLS failure.
        """
        wanted = f"bytes {offset}-{offset + length - 1}/"
        try:
            with self._http.open(
                "GET", self.url, {"Range": f"bytes={offset}-{offset + length - 1}"}
            ) as response:
                status, got = response.status, response.getheader("Content-Range") or ""
                # never more than asked for (+1 to see an overlong answer): a server that
                # ignores Range would otherwise send the whole disk into memory per block;
                # an unread rest closes that connection instead of reusing it
                ok = status == 206 or (status == 200 and offset == 0)
                body = response.read(length + 1) if ok else b""
        except (OSError, http.client.HTTPException) as exc:
            raise DatastoreReadError(f"cannot read {self.path} over HTTPS: {exc}") from None
        self.requests += 1
        self.transferred += len(body)
        self._http.transferred += len(body)
        if status == 200 and offset == 0 and len(body) >= length:
            return body[:length]  # a server that ignores Range: the file's first bytes
        if status != 206 or not got.startswith(wanted) or len(body) != length:
            raise DatastoreReadError(
                f"ranged read of {self.path} at {offset}+{length} answered HTTP {status} "
                f"{got or '(no Content-Range)'} with {len(body)} bytes: changed while read?"
            )
        return body

    def backing_path(self, hint: str) -> str:
        """The datastore path of the parent this VMDK's header names (a linked clone's or
        snapshot's ``parentFileNameHint``), resolved as vSphere does: within this file's
        datastore (:func:`~vmwarden.connectors.vsphere.disks.resolve_hint`)."""
        from vmwarden.connectors.vsphere.disks import resolve_hint

        return resolve_hint(self.where, hint)

    def digest(self) -> tuple[str, bool]:
        """``sha256:<hex>`` of the whole file in one streamed GET, and whether its size and
        mtime were unchanged afterwards (only then may the digest be cached)."""
        h = hashlib.sha256()
        got = 0
        try:
            with self._http.open("GET", self.url) as response:
                if response.status != 200:
                    raise DatastoreReadError(f"{self.path}: HTTP {response.status} on a full GET")
                while piece := response.read(STREAM_CHUNK):
                    h.update(piece)
                    got += len(piece)
        except (OSError, http.client.HTTPException) as exc:
            raise DatastoreReadError(f"cannot hash {self.path} over HTTPS: {exc}") from None
        self.transferred += got
        self._http.transferred += got
        return "sha256:" + h.hexdigest(), got == self._size and self.still_unchanged()

    def still_unchanged(self) -> bool:
        """Whether a HEAD still reports this size and mtime (no mtime: never assumed)."""
        try:
            size, mtime_ns = head(self._http, self.url, self.path)
        except DiskUnavailableError:
            return False
        return mtime_ns > 0 and (size, mtime_ns) == (self._size, self.mtime_ns)

    def drop_cache(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._next, self._ahead = -1, 0


def head(http_: DatastoreHttp, url: str, path: str) -> tuple[int, int]:
    """Size and mtime (ns; 0 when the server sends none) of a datastore file.

    Raises:
        DatastoreFileUnavailable: missing (404), refused (401/403), not a plain file, or
            the request failed (TLS included: an untrusted certificate is named).
    """
    try:
        with http_.open("HEAD", url) as response:
            response.read()
            status = response.status
            length = response.getheader("Content-Length")
            modified = response.getheader("Last-Modified")
            ranges = response.getheader("Accept-Ranges") or ""
    except ssl.SSLCertVerificationError as exc:
        raise DatastoreFileUnavailable(
            f"{path}: TLS certificate of {http_.host}:{http_.port} not trusted "
            f"({exc.verify_message}); add insecure=1 to the URI only for a lab vCenter"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DatastoreFileUnavailable(f"{path}: datastore HTTPS request failed: {exc}") from None
    if status == 404:
        raise DatastoreFileUnavailable(f"{path}: no such file on the datastore")
    if status in (401, 403):
        raise DatastoreFileUnavailable(f"{path}: datastore file access refused (HTTP {status})")
    if status != 200:
        raise DatastoreFileUnavailable(f"{path}: datastore answered HTTP {status}")
    if "bytes" not in ranges.lower() or length is None or not length.isdigit():
        raise DatastoreFileUnavailable(f"{path}: not a regular file (no ranged access)")
    mtime_ns = 0
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            mtime_ns = int(email.utils.parsedate_to_datetime(modified).timestamp()) * 10**9
    return int(length), mtime_ns
