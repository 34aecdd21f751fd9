"""``service``, ``no-time-sync`` and ``ssh-root-login``: how a guest is set to run at boot.

Offline, vmwarden reads what is *enabled* (systemd wants/ symlinks, init scripts), not what
runs: ``running:`` therefore means "enabled, so running once booted", and the evidence says
so. Unit names compare without their ``.service`` suffix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import model_validator

from vmwarden.policy.facts import unit
from vmwarden.policy.filters.base import filters
from vmwarden.policy.filters.guest import GuestFilter
from vmwarden.policy.schema import Name, StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts
    from vmwarden.policy.context import Context

NO_SERVICES = "enabled services could not be read"


def enabled_units(guest: GuestFacts, ctx: Context) -> set[str] | None:
    """The guest's enabled units (``.service`` dropped), derived once per evaluation."""
    return ctx.guest(guest).units()


class ServiceParams(StrictModel):
    running: list[Name] = []  # match when any is running (offline: enabled)
    enabled: list[Name] = []  # match when any is enabled
    disabled: list[Name] = []  # match when any is not enabled (including not installed)

    @model_validator(mode="after")
    def _something(self) -> ServiceParams:
        if not (self.running or self.enabled or self.disabled):
            raise ValueError("give 'running', 'enabled' or 'disabled' services")
        return self


@filters.register("service")
class Service(GuestFilter):
    """A listed service is in the state its key names, like ``package installed:``: the
    keys describe the violation. ``enabled: [telnet.socket]`` matches when telnet is
    enabled; ``disabled: [auditd]`` matches when auditd is not enabled (absent counts as
    disabled); ``running: [...]`` matches on services enabled at boot, since a disk read
    offline shows what will run, not what runs now.

    Example:
        - name: telnet-enabled
          resource: vm
          severity: high
          filters: [{type: service, enabled: [telnet.socket, inetd]}]
        - name: auditd-off
          resource: vm
          severity: medium
          filters: [{type: service, disabled: [auditd]}]
    """

    Params = ServiceParams

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        enabled = enabled_units(guest, ctx)
        if enabled is None:
            return Verdict.unknown(NO_SERVICES)
        params = self.params
        evidence: dict[str, Any] = {}
        if running := [s for s in params.running if unit(s) in enabled]:
            evidence["running"] = sorted(set(running))
            evidence["basis"] = "enabled at boot (read offline)"
        if hits := [s for s in params.enabled if unit(s) in enabled]:
            evidence["enabled"] = sorted(set(hits))
        if hits := [s for s in params.disabled if unit(s) not in enabled]:
            evidence["disabled"] = sorted(set(hits))
        return Verdict.match(**evidence) if evidence else NO_MATCH


# time_sync key → the unit names that provide it
TIME_SYNC = {
    "chrony": ("chrony", "chronyd"),
    "ntp": ("ntp", "ntpd", "ntpsec", "openntpd"),
    "timesyncd": ("systemd-timesyncd",),
}
TIME_SYNC_UNITS = frozenset(u for units in TIME_SYNC.values() for u in units)


@filters.register("no-time-sync")
class NoTimeSync(GuestFilter):
    """None of chrony, ntp (ntpd, ntpsec, openntpd) or systemd-timesyncd is enabled.

    Either the inspection's ``time_sync`` facts or its enabled services saying one is on
    clears the guest; neither read → unknown.

    Example:
        - name: clock-drift
          resource: vm
          severity: low
          filters: [no-time-sync]
    """

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        facts, enabled = guest.time_sync, enabled_units(guest, ctx)
        if facts is not None and any(facts.get(k) is True for k in TIME_SYNC):
            return NO_MATCH
        if enabled is not None and not enabled.isdisjoint(TIME_SYNC_UNITS):
            return NO_MATCH
        if facts is None and enabled is None:
            return Verdict.unknown("neither time-sync configuration nor services could be read")
        return Verdict.match(time_sync="none of chrony, ntp, systemd-timesyncd enabled")


SSH_SERVERS = frozenset({"openssh-server", "openssh-server-pam"})
KEY_ONLY = frozenset({"prohibit-password", "without-password", "forced-commands-only"})
DEFAULT_ROOT_LOGIN = "prohibit-password"  # OpenSSH's default since 7.0


class SshRootLoginParams(StrictModel):
    allow_key: bool = True  # key-only root login (prohibit-password) is acceptable


@filters.register("ssh-root-login")
class SshRootLogin(GuestFilter):
    """sshd lets root log in: ``PermitRootLogin yes``, or with ``allow_key: false`` also
    the key-only forms (``prohibit-password``, ``without-password``,
    ``forced-commands-only``). An absent directive is OpenSSH's default,
    ``prohibit-password``. No ``openssh-server`` package → no-match; sshd settings not read
    → unknown; a value sshd would not accept → unknown. ``Match`` blocks are not judged.

    Example:
        - name: root-over-ssh
          resource: vm
          severity: high
          filters: [{type: ssh-root-login, allow_key: false}]
    """

    Params = SshRootLoginParams

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        installed = ctx.guest(guest).packages()
        if installed is not None and not any(name in installed for name in SSH_SERVERS):
            return NO_MATCH
        if guest.sshd is None:
            return Verdict.unknown("sshd settings could not be read")
        raw = guest.sshd.get("permitrootlogin")
        value = (raw or DEFAULT_ROOT_LOGIN).strip().lower()
        evidence = {"permit_root_login": value, "default": raw is None}
        if value == "yes":
            return Verdict.match(**evidence)
        if value in KEY_ONLY:
            return NO_MATCH if self.params.allow_key else Verdict.match(**evidence)
        if value == "no":
            return NO_MATCH
        return Verdict.unknown(f"unrecognised PermitRootLogin {value!r}")
