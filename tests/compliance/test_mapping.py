"""Framework mapping files: every shipped one loads, cites its controls, and ships in the wheel;
a mapping that names a filter nobody registered is refused with file and control named."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from vmwarden.compliance import MappingError, available_frameworks, load_framework, parse_framework
from vmwarden.policy.filters import filters

ROOT = Path(__file__).resolve().parents[2]

# What the issue (#15.4) asks each framework to cite.
REQUIRED = {
    "cis-controls-v8": {"1.1", "1.2", "1.3", "1.5", "2.1", "2.2", "2.3", "4.1", "7.5"},
    "pci-dss-4.0": {"2.2", "6.3.3", "11.3.1", "12.5.1"},
    "nist-800-53": {"CM-2", "CM-7", "CM-8", "RA-5", "SI-2"},
    "disa-vmm-srg": {"V-207474"},
}


def test_every_shipped_framework_loads_and_cites_its_controls():
    assert available_frameworks() == sorted(REQUIRED)
    for name, ids in REQUIRED.items():
        fw = load_framework(name)
        assert fw.name == name
        assert ids <= {c.id for c in fw.controls}, name
        for c in fw.controls:
            assert c.title.strip() and (c.filters or c.process), (name, c.id)
            assert all(f in filters for f in c.filters), (name, c.id)


def test_mappings_are_by_filter_type_as_the_issue_groups_them():
    cis = {c.id: c for c in load_framework("cis-controls-v8").controls}
    assert {"ssh-root-login", "no-time-sync"} <= set(cis["4.1"].filters)
    assert set(cis["1.2"].filters) == {"unregistered", "not-approved-template"}
    assert "vulnerable" in cis["7.5"].filters and cis["7.5"].process == "scan"
    assert cis["1.1"].process == "scan" and not cis["1.1"].filters
    pci = {c.id: c for c in load_framework("pci-dss-4.0").controls}
    assert {"vulnerable", "stale-patches"} <= set(pci["6.3.3"].filters)
    (disa,) = load_framework("disa-vmm-srg").controls
    assert disa.process == "gate-dormant"


SECURE_CONFIGURATION = {
    "cis-controls-v8": "4.1",
    "pci-dss-4.0": "2.2",
    "nist-800-53": "CM-6",
}


def test_secure_configuration_controls_count_every_registered_hardening_filter():
    """A tripwire for #15's benchmark filter: once ``benchmark`` (or another hardening filter)
    is registered, the secure-configuration controls must list it, or a failing baseline
    would never fail them. Today's set is asserted exactly."""
    hardening = {"ssh-root-login", "no-time-sync", "world-readable", "unencrypted", "benchmark"}
    expected = {f for f in hardening if f in filters}
    assert {"ssh-root-login", "no-time-sync"} <= expected
    for name, cid in SECURE_CONFIGURATION.items():
        control = next(c for c in load_framework(name).controls if c.id == cid)
        assert set(control.filters) == expected, (
            f"{name} {cid}: add the newly registered filter(s) "
            f"{sorted(expected - set(control.filters))} to frameworks/{name}.yaml"
        )


def test_the_wheel_ships_every_mapping_file():
    """pyproject's package-data must match each file (an installed wheel has no src/)."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["vmwarden"]
    package = ROOT / "src" / "vmwarden"
    files = sorted((package / "compliance" / "frameworks").glob("*.yaml"))
    assert len(files) == len(REQUIRED)
    for f in files:
        rel = f.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel


def _mapping(controls: str) -> str:
    return f"framework: t\ntitle: T\ncontrols:\n{controls}"


def test_unknown_filter_names_file_and_control():
    with pytest.raises(MappingError) as exc:
        parse_framework(
            _mapping(
                '  - {id: "1.1", title: A, filters: [unregistered]}\n'
                '  - {id: "2.3", title: B, filters: [package, telnet-installed]}\n'
            ),
            "/etc/vmwarden/mine.yaml",
        )
    assert "/etc/vmwarden/mine.yaml: control 2.3: unknown filter 'telnet-installed'" in str(
        exc.value
    )
    assert "control 1.1" not in str(exc.value)
    assert "package" in (exc.value.hint or "")  # the valid names are listed


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: 1.10, title: A, process: scan}", "quoted text"),
        ('{id: "1", title: A}', "control 1: needs `filters`, `process` or both"),
        ('{id: "1", title: A, filters: [or]}', "unknown filter 'or' (map the filters inside it)"),
        ('{id: "1", title: A, process: audit}', "unknown process 'audit'"),
        ('{id: "1", title: A, process: scan, max_age_days: 0}', "at least 1"),
        ('{id: "1", title: A, filters: [dormant], max_age_days: 3}', "`process: scan` only"),
        ('{id: "1", title: A, process: scan, checks: [x]}', "unknown key 'checks'"),
        ('{id: "1", process: scan}', "`title` must cite"),
    ],
)
def test_malformed_controls_are_refused(entry: str, message: str):
    with pytest.raises(MappingError) as exc:
        parse_framework(_mapping(f"  - {entry}\n"), "m.yaml")
    assert message in str(exc.value)


def test_duplicate_ids_and_bad_yaml_are_refused(tmp_path: Path):
    with pytest.raises(MappingError, match="control 1: listed twice"):
        parse_framework(_mapping('  - {id: "1", title: A, process: scan}\n' * 2), "m.yaml")
    with pytest.raises(MappingError, match=r"m\.yaml: not valid YAML"):
        parse_framework("controls: [", "m.yaml")
    with pytest.raises(MappingError, match=r"unknown framework 'cis-controls-v7'") as exc:
        load_framework("cis-controls-v7")
    assert "cis-controls-v8" in (exc.value.hint or "")
    text = tmp_path / "notes.yaml"
    text.write_text("just some text\n")
    with pytest.raises(MappingError, match=r"notes\.yaml: a mapping must be a YAML mapping"):
        load_framework(str(text))  # a path is read as a mapping, and refused as one
    with pytest.raises(MappingError, match=r"cannot read mapping"):
        load_framework(str(tmp_path / "absent.yaml"))
