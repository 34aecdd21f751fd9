"""Power, snapshot and metadata (tags) of an EC2 instance, behind the connector contract.

EC2 has no pause: ``pause`` stops the instance, hibernating it when the instance was
launched with hibernation configured (its memory survives, as a pause's does); moto records
no hibernation, so tests prove only the stop. ``shutdown`` and ``destroy`` stop it too —
``destroy`` forcibly — and never terminate: terminating deletes the instance and, by
default, its root volume, which is evidence, and no policy action may lose evidence.

``snapshot`` snapshots every EBS volume of the instance (one ``create_snapshot`` each,
tagged with the name vmwarden gave it and the instance) and returns the snapshot ids.
Metadata is tags: ``vmwarden:owner``, ``vmwarden:classification``, ``vmwarden:template``,
``vmwarden:registered`` (``yes``/``no``) and ``vmwarden:tag:KEY`` for the ``tag`` action's
own tags. EC2 accepts any character in a tag, so values go as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmwarden.connectors.aws.inventory import TAG_PREFIX
from vmwarden.errors import DomainGoneError
from vmwarden.model.vm import VmMeta

TAG_KEYS = TAG_PREFIX + "tag:"  # the tag action's own tags: vmwarden:tag:KEY
_FIELDS = ("owner", "classification", "template")


def meta_tags(meta: VmMeta) -> dict[str, str]:
    """The EC2 tags that hold ``meta`` (absent fields have no tag)."""
    tags = {TAG_PREFIX + f: str(getattr(meta, f)) for f in _FIELDS if getattr(meta, f)}
    if meta.registered is not None:
        tags[TAG_PREFIX + "registered"] = "yes" if meta.registered else "no"
    tags.update({TAG_KEYS + k: v for k, v in meta.tags.items()})
    return tags


class AwsActions:
    """Mixin of ``AwsConnector``: power, snapshots and tags through ``_ec2`` and ``_call``."""

    _ec2: Any

    def _call(self, fn: Callable[[], Any]) -> Any:  # the connector's: botocore errors mapped
        raise NotImplementedError

    def _instance(self, vm_id: str) -> dict[str, Any]:
        found = self._call(
            lambda: self._ec2.describe_instances(
                Filters=[{"Name": "instance-id", "Values": [vm_id]}]
            )
        )
        for reservation in found.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                if (inst.get("State") or {}).get("Name") != "terminated":
                    return dict(inst)
        raise DomainGoneError(f"no EC2 instance {vm_id!r}")

    def pause(self, vm_id: str) -> None:
        """Stop, hibernating when the instance is configured for it (EC2 has no pause)."""
        inst = self._instance(vm_id)
        hibernate = bool((inst.get("HibernationOptions") or {}).get("Configured"))
        self._call(
            lambda: self._ec2.stop_instances(
                InstanceIds=[vm_id], **({"Hibernate": True} if hibernate else {})
            )
        )

    def resume(self, vm_id: str) -> None:
        self._instance(vm_id)
        self._call(lambda: self._ec2.start_instances(InstanceIds=[vm_id]))

    def shutdown(self, vm_id: str) -> None:
        self._instance(vm_id)
        self._call(lambda: self._ec2.stop_instances(InstanceIds=[vm_id]))

    def destroy(self, vm_id: str) -> None:
        """Force-stop (never terminate: see the module docstring)."""
        self._instance(vm_id)
        self._call(lambda: self._ec2.stop_instances(InstanceIds=[vm_id], Force=True))

    def snapshot(self, vm_id: str, name: str, description: str) -> str:
        """One EBS snapshot per volume of the instance; their ids, comma-separated."""
        inst = self._instance(vm_id)
        ids = []
        for mapping in inst.get("BlockDeviceMappings") or []:
            volume = (mapping.get("Ebs") or {}).get("VolumeId")
            if not volume:
                continue
            tags = {
                "Name": name,
                TAG_PREFIX + "snapshot": name,
                TAG_PREFIX + "instance": vm_id,
                TAG_PREFIX + "device": str(mapping.get("DeviceName") or ""),
            }
            snap = self._call(
                lambda v=volume, t=tags: self._ec2.create_snapshot(
                    VolumeId=v,
                    Description=description[:255],
                    TagSpecifications=[
                        {
                            "ResourceType": "snapshot",
                            "Tags": [{"Key": k, "Value": x} for k, x in t.items()],
                        }
                    ],
                )
            )
            ids.append(str(snap["SnapshotId"]))
        return ",".join(ids)

    def set_metadata(self, vm_id: str, meta: VmMeta) -> None:
        """Write ``meta`` as tags: set what it holds, delete vmwarden's tags it does not."""
        inst = self._instance(vm_id)
        want = meta_tags(meta)
        have = {str(t["Key"]): str(t.get("Value", "")) for t in inst.get("Tags") or ()}
        ours = {k for k in have if k.startswith(TAG_PREFIX) and _is_meta(k)}
        stale = sorted(ours - set(want))
        changed = {k: v for k, v in want.items() if have.get(k) != v}
        if changed:
            self._call(
                lambda: self._ec2.create_tags(
                    Resources=[vm_id],
                    Tags=[{"Key": k, "Value": v} for k, v in sorted(changed.items())],
                )
            )
        if stale:
            self._call(
                lambda: self._ec2.delete_tags(Resources=[vm_id], Tags=[{"Key": k} for k in stale])
            )


def _is_meta(key: str) -> bool:
    """Whether a ``vmwarden:`` tag is one ``set_metadata`` owns (not ``vmwarden:scan``…)."""
    rest = key[len(TAG_PREFIX) :]
    return rest in (*_FIELDS, "registered") or key.startswith(TAG_KEYS)
