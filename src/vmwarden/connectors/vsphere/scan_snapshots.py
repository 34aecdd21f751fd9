"""Snapshots vmwarden takes to read a running VM's disks stably, and never leaks.

Why: a running VM writes its disk while a sweep reads it; a read of the live file can mix
blocks from before and after a write (torn). After ``CreateSnapshot_Task`` (no memory, no
quiescing) the VM writes into a new delta and the files its disks named before — the chain
the inventory saw — are no longer written: reading those gives the disk as it was at the
snapshot, crash-consistent (as if power were cut: the guest's journal would replay, as for
libvirt's live disks) but unchanging for the whole read, which is what vSphere backup tools
read. The snapshot (``vmwarden-scan-<token>``) is removed when the connection closes.

Never leaked: before it is created, its token is written to a journal on this machine
(fsynced, ``$XDG_STATE_HOME/vmwarden/vsphere-scan-snapshots.json``): a process killed
between create and remove leaves an entry, and the next connection that prepares disks on
that vCenter removes the ``vmwarden-scan-<token>`` snapshots whose entry belongs to a
process that is gone. A snapshot the journal does not hold for a dead process (another
sweep's in progress, an operator's) is never touched.

A VM whose snapshot fails, and disks in an independent mode (vSphere leaves them out of
snapshots), are read live: crash-consistent at best, and logged as such.

vcsim 0.24 (``simulator/virtual_machine.go`` CreateSnapshotTask, ``snapshot.go``) adds the
snapshot to the VM's tree and writes a ``.vmsn`` file, but makes no delta disk and leaves
the disks' backing as it was; RemoveSnapshot_Task deletes the ``.vmsn``. Against it the
tests prove the snapshot's bookkeeping (taken once, named, removed, journaled, cleaned up
after a crash), not that the base stops changing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmwarden.connectors.snapshot_journal import SnapshotJournal, journal_file
from vmwarden.connectors.vsphere.collect import container, objects
from vmwarden.connectors.vsphere.tasks import TASK_TIMEOUT, call, fault_text
from vmwarden.errors import ConnectorError

log = logging.getLogger(__name__)

PREFIX = "vmwarden-scan-"
_PROPS = ["name", "config.instanceUuid", "runtime.powerState", "config.hardware.device"]


def journal_path() -> Path:
    return journal_file("vsphere-scan-snapshots.json")


class ScanJournal(SnapshotJournal):
    """The scan snapshots in flight: vCenter and the VM's moid."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path or journal_path(), "vcenter")

    def begin(self, vcenter: str, moid: str) -> str:
        return self.add(vcenter, [{"vm": moid}])[0]

    def done(self, tokens: list[str]) -> None:
        self.forget(tokens)


def _props(si: Any, obj: Any, paths: list[str]) -> dict[str, Any]:
    """Properties of one object by the PropertyCollector (unset ones absent).

    Not pyvmomi's accessors: vcsim 0.24 panics fetching a VM's unset ``snapshot`` alone, and
    a RemoveSnapshot task's ``info.entity`` is the snapshot, which pyvmomi refuses to read."""
    from pyVmomi import vmodl

    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=obj)],
        propSet=[pc.PropertySpec(type=type(obj), pathSet=paths)],
    )
    got = si.content.propertyCollector.RetrieveContents([spec])
    return {p.name: p.val for p in (got[0].propSet if got else [])}


def _wait(si: Any, task: Any, what: str, timeout: float = TASK_TIMEOUT) -> Any:
    """The task's result once it succeeded (``tasks.wait``, reading only what it needs)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        info = _props(si, task, ["info.state", "info.error", "info.result"])
        state = str(info.get("info.state"))
        if state == "success":
            return info.get("info.result")
        if state == "error":
            raise ConnectorError(f"{what} failed in vCenter: {fault_text(info.get('info.error'))}")
        if time.monotonic() > deadline:
            raise ConnectorError(f"{what}: vCenter task {task._moId} still {state}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def snapshot_tree(si: Any, vm: Any) -> list[Any]:
    """Every snapshot of ``vm`` (tree nodes, depth first); none when it has none."""
    info = _props(si, vm, ["snapshot"]).get("snapshot")
    return list(_tree(getattr(info, "rootSnapshotList", None)))


def _tree(nodes: Any) -> Iterator[Any]:
    for node in nodes or []:
        yield node
        yield from _tree(getattr(node, "childSnapshotList", None))


class ScanSnapshots:
    """The scan snapshots one connection takes: ``prepare`` (the running VMs using the
    given disk paths, one snapshot each), ``release_all`` (at close), ``sweep_leftovers``."""

    def __init__(
        self, si: Any, vcenter: str, datacenter: str | None, journal: ScanJournal | None = None
    ) -> None:
        self._si = si
        self.vcenter = vcenter
        self._datacenter = datacenter
        self.journal = journal or ScanJournal()
        self.taken: dict[str, tuple[Any, str]] = {}  # VM moId → (snapshot ref, token)
        self.live: dict[str, str] = {}  # disk path → why it is read live
        self._swept = False

    def _vms(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Every VM in scope with what ``prepare`` needs, in one retrieval."""
        from pyVmomi import vim, vmodl

        pc = vmodl.query.PropertyCollector
        content = self._si.content
        view = content.viewManager.CreateContainerView(
            container(self._si, self._datacenter), [vim.VirtualMachine], True
        )
        try:
            spec = pc.FilterSpec(
                objectSet=[
                    pc.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[
                            pc.TraversalSpec(name="view", path="view", skip=False, type=type(view))
                        ],
                    )
                ],
                propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=_PROPS)],
            )
            for obj in objects(content.propertyCollector, spec):
                yield obj.obj, {p.name: p.val for p in obj.propSet}
        finally:
            view.DestroyView()

    def prepare(self, paths: list[str]) -> None:
        """Snapshot each powered-on VM one of whose disks is in ``paths`` (once per VM per
        connection); ``paths`` (the inventory's, taken before) are then its stable chain."""
        from pyVmomi import vim

        self.sweep_leftovers()
        wanted = set(paths)
        for ref, props in self._vms():
            if str(props.get("runtime.powerState")) != "poweredOn" or ref._moId in self.taken:
                continue
            disks = [
                d
                for d in props.get("config.hardware.device") or []
                if isinstance(d, vim.vm.device.VirtualDisk)
                and getattr(d.backing, "fileName", None) in wanted
            ]
            if not disks:
                continue
            name = str(props.get("name", ref._moId))
            for d in list(disks):
                mode = str(getattr(d.backing, "diskMode", "") or "")
                if mode.startswith("independent"):
                    self._read_live(name, d.backing.fileName, f"{mode} disk: not in snapshots")
                    disks.remove(d)
            if not disks:
                continue  # a snapshot would hold none of them
            try:
                self.take(ref, name)
            except Exception as exc:  # this VM is read live with the reason; others go on
                for d in disks:
                    self._read_live(name, d.backing.fileName, f"scan snapshot failed: {exc}")

    def _read_live(self, vm: str, path: str, why: str) -> None:
        self.live[path] = why
        log.warning(
            "vSphere VM %r disk %r is read live (crash-consistent at best): %s", vm, path, why
        )

    def take(self, vm: Any, name: str) -> Any:
        """Journal, then snapshot the VM (no memory, no quiescing); the snapshot."""
        token = self.journal.begin(self.vcenter, vm._moId)
        what = f"scan snapshot of {name}"
        try:
            task = call(
                what,
                vm.CreateSnapshot_Task,
                name=f"{PREFIX}{token}",
                description=(
                    "vmwarden: a stable base to read this running VM's disks from; "
                    "removed when the scan is done"
                ),
                memory=False,
                quiesce=False,
            )
        except Exception:
            self.journal.done([token])  # refused: nothing was created
            raise
        snap = _wait(self._si, task, what)  # a task that fails or lingers stays journaled: next run
        self.taken[vm._moId] = (snap, token)
        return snap

    def release_all(self) -> list[str]:
        """Remove every snapshot taken (best effort: one that fails stays journaled for the
        next run); the VM moIds whose snapshot was removed."""
        removed: list[str] = []
        for moid, (snap, _token) in list(self.taken.items()):
            try:
                self._remove(snap, moid)
                removed.append(moid)
            except Exception as exc:
                log.warning("scan snapshot of VM %s not removed (next run will): %s", moid, exc)
        self.journal.done([self.taken.pop(moid)[1] for moid in removed])
        return removed

    def _remove(self, snap: Any, what: str) -> None:
        task = call(
            f"removing scan snapshot of {what}",
            snap.RemoveSnapshot_Task,
            removeChildren=False,
            consolidate=True,
        )
        _wait(self._si, task, f"removing scan snapshot of {what}")

    def sweep_leftovers(self) -> list[str]:
        """Remove ``vmwarden-scan-<token>`` snapshots whose journal entry belongs to a dead
        process of this machine (once per connection); the snapshot names removed."""
        if self._swept:
            return []
        self._swept = True
        abandoned = self.journal.abandoned(self.vcenter)
        if not abandoned:
            return []
        from pyVmomi import vim

        removed: list[str] = []
        failed: set[str] = set()
        for moid in {str(e.get("vm")) for e in abandoned.values()}:
            vm = vim.VirtualMachine(moid, self._si._stub)
            try:
                nodes = snapshot_tree(self._si, vm)
            except Exception:  # the VM is gone, and its snapshots with it
                continue
            mine = {f"{PREFIX}{t}": t for t, e in abandoned.items() if e.get("vm") == moid}
            for node in nodes:
                token = mine.get(str(node.name))
                if token is None:
                    continue
                try:
                    self._remove(node.snapshot, f"VM {moid}")
                    removed.append(str(node.name))
                except Exception as exc:  # stays journaled for the run after
                    log.warning("leftover scan snapshot %s not removed: %s", node.name, exc)
                    failed.add(token)
        # removed now, or never created: forgotten
        self.journal.done([t for t in abandoned if t not in failed])
        return removed
