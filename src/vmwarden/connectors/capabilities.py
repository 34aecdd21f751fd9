"""The connection-less capabilities of a platform, registered per URI scheme like connectors.

Both are loaded without any platform SDK and without a connection:

- **admission** (optional): a platform that asks before a VM starts (libvirt's qemu hook)
  sends a request; ``admission_parser(uri)`` turns it into the ``VM`` about to start. The hook
  waits on the answer while libvirtd holds the domain's lock, so nothing here may load
  libvirt-python or call back into the platform.
- **start hook** (optional): ``start_hook()`` installs, removes and describes the hook
  through which this machine's hypervisor asks before a VM starts (libvirt's qemu hook:
  ``vmwarden hook``); the CLI reaches it without knowing the platform.
- **isolation records**: ``records_of(uri)`` answers what enforcement asks about the opaque
  per-NIC records it journals (which NIC, where it was before quarantine), for stored entries
  judged with no connection open (``enforce.held``; also inside the admission answer).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from vmwarden.connectors.base import claim_schemes, uri_scheme
from vmwarden.errors import ConnectorError
from vmwarden.model.isolation import IsolationRecord
from vmwarden.model.vm import VM, NicOrigin

# Loaded on first use, never at import time; neither imports a platform SDK.
_ADMISSION_MODULES = ("vmwarden.connectors.libvirt.admission",)
#: The platform whose hypervisor runs a start hook on this machine (standard library only).
_START_HOOK_MODULE = "vmwarden.connectors.libvirt.hook_install"
_RECORD_MODULES = (
    "vmwarden.connectors.libvirt.nicstate",
    "vmwarden.connectors.aws.isolation",
    "vmwarden.connectors.vsphere.isolation",
)
_lock = threading.Lock()


class AdmissionParser(Protocol):
    """The optional admission capability: a platform that asks before a VM starts (libvirt's
    qemu hook) sends a request; this turns that request into the VM it would start, so the
    engine judges it without knowing the platform's format. Raises ``VmwardenError`` for a
    request it cannot read (the engine then decides as for an unknown VM)."""

    def __call__(self, request: str, *, host: str, uri: str) -> VM: ...


_admission: dict[str, AdmissionParser] = {}


def register_admission(*schemes: str) -> Callable[[AdmissionParser], AdmissionParser]:
    """Function decorator: the admission request parser of ``schemes``."""

    def decorate(parser: AdmissionParser) -> AdmissionParser:
        claim_schemes(_admission, schemes, parser, "admission parser", _lock)
        return parser

    return decorate


def admission_parser(uri: str) -> AdmissionParser:
    """The admission parser of ``uri``'s platform; a clear error when the platform has no
    start-time admission (it is then gated by isolating VMs ahead of their start)."""
    for module in _ADMISSION_MODULES:
        importlib.import_module(module)
    scheme = uri_scheme(uri)
    with _lock:
        parser = _admission.get(scheme)
        valid = ", ".join(sorted(_admission))
    if parser is None:
        raise ConnectorError(
            f"the platform of {uri!r} has no start-time admission hook",
            hint=f"schemes with admission: {valid}; others are gated by isolating ahead",
        )
    return parser


class StartHookState(Protocol):
    """What is at a hook path: ours or not, its settings, whether the hypervisor daemon
    (pid) runs it and why, and why it is not root's end to end (None: it is)."""

    path: Path
    exists: bool
    ours: bool
    settings: dict[str, str]
    libvirtd_pid: int | None
    libvirtd_sees_it: bool | None
    why: str
    unsafe: str | None


class StartHook(Protocol):
    """The optional start-hook capability of this machine's hypervisor: where the hook
    lives (``MAIN_HOOK``, or ``DROP_IN`` beside another tool's), installing (root-owned end
    to end, or refused), removing only its own, describing it, reloading or restarting the
    daemon so it sees a new hook, asking the admission socket (``ask``, raising
    ``Unreachable``) and whether it gates the VMs of a connection URI (``serves``)."""

    MAIN_HOOK: Path
    DROP_IN: Path
    DEFAULT_LOG: str
    SYSTEM_PYTHON: str
    LOCAL_URI: str  # the connection whose VMs the hook admits
    Unreachable: type[Exception]

    def install(
        self,
        *,
        socket: str,
        unreachable: str,
        path: Path = ...,
        python: str | None = None,
        log: str = ...,
        only: str | None = None,
    ) -> bool: ...

    def uninstall(self, path: Path = ...) -> bool: ...

    def status(self, path: Path = ...) -> StartHookState: ...

    def reload_daemon(self) -> None: ...

    def restart_daemon(self) -> None: ...

    def ask(self, path: str, xml: bytes, timeout: float = ...) -> dict[str, object]: ...

    def serves(self, uri: str) -> bool: ...


def start_hook() -> StartHook:
    """The start hook of this machine's hypervisor (loaded without any platform SDK)."""
    module = importlib.import_module(_START_HOOK_MODULE)
    return module  # type: ignore[return-value]  # the module implements the protocol


class RecordReader(Protocol):
    """What enforcement may ask about a platform's isolation records, without a connection
    (``mark_held`` runs on stored entries, also inside the admission hook's answer):
    ``key(record)``: which NIC (matched against ``Nic.mac``); ``origin(record, network,
    live=)``: where the NIC was before quarantine moved it to ``network`` (None: nothing
    moved it), raising ``VmwardenError`` for an unreadable record."""

    def key(self, record: IsolationRecord) -> str: ...

    def origin(self, record: IsolationRecord, network: str, *, live: bool) -> NicOrigin | None: ...


_readers: dict[str, RecordReader] = {}
_R = TypeVar("_R", bound=RecordReader)


def register_records(*schemes: str) -> Callable[[_R], _R]:
    """Register the isolation record reader of ``schemes`` (an instance)."""

    def decorate(reader: _R) -> _R:
        claim_schemes(_readers, schemes, reader, "isolation records", _lock)
        return reader

    return decorate


def records_of(uri: str) -> RecordReader:
    """The isolation record reader of ``uri``'s platform (a clear error when none)."""
    for module in _RECORD_MODULES:
        importlib.import_module(module)
    scheme = uri_scheme(uri)
    with _lock:
        reader = _readers.get(scheme)
    if reader is None:
        raise ConnectorError(f"no isolation records known for URI scheme {scheme!r} ({uri!r})")
    return reader
