"""One exception root, one subclass per layer.

Layers raise their own subclass so that the CLI (the outermost boundary) can turn any of them
into a one-line message and an exit code, and so that a broad ``except`` is never needed
inside a layer.
"""

from __future__ import annotations


class VmwardenError(Exception):
    """Root of every error vmwarden raises on purpose. ``hint`` says what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class StoreError(VmwardenError):
    """The database could not be opened, migrated or written."""


class ConnectorError(VmwardenError):
    """A hypervisor could not be reached or refused an operation."""

    exit_code = 2


class UnreachableError(ConnectorError):
    """A connection URI could not be opened (after retries)."""


class DomainGoneError(ConnectorError):
    """The VM disappeared between inventory and action."""


class InspectError(VmwardenError):
    """A disk image could not be read; callers turn this into an `uninspectable` finding."""


class PolicyError(VmwardenError):
    """The policy file is invalid. The message names file, line and field."""

    exit_code = 2


class EnforceError(VmwardenError):
    """An action could not be carried out or journaled."""


class NotifyError(VmwardenError):
    """A notification receiver failed; never blocks enforcement."""


class ClusterError(VmwardenError):
    """The Dask cluster (``vmwarden.distributed``): no TLS, a storage path refused."""
