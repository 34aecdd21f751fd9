"""Policy evaluation: 100k synthetic VM records with guest facts x 20 rules, one core."""

from __future__ import annotations

from typing import Any

from bench.common import repeat

CODE = """
import gc
from datetime import datetime, timedelta, UTC
from vmwarden.model import VM, Disk, Layer, Nic, VmMeta, State, Estate
from vmwarden.policy import parse_policy, evaluate
N = {n}
now = datetime.now(UTC)
rules = []
for i in range(20):
    kind = i % 10
    f = ["not-approved-template", "unregistered", "outside-zone", "mixed-classification-on-host",
         "duplicate-mac", "{{type: dormant, days: 30}}",
         "{{type: value, key: memory_kib, op: gt, value: 1000000}}",
         "{{type: value, key: meta.owner, op: eq, value: null}}",
         "{{type: value, key: name, op: regex, value: '^web'}}",
         "{{or: [unregistered, {{type: value, key: vcpus, op: ge, value: 8}}]}}"][kind]
    rules.append(f"  - {{{{name: r{{i}}, resource: vm, severity: low, filters: [{{f}}]}}}}")
text = ("version: 1\\ntemplates: [{{name: b, digest: 'sha256:" + "a"*64 + "'}}]\\n"
        "zones: {{internal: {{networks: [prod], classifications: [internal]}}, pci: {{networks: [pci], classifications: [pci]}}}}\\n"
        "rules:\\n" + "\\n".join(rules) + "\\n")
policy = parse_policy(text)
vms = []
for i in range(N):
    st = State.SHUTOFF if i % 5 == 0 else State.RUNNING
    vms.append(VM(id=f"id-{{i}}", name=("web" if i % 3 else "db") + str(i), host=f"h{{i % 50}}", uri="test:///x",
        state=st, vcpus=1 + i % 12, memory_kib=512000 * (1 + i % 4),
        disks=[Disk("vda", chain=[Layer(f"/img/{{i}}.qcow2", digest=None), Layer("/img/base.qcow2", digest="sha256:" + ("a" if i % 7 else "b") * 64, mtime=now - timedelta(days=i % 90))])],
        nics=[Nic(mac=f"52:54:00:{{(i >> 16) & 255:02x}}:{{(i >> 8) & 255:02x}}:{{i & 255:02x}}" if i % 1000 else "52:54:00:00:00:01", type="network", network="prod" if i % 4 else "pci")],
        meta=VmMeta(owner=None if i % 9 == 0 else "o", classification="pci" if i % 6 == 0 else "internal", registered=i % 8 != 0)))
estate = Estate(vms=vms, images=[], catalog=policy.catalog(), now=now, hosts=[f"h{{i}}" for i in range(50)])
def run():
    findings = evaluate(policy, estate)
    return {{"findings": len(findings), "rules": len(policy.rules), "vms": N}}
"""


def run(n: int, repeats: int) -> list[dict[str, Any]]:
    s = repeat(f"evaluate {n} VMs x 20 rules", CODE.format(n=n), repeats)
    d = s.to_dict()
    d["evals_per_second"] = n * 20 / d["median"]
    return [d]
