"""Clone hygiene: ``shared-password-hash``, ``duplicate-ssh-host-key``, ``duplicate-machine-id``.

Each is the same value on two or more VMs anywhere in the scan, and every VM involved gets
the finding. The value → VMs index is built once per evaluation (``ctx.index``), so a sweep
stays linear in the number of VMs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, ClassVar

from vmwarden.model import VM, GuestFacts
from vmwarden.policy.filters.base import Entry, Filter, filters
from vmwarden.policy.filters.guest import NOT_INSPECTED, label
from vmwarden.policy.filters.inspected import nothing_to_inspect
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context

Values = Callable[[GuestFacts], set[str] | None]  # a VM's values; None when unknown


def password_hashes(guest: GuestFacts) -> set[str] | None:
    """Fingerprints of real hashes only: locked, empty and absent passwords never match."""
    if guest.users is None:
        return None
    return {
        u.password_fingerprint
        for u in guest.users
        if u.password == "hash" and u.password_fingerprint
    }


def host_keys(guest: GuestFacts) -> set[str] | None:
    if guest.ssh_host_keys is None:
        return None
    return {k.fingerprint for k in guest.ssh_host_keys if k.fingerprint}


IGNORED_MACHINE_IDS = frozenset({"", "uninitialized"})


def machine_ids(guest: GuestFacts) -> set[str] | None:
    """systemd leaves ``uninitialized`` (or an empty file) in images meant to be cloned."""
    if guest.machine_id is None:
        return None
    value = guest.machine_id.strip().lower()
    return set() if value in IGNORED_MACHINE_IDS else {value}


@dataclass(frozen=True, slots=True)
class Duplicates:
    """One evaluation's duplicate index: each value on two or more VMs → those VMs
    (``host/name``, sorted), and for each estate VM involved its shared values and the VMs
    it shares them with. Estate VMs absent from ``involved`` share nothing, so ``match``
    answers them without reading their facts again."""

    shared: dict[str, list[str]]
    involved: dict[int, tuple[VM, list[str], list[str]]]  # id(vm) → (vm, values, vms)
    estate: frozenset[int]  # id() of every estate VM (alive while the estate is)
    # id() of the estate VMs whose values could not be read (or not inspected), when the
    # builder knows them (None: an index built elsewhere, e.g. a streaming sweep's)
    unread: frozenset[int] | None = None


def estate_ids(ctx: Context) -> frozenset[int]:
    """``id()`` of every VM of the evaluation's estate."""
    return frozenset(id(vm) for vm in ctx.estate.vms)


def duplicates(values: Values) -> Callable[[Context], Duplicates]:
    """An index builder over the estate's VMs (see ``Duplicates``).

    Most values are unique, so a value's first VM is kept bare and a group is only made
    when a second VM has it: one set per value and a label per VM made 100k-VM estates
    spend most of this index's time in allocation.
    """

    def build(ctx: Context) -> Duplicates:
        first: dict[str, VM] = {}
        groups: dict[str, list[VM]] = {}
        unread: list[int] = []
        for vm in ctx.estate.vms:
            found = values(vm.guest) if vm.guest is not None else None
            if found is None:
                unread.append(id(vm))
                continue
            for value in found:
                other = first.setdefault(value, vm)
                if other is not vm:
                    groups.setdefault(value, [other]).append(vm)
        shared: dict[str, list[str]] = {}
        members: dict[int, tuple[VM, list[str]]] = {}
        for value, group in groups.items():
            labels = {(vm.host, vm.id): label(vm) for vm in group}
            if len(labels) < 2:  # the same VM listed twice is no clone
                continue
            shared[value] = sorted(labels.values())
            for vm in group:
                members.setdefault(id(vm), (vm, []))[1].append(value)
        involved = {
            key: (vm, sorted(set(hits)), sorted({o for v in hits for o in shared[v]}))
            for key, (vm, hits) in members.items()
        }
        estate = ctx.index("vm-ids", estate_ids)
        return Duplicates(shared, involved, estate, frozenset(unread))

    return build


class DuplicateFilter(Filter):
    """Shared logic; subclasses name their index, value extractor and evidence key."""

    index_name = ""
    what = ""  # what could not be read, for the unknown reason
    values: ClassVar[Values]
    fact: ClassVar[Callable[[GuestFacts], object]]  # C-level getter: called once a VM

    def _build(self, ctx: Context) -> Duplicates:
        return duplicates(self.values)(ctx)

    def prepare(self, ctx: Context) -> None:
        ctx.index(self.index_name, self._build)

    def candidates(self, resources: Sequence[Entry], ctx: Context) -> Sequence[Entry] | None:
        """The VMs ``shared`` does not clear from the index alone: not inspected, values
        unreadable, involved in a duplicate, or from outside the indexed estate.

        By ``id()`` only when the index knows its unread VMs: a pass that reads each VM's
        facts again costs a memory fetch per VM (100k VMs outgrow the CPU caches), more
        than the ``match`` calls it saves.
        """
        index = ctx.index(self.index_name, self._build)
        estate, involved, fact = index.estate, index.involved, self.fact
        if index.unread is not None and estate is ctx.index("vm-ids", estate_ids):
            keep = index.unread | involved.keys()  # built here: every resource is in it
            return [entry for entry in resources if id(entry[1]) in keep]
        return [
            entry
            for entry in resources
            if (guest := entry[1].guest) is None
            or (key := id(entry[1])) in involved
            or key not in estate
            or fact(guest) is None
        ]

    def shared(self, resource: VM, ctx: Context) -> tuple[list[str], list[str]] | Verdict:
        """(values of this VM that are shared, every VM sharing them) or an unknown verdict."""
        if resource.guest is None:
            if nothing_to_inspect(resource):  # diskless/PXE: no guest disk to share values
                return ([], [])
            return Verdict.unknown(NOT_INSPECTED)
        index = ctx.index(self.index_name, self._build)
        key = id(resource)
        if key in index.estate:
            if not self.readable(resource.guest):
                return Verdict.unknown(f"{self.what} could not be read")
            entry = index.involved.get(key)
            return ([], []) if entry is None else (list(entry[1]), list(entry[2]))
        mine = self.values(resource.guest)  # a VM from outside the estate (admission)
        if mine is None:
            return Verdict.unknown(f"{self.what} could not be read")
        hits = sorted(v for v in mine if v in index.shared)
        vms = sorted({vm for v in hits for vm in index.shared[v]})
        return hits, vms

    def readable(self, guest: GuestFacts) -> bool:
        """Whether ``values(guest)`` is not None, without computing the values."""
        return self.fact(guest) is not None


@filters.register("shared-password-hash")
class SharedPasswordHash(DuplicateFilter):
    """The same password hash (by keyed fingerprint) is on two or more VMs; every VM
    involved matches, naming its users whose hash is shared. Locked (``!``, ``*``) and
    empty passwords are not hashes and never match. Users not read → unknown.

    Example:
        - name: cloned-passwords
          resource: vm
          severity: high
          filters: [shared-password-hash]
    """

    index_name = "duplicate-password-hashes"
    what = "users"
    values = staticmethod(password_hashes)
    fact = attrgetter("users")  # the fact ``values`` reads: None when it was not read

    def match(self, resource: VM, ctx: Context) -> Verdict:
        shared = self.shared(resource, ctx)
        if isinstance(shared, Verdict):
            return shared
        hits, vms = shared
        if not hits:
            return NO_MATCH
        users = sorted(
            u.name
            for u in resource.guest.users or ()  # type: ignore[union-attr]
            if u.password == "hash" and u.password_fingerprint in hits
        )
        return Verdict.match(users=users, vms=vms)


@filters.register("duplicate-ssh-host-key")
class DuplicateSshHostKey(DuplicateFilter):
    """An SSH host key (by SHA256 fingerprint) is on two or more VMs: clones that were
    never re-keyed, open to impersonation. Every VM involved matches. Keys not read →
    unknown.

    Example:
        - name: cloned-host-keys
          resource: vm
          severity: medium
          filters: [duplicate-ssh-host-key]
    """

    index_name = "duplicate-ssh-host-keys"
    what = "SSH host keys"
    values = staticmethod(host_keys)
    fact = attrgetter("ssh_host_keys")

    def match(self, resource: VM, ctx: Context) -> Verdict:
        shared = self.shared(resource, ctx)
        if isinstance(shared, Verdict):
            return shared
        hits, vms = shared
        return Verdict.match(fingerprints=hits, vms=vms) if hits else NO_MATCH


@filters.register("duplicate-machine-id")
class DuplicateMachineId(DuplicateFilter):
    """The same /etc/machine-id is on two or more VMs (clones not reset with
    ``systemd-machine-id-setup``). Empty and ``uninitialized`` ids are how templates are
    meant to ship and are ignored. Machine-id not read → unknown.

    Example:
        - name: cloned-machine-id
          resource: vm
          severity: low
          filters: [duplicate-machine-id]
    """

    index_name = "duplicate-machine-ids"
    what = "machine-id"
    values = staticmethod(machine_ids)
    fact = attrgetter("machine_id")

    def match(self, resource: VM, ctx: Context) -> Verdict:
        shared = self.shared(resource, ctx)
        if isinstance(shared, Verdict):
            return shared
        hits, vms = shared
        return Verdict.match(machine_id=hits[0], vms=vms) if hits else NO_MATCH
