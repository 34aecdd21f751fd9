"""``release`` of a VM that is not held names the VM as typed, not its UUID (issue #10.10)."""

from __future__ import annotations

from vmwarden.connectors import open_connector


def test_release_of_a_vm_not_quarantined_names_it(cli, demo):
    uri = f"test://{demo.hosts['hv-east']}"
    vm = "east-build-04"  # never quarantined in this store
    with open_connector(uri) as conn:
        uuid = conn.lookup(vm).id
    ran = cli("release", vm, "-c", uri, "--reason", "rebuilt")
    assert ran.code != 0 and "Traceback" not in ran.err
    assert f"VM {vm} is not quarantined" in ran.err
    assert uuid not in ran.err
    assert cli("report", "audit", "--format", "json").json() == []  # nothing journaled
