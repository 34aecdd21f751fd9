"""``vmwarden watch`` with the admission hook: is a rejected VM's exposure zero, and what does
the hook add to an admitted VM's start-up?

The daemon serves the hook on its own socket (``--admission-socket``); ``vmwarden hook install
--only 'vmw-bench-*'`` puts the hook in ``/etc/libvirt/hooks/qemu`` and reloads libvirtd
(SIGHUP), so other VMs on this shared libvirtd start without asking. It is removed in
``finally`` (a removed hook is simply not run). Not measured when a hook file is already
there: it belongs to someone's running tests, and replacing it would break them.

- rejected: a VM whose disk is not from an approved template (``gate.deny``) is started
  ``trials`` times; each ``create()`` must be refused, the VM must never be active, no STARTED
  event may arrive for it (the bench's own subscription), and its NIC never leaves ``prod``
  for a running domain because there never is one: exposure zero, checked rather than assumed;
- admitted: a VM from the approved template is started and destroyed ``trials`` times with
  the hook and then without it; the rows give ``create()``'s time both ways.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MAIN_HOOK = Path("/etc/libvirt/hooks/qemu")
POLICY = """\
version: 1
templates: [{{name: approved-base, digest: "{digest}"}}]
quarantine: {{network: quarantine, link_down: true}}
gate: {{deny: [not-approved-template], unreachable: deny}}
rules: []
"""


def _vmwarden(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "vmwarden")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True, timeout=120)


def _refused(dom: Any) -> bool:
    import libvirt

    try:
        dom.create()
    except libvirt.libvirtError as exc:
        return "refused" in str(exc) or "Hook script" in str(exc)
    dom.destroy()
    return False


def _timed_starts(dom: Any, trials: int) -> list[float]:
    out = []
    for _ in range(trials):
        t0 = time.monotonic()
        dom.create()
        out.append(time.monotonic() - t0)
        dom.destroy()
    return out


def measure(
    ctx: dict[str, Any], trials: int, latency_row: Any, daemon_cm: Any
) -> list[dict[str, Any]]:
    """Rows for the hook; ``ctx``: conn, virt, work dir, tmp dir, define(name, disk), events,
    approved and rogue base images, URI, PREFIX (``bench.watch`` passes its own)."""
    if MAIN_HOOK.exists():
        return [{"name": "exposure with the admission hook", "note": "not measured: "
                 f"{MAIN_HOOK} exists (someone's tests are using the hook)"}]  # fmt: skip
    tmp, prefix = ctx["tmp"], ctx["prefix"]
    sock = tmp / "admission.sock"
    policy = tmp / "hook-policy.yaml"
    policy.write_text(POLICY.format(digest=ctx["digest"]))
    args = ["-c", ctx["uri"], "-p", str(policy), "--db", f"sqlite:///{tmp / 'hook.db'}"]
    args += ["--only", f"{prefix}*", "--admission-socket", str(sock)]
    # the base images' directory is no pool: allowed only when named (as an admin would)
    args += ["--images", str(Path(ctx["approved"]).parent)]
    rogue = ctx["define"](f"{prefix}hook-rogue", ctx["clone"]("hook-rogue", ctx["rogue"]))
    good = ctx["define"](f"{prefix}hook-good", ctx["clone"]("hook-good", ctx["approved"]))
    with daemon_cm(args, tmp / "hook-watch.log", ready_timeout=120):
        try:
            _vmwarden("hook", "install", "--socket", str(sock), "--only", f"{prefix}*",
                      "--unreachable", "deny", "--log", str(tmp / "hook.log"),
                      "--reload-libvirtd")  # fmt: skip
            deadline = time.monotonic() + 30  # libvirtd rescans hooks just after SIGHUP
            while not _refused(rogue):
                if time.monotonic() > deadline:
                    raise TimeoutError("libvirtd did not run the hook within 30 s")
                time.sleep(0.1)
            refused = 1 + sum(_refused(rogue) for _ in range(trials - 1))
            never_ran = not rogue.isActive() and ctx["events"].started.get(rogue.name()) is None
            with_hook = _timed_starts(good, trials)
        finally:
            with contextlib.suppress(Exception):
                _vmwarden("hook", "uninstall")
        without = _timed_starts(good, trials)
    added = (sorted(with_hook)[len(with_hook) // 2] - sorted(without)[len(without) // 2]) * 1000
    return [
        {
            "name": f"exposure with the admission hook ({trials} rejected starts)",
            "n": trials,
            "note": f"{refused}/{trials} refused at prepare; never active, no STARTED event: "
            f"{never_ran}; exposure zero: {refused == trials and never_ran}",
        },
        latency_row(f"admitted create() with the hook ({trials} starts)", with_hook, "KVM/TCG"),
        latency_row(
            f"admitted create() without the hook ({trials} starts)",
            without,
            f"p50 difference: {added:+.0f} ms",
        ),
    ]
