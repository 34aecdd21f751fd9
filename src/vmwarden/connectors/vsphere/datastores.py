"""Datastores as storage: every VMDK on them, and which of them no VM or template uses.

Each datastore is browsed once per sweep (``SearchDatastoreSubFolders_Task`` for ``*.vmdk``
disk descriptors with size and modification time); the tasks of all datastores run at once
and are awaited together. A VMDK that no VM's or template's files (``layoutEx.file``, which
lists snapshot deltas too) and no disk backing chain name is orphaned: it is reported as a
volume of the datastore's pool, so the engine's ``orphaned`` classification and filter
treat it as it treats a forgotten libvirt image. A datastore that could not be browsed is a
warning: its orphans are unknown, never "none".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vmwarden.model.estate import Pool, Volume

log = logging.getLogger(__name__)

POOL_TYPE = "vsphere-datastore"
BROWSE_TIMEOUT = 300.0
# Extents and side files of a descriptor, never disks of their own (real vSphere's
# VmDiskFileQuery hides them already; a plain file listing would not).
_EXTENT_SUFFIXES = ("-flat.vmdk", "-delta.vmdk", "-sesparse.vmdk", "-ctk.vmdk", "-rdm.vmdk",
                    "-rdmp.vmdk")  # fmt: skip


@dataclass(frozen=True, slots=True)
class DatastoreFile:
    """One VMDK descriptor on a datastore, named as vSphere names it (``[ds] dir/f.vmdk``)."""

    path: str
    datastore: str
    size: int | None
    mtime: datetime | None


@dataclass
class Browsed:
    files: dict[str, DatastoreFile]
    warnings: list[str]


def browse(si: Any, datastores: dict[str, tuple[str, Any]]) -> Browsed:
    """Every VMDK descriptor of every datastore (one search task each, run together)."""
    from pyVmomi import vim, vmodl

    spec = vim.host.DatastoreBrowser.SearchSpec(
        query=[vim.host.DatastoreBrowser.VmDiskQuery()],
        matchPattern=["*.vmdk"],
        details=vim.host.DatastoreBrowser.FileInfo.Details(
            fileType=True, fileSize=True, modification=True
        ),
    )
    out = Browsed({}, [])
    tasks: list[tuple[str, Any]] = []
    for name, browser in sorted(datastores.values(), key=lambda d: d[0]):
        if browser is None:
            out.warnings.append(f"datastore {name}: no browser; its orphaned VMDKs are unknown")
            continue
        try:
            tasks.append((name, browser.SearchDatastoreSubFolders_Task(f"[{name}]", spec)))
        except vmodl.MethodFault as exc:  # an inaccessible or vanished datastore
            out.warnings.append(f"datastore {name} not browsed ({exc.msg}); orphans unknown")
    for name, state, result in _wait(si, tasks):
        if state != "success":
            out.warnings.append(f"datastore {name} not browsed ({state}); orphans unknown")
            continue
        for folder in result or []:
            for f in getattr(folder, "file", None) or []:
                path = normal(join(str(folder.folderPath), str(f.path)))
                if is_extent(path):
                    continue
                when = getattr(f, "modification", None)
                if when is not None and when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                out.files[path] = DatastoreFile(path, name, getattr(f, "fileSize", None), when)
    return out


def _wait(si: Any, tasks: list[tuple[str, Any]]) -> list[tuple[str, str, Any]]:
    """Each task's (datastore, final state, result), polling all of them in one retrieval
    per round; a task still running at the deadline is reported as ``timeout``."""
    from pyVmomi import vmodl

    if not tasks:
        return []
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=task) for _, task in tasks],
        propSet=[pc.PropertySpec(type=type(tasks[0][1]), pathSet=["info.state"])],
    )
    deadline = time.monotonic() + BROWSE_TIMEOUT
    delay = 0.02
    done: dict[str, str] = {}
    while True:
        for obj in si.content.propertyCollector.RetrieveContents([spec]):
            state = str(obj.propSet[0].val) if obj.propSet else "unknown"
            if state in ("success", "error"):
                done[obj.obj._moId] = state
        if len(done) == len(tasks) or time.monotonic() > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    out = []
    for name, task in tasks:
        state = done.get(task._moId, "timeout")
        if state == "error":
            error = getattr(task.info.error, "msg", None) or "error"
            out.append((name, f"error: {error}", None))
        else:
            out.append((name, state, task.info.result if state == "success" else None))
    return out


def join(folder: str, name: str) -> str:
    """``[ds]`` + ``dir/f.vmdk`` → ``[ds] dir/f.vmdk`` (vSphere's datastore path spelling)."""
    if folder.endswith("]"):
        return f"{folder} {name}"
    if folder.endswith("] ") or folder.endswith("/"):
        return folder + name
    return f"{folder}/{name}"


def is_extent(path: str) -> bool:
    return path.lower().endswith(_EXTENT_SUFFIXES)


def normal(path: str) -> str:
    """One spelling per datastore path: ``[ds]dir/f`` and ``[ds]  dir//f`` as ``[ds] dir/f``."""
    if path.startswith("[") and "]" in path:
        ds, _, rest = path[1:].partition("]")
        rest = "/".join(p for p in rest.strip().split("/") if p)
        return f"[{ds}] {rest}"
    return path


def datastore_pools(browsed: Browsed, used: Iterable[str]) -> list[Pool]:
    """One pool per datastore holding its orphaned VMDKs (files no VM or template uses)."""
    taken = {normal(p) for p in used if p}
    pools: dict[str, Pool] = {}
    for f in browsed.files.values():
        pool = pools.get(f.datastore)
        if pool is None:
            pool = pools[f.datastore] = Pool(f.datastore, POOL_TYPE, f"[{f.datastore}]", True)
        if normal(f.path) in taken:
            continue
        pool.volumes.append(
            Volume(
                name=f.path.rsplit("/", 1)[-1].rsplit("] ", 1)[-1],
                path=f.path,
                pool=f.datastore,
                format="vmdk",
                capacity=f.size,
                allocation=f.size,
                mtime=f.mtime,
            )
        )
    return [pools[name] for name in sorted(pools)]
