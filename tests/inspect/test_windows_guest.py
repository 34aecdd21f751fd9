"""A Windows guest (GPT + NTFS + registry hives, built with mkntfs and ntfs-3g) gives its
version, computer name, accounts and programs, in process and through the sandboxed worker
``vmwarden inspect`` uses; a corrupt SOFTWARE hive leaves those facts unknown with the
reason, never the whole image uninspectable."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dissect.target.filesystem import VirtualFilesystem

from tests.inspect.conftest import KEY
from tests.inspect.regf import Tree, hive_bytes
from tests.inspect.windows import (
    HOSTNAME,
    MACHINE_GUID,
    PRODUCT,
    PROFILES,
    PROGRAMS,
    VERSION,
    WindowsImages,
)
from vmwarden.inspect.facts import inspect_image, inspect_image_json
from vmwarden.inspect.guest.files import GuestFiles
from vmwarden.inspect.guest.windows import Registry, read_windows_version
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.model import GuestFacts, Image
from vmwarden.policy import load_policy
from vmwarden.policy.verdict import Verdict

#: Facts only Linux readers fill: on Windows they stay unknown, and say nothing in errors.
LINUX_ONLY = ("kernels", "services_enabled", "sshd", "ssh_host_keys", "time_sync", "network")


@pytest.fixture(scope="module")
def facts(windows_images: WindowsImages) -> GuestFacts:
    dirs = [windows_images.root]
    return inspect_image(windows_images.disk, allowed_dirs=dirs, fingerprint_key=KEY)


def test_os_version_and_computer_name(facts: GuestFacts) -> None:
    assert facts.errors == []
    assert (facts.os_family, facts.os_name) == ("windows", "windows")
    assert (facts.os_version, facts.os_pretty) == (VERSION, PRODUCT)
    assert facts.hostname == HOSTNAME
    assert facts.machine_id == MACHINE_GUID
    assert facts.filesystems == ["ntfs"]
    assert facts.encrypted is False
    for name in LINUX_ONLY:
        assert getattr(facts, name) is None, name


def test_accounts_from_the_profile_list(facts: GuestFacts) -> None:
    users = {u.name: u for u in facts.users or []}
    assert sorted(users) == sorted(name for name, _, _ in PROFILES)
    assert users["alice"].home == r"C:\Users\alice"
    # %SystemRoot% in ProfileImagePath (REG_EXPAND_SZ) is expanded as on a default install
    assert users["SYSTEM"].home == r"C:\Windows\system32\config\systemprofile"
    assert {u.password for u in users.values()} == {"unknown"}  # SAM is not read


def test_programs_are_packages(facts: GuestFacts) -> None:
    """What "Programs and Features" shows: a system component and a nameless entry are not."""
    found = [(p.name, p.version, p.arch) for p in facts.packages or []]
    assert found == PROGRAMS
    assert {p.manager for p in facts.packages or []} == {"windows"}
    assert "Microsoft Edge Update Helper" not in {name for name, _, _ in found}


def judge_image(facts: GuestFacts, tmp_path: Path, filters: str) -> Verdict:
    """One image rule with ``filters`` (YAML flow list) judged on the inspected guest."""
    from tests.policy.conftest import BASE_POLICY, judge

    path = tmp_path / "policy.yaml"
    path.write_text(BASE_POLICY + f"rules:\n  - name: r\n    resource: image\n"
                    f"    severity: high\n    filters: {filters}\n")  # fmt: skip
    image = Image(path=facts.image, host="h1", guest=facts)
    return judge(load_policy(path), [], [image])[facts.image]


def test_the_package_filter_sees_windows_programs(facts: GuestFacts, tmp_path: Path) -> None:
    """What a policy matches Windows programs by: their name as Programs and Features shows."""
    rule = (
        '[{type: package, installed: ["PuTTY release 0.76 (64-bit)", telnetd],'
        ' missing: ["7-Zip 23.01 (x64)", "CrowdStrike Windows Sensor"]}]'
    )
    assert judge_image(facts, tmp_path, rule) == Verdict.match(
        packages=["PuTTY release 0.76 (64-bit)"], missing=["CrowdStrike Windows Sensor"]
    )


def test_stale_patches_compares_windows_versions(facts: GuestFacts, tmp_path: Path) -> None:
    """DisplayVersions compare by their dotted numbers: 8.6.2 is behind 8.6.9, 0.76.0.0 is 0.76."""
    rule = (
        '[{type: stale-patches, baseline: {"Notepad++ (32-bit x86)": "8.6.9",'
        ' "PuTTY release 0.76 (64-bit)": "0.76"}}]'
    )
    stale = {"name": "Notepad++ (32-bit x86)", "installed": "8.6.2", "baseline": "8.6.9"}
    assert judge_image(facts, tmp_path, rule) == Verdict.match(packages=[stale])


def test_the_sandboxed_worker_reads_the_same(
    windows_images: WindowsImages, facts: GuestFacts
) -> None:
    out = inspect_image_json(windows_images.disk, fingerprint_key=KEY)
    assert out["format"] == "qcow2"
    assert out.get("guest_error") is None
    assert _comparable(out["guest"]) == _comparable(facts.to_dict())


@pytest.fixture(scope="module")
def pool(windows_images: WindowsImages) -> Iterator[InspectorPool]:
    with InspectorPool(workers=1, allowed_dirs=[windows_images.root], fingerprint_key=KEY) as p:
        yield p


@pytest.mark.parametrize("damage", ["random", "regf-header"])
def test_a_corrupt_software_hive_leaves_its_facts_unknown(
    windows_images: WindowsImages, pool: InspectorPool, damage: str
) -> None:
    guest = pool.inspect(windows_images.broken[damage]).to_dict()  # InspectError: a failure
    assert guest["os_family"] == "windows"
    assert guest["hostname"] == HOSTNAME  # SYSTEM is intact
    for name in ("os_version", "os_pretty", "machine_id", "users", "packages"):
        assert guest[name] is None, name
    reasons = {error.split(":", 1)[0]: error for error in guest["errors"]}
    assert sorted(reasons) == ["machine_id", "os", "packages", "users"]
    assert all("SOFTWARE hive" in error for error in reasons.values()), reasons


@pytest.mark.parametrize(
    ("current", "version", "pretty"),
    [
        (  # Windows 11 still says "Windows 10" in ProductName; its build tells
            {"ProductName": "Windows 10 Pro", "CurrentMajorVersionNumber": 10,
             "CurrentMinorVersionNumber": 0, "CurrentBuildNumber": "22631", "UBR": 3007},
            "10.0.22631.3007", "Windows 11 Pro",
        ),
        (  # before Windows 10: CurrentVersion is the NT version, and no UBR
            {"ProductName": "Windows Server 2012 R2 Standard", "CurrentVersion": "6.3",
             "CurrentBuildNumber": "9600"},
            "6.3.9600", "Windows Server 2012 R2 Standard",
        ),
        ({"ProductName": 7}, None, None),  # a DWORD where a string belongs: unknown
    ],
)  # fmt: skip
def test_version_across_windows_releases(
    current: dict[str, Any], version: str | None, pretty: str | None
) -> None:
    tree: Tree = {"Microsoft": {"Windows NT": {"CurrentVersion": current}}}
    release = read_windows_version(Registry(_guest_files({"SOFTWARE": tree})))
    assert (release.family, release.version, release.pretty) == ("windows", version, pretty)


def _guest_files(hives: dict[str, Tree]) -> GuestFiles:
    """A guest whose config directory holds ``hives``, on dissect's virtual filesystem."""
    vfs = VirtualFilesystem()
    for name, tree in hives.items():
        data = hive_bytes(tree, name=name)
        vfs.map_file_fh(f"/sysvol/Windows/System32/config/{name}", io.BytesIO(data))
    return GuestFiles(vfs)


def _comparable(guest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in guest.items() if k not in ("image", "inspected_at", "seconds")}


def test_images_are_real_ntfs_on_gpt(windows_images: WindowsImages) -> None:
    """The fixture is what it claims: a qcow2 whose GPT partition is NTFS holding the hives."""
    from dissect.target import Target

    target = Target.open(Path(windows_images.disk))
    assert [type(fs).__name__ for fs in target.filesystems] == ["NtfsFilesystem"]
    hive = target.fs.path("sysvol/windows/system32/config/SOFTWARE").read_bytes()
    assert hive[:4] == b"regf"
