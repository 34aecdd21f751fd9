"""``SIGHUP``: the daemon takes a new policy without a restart (``reload_policy``).

Why not restart: a restart drops the libvirt connections and the admission socket (starts
meet ``--unreachable`` meanwhile) and re-reads every host. A reload swaps the policy where
it is used — the reconcile, the gate's judge and hands, the admission decisions, the alert
receivers — and asks for a reconcile, so every VM is judged under the new rules at once.

Everything new is built before anything is swapped: a policy that cannot be applied (no
``quarantine:`` block while enforcing, a receiver that cannot be built) raises, and the
daemon keeps running on the old one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmwarden.engine.watch.judge import Judge
from vmwarden.errors import PolicyError, VmwardenError
from vmwarden.notify.alerts import AlertManager
from vmwarden.policy import Policy

if TYPE_CHECKING:
    from vmwarden.engine.watch.daemon import Watcher


def reload_policy(watcher: Watcher, policy: Policy) -> AlertManager:
    """Apply ``policy`` to ``watcher`` (on its loop's thread); returns the old alert manager,
    for the caller to close off the loop. Raises ``PolicyError`` and changes nothing when the
    policy cannot be applied."""
    config = watcher.config
    if config.enforce and policy.quarantine is None:
        raise PolicyError(
            "the new policy has no `quarantine:` block and watch enforces quarantine",
            hint="add quarantine: {network: NAME}, or run watch with --no-enforce",
        )
    specs = [n.model_dump(exclude_none=True) for n in policy.notify]
    try:
        alerts = AlertManager.from_specs(
            specs,
            rate=config.alert_rate,
            burst=config.alert_burst,
            queue_size=config.alert_queue,
            on_failure=watcher.failed_alerts,
        )
    except VmwardenError as exc:
        raise PolicyError(f"the new policy's notify: cannot be used: {exc}") from None
    judge = Judge(
        policy,
        watcher.store,
        hold_unknown=config.hold_unknown,
        hold_unregistered=config.hold_unregistered,
        inspection=watcher.sweep.inspects,
        facts=watcher.judge.facts,
        image_dirs=watcher.judge.image_dirs,
    )
    spec = policy.quarantine
    # -- swap (nothing below raises) --
    watcher.policy = policy
    watcher.notify_rules = {r.name for r in policy.rules if "notify" in r.action_names}
    watcher.sweep.policy = policy
    watcher.judge = judge
    watcher.gate.judge = judge
    watcher.gate.spec = spec.spec() if spec else None
    watcher.state.set_policy(policy)
    old, watcher.alerts = watcher.alerts, alerts
    watcher.gate.alerts = alerts
    alerts.start()
    return old
