"""Clone hygiene across VMs: every VM involved matches, and the index is built once."""

from __future__ import annotations

from tests.policy.conftest import facts, judge, make_estate, make_vm
from vmwarden.model import HostKey, User
from vmwarden.policy import NO_MATCH, Verdict, evaluate
from vmwarden.policy.filters.clones import SharedPasswordHash


def hashed(name: str, fingerprint: str) -> User:
    return User(name, password="hash", password_fingerprint=fingerprint)


def test_shared_password_hash_flags_every_vm_involved(policy_with):
    got = judge(
        policy_with("[shared-password-hash]"),
        [
            make_vm("a", host="h1", guest=facts(users=[hashed("root", "f1"), hashed("u", "f9")])),
            make_vm("b", host="h2", guest=facts(users=[hashed("admin", "f1")])),
            make_vm("c", host="h2", guest=facts(users=[hashed("root", "f2")])),
            make_vm(
                "locked",
                guest=facts(
                    users=[
                        User("root", password="locked", password_fingerprint="f2"),
                        User("x", password="empty"),
                    ]
                ),
            ),
            make_vm("two-users-one-vm", guest=facts(users=[hashed("p", "f3"), hashed("q", "f3")])),
            make_vm("unread", guest=facts(users=None)),
            make_vm("uninspected", guest=None),
        ],
    )
    evidence = {"vms": ["h1/a", "h2/b"]}
    assert got["a"] == Verdict.match(users=["root"], **evidence)
    assert got["b"] == Verdict.match(users=["admin"], **evidence)
    assert got["c"] is NO_MATCH  # its twin is locked, which is not a hash
    assert got["locked"] is NO_MATCH
    assert got["two-users-one-vm"] is NO_MATCH  # the same VM twice is not a clone
    assert got["unread"] == Verdict.unknown("users could not be read")
    assert got["uninspected"] == Verdict.unknown("not inspected")


def test_shared_password_hash_index_is_built_once(policy_with, monkeypatch):
    calls = 0
    real = SharedPasswordHash.values

    def counting(guest):
        nonlocal calls
        calls += 1
        return real(guest)

    monkeypatch.setattr(SharedPasswordHash, "values", staticmethod(counting))
    text = "[shared-password-hash]"
    policy = policy_with(text)
    two_rules = type(policy)(
        version=1, source="x", rules=(policy.rules[0], policy.rules[0]), templates=()
    )
    vms = [make_vm(f"vm{i}", guest=facts(users=[hashed("root", f"f{i % 50}")])) for i in range(500)]
    findings = evaluate(two_rules, make_estate(vms))
    assert len(findings) == 2 * 500  # 50 hashes, each on 10 VMs
    assert calls == 500  # one pass to build; each VM's answer is then looked up, not recomputed


def test_duplicate_ssh_host_key_flags_every_vm_involved(policy_with):
    def keys(*fps: str) -> list[HostKey]:
        return [HostKey("ssh-ed25519", fp) for fp in fps]

    got = judge(
        policy_with("[duplicate-ssh-host-key]"),
        [
            make_vm("a", host="h1", guest=facts(ssh_host_keys=keys("SHA256:x", "SHA256:y"))),
            make_vm("b", host="h1", guest=facts(ssh_host_keys=keys("SHA256:x"))),
            make_vm("c", host="h3", guest=facts(ssh_host_keys=keys("SHA256:y", "SHA256:z"))),
            make_vm("unique", guest=facts(ssh_host_keys=keys("SHA256:u"))),
            make_vm("none", guest=facts(ssh_host_keys=[])),
            make_vm("unread", guest=facts()),
        ],
    )
    assert got["a"] == Verdict.match(
        fingerprints=["SHA256:x", "SHA256:y"], vms=["h1/a", "h1/b", "h3/c"]
    )
    assert got["b"] == Verdict.match(fingerprints=["SHA256:x"], vms=["h1/a", "h1/b"])
    assert got["c"] == Verdict.match(fingerprints=["SHA256:y"], vms=["h1/a", "h3/c"])
    assert got["unique"] is NO_MATCH and got["none"] is NO_MATCH
    assert got["unread"] == Verdict.unknown("SSH host keys could not be read")


def test_duplicate_machine_id_flags_every_vm_involved(policy_with):
    mid = "4c4c4544004d3510804bb4c04f4e4a32"
    got = judge(
        policy_with("[duplicate-machine-id]"),
        [
            make_vm("a", host="h1", guest=facts(machine_id=mid)),
            make_vm("b", host="h2", guest=facts(machine_id=mid.upper() + "\n")),
            make_vm("fresh-1", guest=facts(machine_id="uninitialized")),
            make_vm("fresh-2", guest=facts(machine_id="uninitialized")),
            make_vm("empty-1", guest=facts(machine_id="")),
            make_vm("empty-2", guest=facts(machine_id="")),
            make_vm("unique", guest=facts(machine_id="0" * 32)),
            make_vm("unread", guest=facts()),
            make_vm("uninspected", guest=None),
        ],
    )
    assert got["a"] == got["b"] == Verdict.match(machine_id=mid, vms=["h1/a", "h2/b"])
    for name in ("fresh-1", "fresh-2", "empty-1", "empty-2", "unique"):
        assert got[name] is NO_MATCH, name
    assert got["unread"] == Verdict.unknown("machine-id could not be read")
    assert got["uninspected"] == Verdict.unknown("not inspected")


def test_a_vm_outside_the_estate_is_judged_against_the_estates_clones(policy_with):
    """Admission judges a starting VM that the estate may not hold: its own facts are read."""
    from vmwarden.policy.context import Context

    policy = policy_with("[shared-password-hash]")
    estate_vms = [make_vm(f"e{i}", guest=facts(users=[hashed("root", "same")])) for i in range(2)]
    ctx = Context(make_estate(estate_vms), policy)
    rule = policy.rules[0]
    rule.filter.prepare(ctx)
    newcomer = make_vm("new", guest=facts(users=[hashed("root", "same")]))
    loner = make_vm("loner", guest=facts(users=[hashed("root", "other")]))
    unread = make_vm("unread", guest=facts(users=None))
    assert rule.filter.match(newcomer, ctx) == Verdict.match(
        users=["root"], vms=["host1/e0", "host1/e1"]
    )
    assert rule.filter.match(loner, ctx) is NO_MATCH
    assert rule.filter.match(unread, ctx) == Verdict.unknown("users could not be read")
    assert rule.filter.match(estate_vms[0], ctx).matched


def test_the_same_vm_listed_twice_is_no_clone(policy_with):
    vm = make_vm("once", guest=facts(users=[hashed("root", "solo")]))
    got = judge(policy_with("[shared-password-hash]"), [vm, vm])
    assert got["once"] is NO_MATCH
