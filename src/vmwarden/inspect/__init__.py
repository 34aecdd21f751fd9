"""Inspection: disk images read safely, offline, without running anything they contain.

This package reads image *headers* in Python (never ``qemu-img`` on untrusted files), follows
backing chains only into regular files inside allowed directories, and hashes image files with
a cache so that a sweep never re-reads an unchanged file.

- :mod:`vmwarden.inspect.magic` — which format a file is (qcow2, vmdk, vhdx, raw, ...).
- :mod:`vmwarden.inspect.chain` — a disk's backing chain as :class:`~vmwarden.model.Layer` s.
- :mod:`vmwarden.inspect.digest` — ``sha256:`` digests, the digest cache, fingerprints.
"""

from __future__ import annotations
