"""Policy evaluation: synthetic VM records with guest facts x 20 rules, on one core.

Every VM carries what an inspection gives (packages, users with password fingerprints, SSH
host keys, machine-id, services, time sync, sshd settings), so the guest-fact rules and the
cross-VM rules (duplicate-mac, shared-password-hash, duplicate-ssh-host-key,
duplicate-machine-id, mixed-classification-on-host) do real work: clones share a root hash,
host keys and a machine-id in groups of 50, one MAC in 1,000 is duplicated.
Only ``evaluate()`` is timed; building the estate is not.
"""

from __future__ import annotations

from typing import Any

from bench.common import repeat

RULES = [
    "not-approved-template",
    "unregistered",
    "outside-zone",
    "mixed-classification-on-host",
    "duplicate-mac",
    "{type: dormant, days: 30}",
    "shared-password-hash",
    "duplicate-ssh-host-key",
    "duplicate-machine-id",
    "{type: stale-patches, baseline: {openssl: '3.0.11-1~deb12u2', libssl3: '3.0.11-1~deb12u2'}}",
    "{type: package, installed: [telnetd, netcat-traditional]}",
    "{type: package, missing: [chrony]}",
    "{type: service, enabled: [telnet.socket, inetd]}",
    "expired-account",
    "no-time-sync",
    "ssh-root-login",
    "{type: value, key: memory_kib, op: gt, value: 1000000}",
    "{type: value, key: meta.owner, op: eq, value: null}",
    "{type: value, key: name, op: regex, value: '^web'}",
    "{or: [unregistered, {type: value, key: vcpus, op: ge, value: 8}]}",
]

CODE = """
from datetime import UTC, datetime, timedelta
from vmwarden.model import VM, Disk, Estate, Layer, Nic, State, VmMeta
from vmwarden.model.guest import GuestFacts, HostKey, Package, User
from vmwarden.policy import evaluate, parse_policy

N = {n}
RULES = {rules!r}
text = (
    "version: 1\\ntemplates: [{{name: b, digest: 'sha256:" + "a" * 64 + "'}}]\\n"
    "zones: {{internal: {{networks: [prod], classifications: [internal]}}, "
    "pci: {{networks: [pci], classifications: [pci]}}}}\\nrules:\\n"
    + "".join(f"  - {{{{name: r{{i}}, resource: vm, severity: low, filters: [{{f}}]}}}}\\n"
              for i, f in enumerate(RULES))
)
policy = parse_policy(text)
assert len(policy.rules) == 20
now = datetime.now(UTC)

def packages(variant):
    base = [Package(f"pkg{{j}}", f"1.{{j}}-{{variant}}") for j in range(80)]
    ssl = "3.0.11-1~deb12u2" if variant % 3 else "3.0.9-1"
    base += [Package("openssl", ssl), Package("libssl3", ssl), Package("openssh-server", "1:9.2p1-2")]
    if variant % 2:
        base.append(Package("chrony", "4.3-2"))
    if variant == 7:
        base.append(Package("telnetd", "0.17-44"))
    return base

PACKAGES = [packages(v) for v in range(20)]
SYSTEM = [User(f"sys{{j}}", uid=j, password="locked") for j in range(1, 17)]

def guest(i):
    group = i // 50  # clones of one template share secrets
    root = User("root", uid=0, password="hash", password_fingerprint=f"fp-{{group if i % 7 == 0 else i}}")
    admin = User("admin", uid=1000, password="hash", password_fingerprint=f"fpa-{{i}}",
                 expires="2020-01-01" if i % 97 == 0 else None)
    keys = [HostKey(t, f"SHA256:{{t}}-{{group if i % 11 == 0 else i}}") for t in ("ssh-ed25519", "ssh-rsa", "ecdsa")]
    v = i % 20
    return GuestFacts(
        image=f"/img/{{i}}.qcow2", os_family="linux", os_name="debian", os_version="12",
        hostname=f"h{{i}}", machine_id=f"mid-{{group if i % 13 == 0 else i}}",
        packages=PACKAGES[v], users=[root, admin, *SYSTEM],
        services_enabled=["ssh.service", "cron.service"] + (["chrony.service"] if v % 2 else []),
        sshd={{"permitrootlogin": "yes" if i % 17 == 0 else "prohibit-password"}},
        ssh_host_keys=keys,
        time_sync={{"installed": ["chrony"] if v % 2 else [], "enabled": ["chrony"] if v % 2 else [],
                   "servers": {{}}, "chrony": bool(v % 2), "ntp": False, "timesyncd": False}},
    )

vms = []
for i in range(N):
    st = State.SHUTOFF if i % 5 == 0 else State.RUNNING
    mac = "52:54:00:00:00:01" if i % 1000 == 0 else f"52:54:00:{{(i >> 16) & 255:02x}}:{{(i >> 8) & 255:02x}}:{{i & 255:02x}}"
    root_digest = "sha256:" + ("a" if i % 7 else "b") * 64
    vms.append(VM(
        id=f"id-{{i}}", name=("web" if i % 3 else "db") + str(i), host=f"h{{i % 50}}", uri="test:///x",
        state=st, vcpus=1 + i % 12, memory_kib=512000 * (1 + i % 4),
        disks=[Disk("vda", chain=[Layer(f"/img/{{i}}.qcow2"),
                                  Layer("/img/base.qcow2", digest=root_digest, mtime=now - timedelta(days=i % 90))])],
        nics=[Nic(mac=mac, type="network", network="prod" if i % 4 else "pci")],
        meta=VmMeta(owner=None if i % 9 == 0 else "o", classification="pci" if i % 6 == 0 else "internal",
                    registered=i % 8 != 0),
        guest=guest(i),
    ))
estate = Estate(vms=vms, images=[], catalog=policy.catalog(), now=now, hosts=[f"h{{i}}" for i in range(50)])

def run():
    findings = evaluate(policy, estate)
    return {{"findings": len(findings), "rules": len(policy.rules), "vms": N}}
"""


def run(n: int, repeats: int) -> list[dict[str, Any]]:
    s = repeat(
        f"evaluate {n:,} VMs with guest facts x 20 rules", CODE.format(n=n, rules=RULES), repeats
    )
    d = s.to_dict()
    d["evals_per_second"] = n * 20 / d["median"]
    d["us_per_vm"] = d["median"] / n * 1e6
    rows = [d]
    if n >= 20_000:  # cross-VM rules must not be quadratic: a tenth of the estate, same rules
        small = repeat(
            f"evaluate {n // 10:,} VMs (linearity check)",
            CODE.format(n=n // 10, rules=RULES),
            repeats,
        )
        e = small.to_dict()
        e["evals_per_second"] = n // 10 * 20 / e["median"]
        e["us_per_vm"] = e["median"] / (n // 10) * 1e6
        rows.append(e)
    return rows
