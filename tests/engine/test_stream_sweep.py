"""The streaming sweep (``engine/stream.py``) gives the findings ``Sweep`` gives.

A 2,000-VM estate on 20 generated test-driver hosts, with MACs duplicated across hosts and
classifications mixed on every host, swept by ``Sweep`` into one store and by
``StreamingSweep`` into another, on SQLite and (with ``VMWARDEN_TEST_PG_URL``) PostgreSQL:
the open findings are the same, evidence included. A second sweep after the estate changed
(a host's duplicate MAC removed, another VM gone) resolves the same findings in both.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.store.store_builders import fresh_pg_store
from vmwarden.cli.render import render_json, render_table
from vmwarden.engine.estate_files import write_estate
from vmwarden.engine.fleetgen import _mac
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

POLICY = """\
version: 1
templates: [{name: base, digest: "sha256:%s"}]
zones:
  internal: {networks: [prod], classifications: [internal]}
  pci: {networks: [pci], classifications: [pci]}
  public: {networks: [dmz], classifications: [public]}
quarantine: {network: quarantine}
rules:
  - {name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}
  - {name: unregistered, resource: vm, severity: medium, filters: [unregistered]}
  - {name: zone, resource: vm, severity: high, filters: [outside-zone]}
  - {name: mixed, resource: vm, severity: medium, filters: [mixed-classification-on-host]}
  - {name: dupmac, resource: vm, severity: medium, filters: [duplicate-mac]}
  - name: dupmac-running
    resource: vm
    severity: low
    filters: [duplicate-mac, {type: value, key: state, op: eq, value: running}]
  - {name: dormant, resource: vm, severity: low, filters: [{type: dormant, days: 30}]}
  - name: ownerless
    resource: vm
    severity: low
    filters: [{type: value, key: meta.owner, op: eq, value: null}]
  - {name: orphan-images, resource: image, severity: low, filters: [orphaned]}
""" % ("0" * 64)

PG_URL = os.environ.get("VMWARDEN_TEST_PG_URL")


def _open(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (f["rule"], f["resource"], f["id"], f["host"], f["severity"], repr(f["evidence"]))
        for f in rows
    }


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_estate(tmp_path_factory.mktemp("estate"), hosts=20, per_host=100, dup_every=37)


def _sweep(store: Store, uris: list[str]) -> None:
    options = SweepOptions(inspect=InspectionOptions(enabled=False), stream_hosts=10**9)
    result = Sweep(store, parse_policy(POLICY), actor="test", options=options).run(uris)
    assert result.streamed is None and len(result.vms) > 0  # the whole-estate path


def _stream(store: Store, uris: list[str]) -> None:
    """Through ``Sweep``, as ``vmwarden scan`` runs it: at its threshold it streams."""
    options = SweepOptions(inspect=InspectionOptions(enabled=False), stream_hosts=len(uris))
    result = Sweep(store, parse_policy(POLICY), actor="test", options=options).run(uris)
    assert result.streamed is not None and result.vms == []
    assert result.streamed["vms"] == sum(1 for v in store.list_vms())
    assert json.loads(render_json(result))["streamed"] == result.streamed  # --format json
    console = Console(record=True, width=200)
    render_table(result, console)
    assert f"Scanned {result.streamed['vms']} VMs on {len(uris)} host(s) host by host" in (
        console.export_text()
    )


def _change(estate: list[str], tmp_path: Path) -> list[str]:
    """A copy of the estate with host 3's extra (duplicate) NICs and host 5's first VM gone."""
    out = []
    for uri in estate:
        src = Path(uri.removeprefix("test://"))
        dst = tmp_path / "changed" / src.name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(src, dst)
        out.append(f"test://{dst}")
    h3 = Path(out[3].removeprefix("test://"))
    # the NICs write_estate copied from host 2 onto host 3 (VMs n % 37 == 0): removed, so
    # both sides of each duplicate (on hosts 2 and 3) are resolved
    copied = [f'"{_mac(2 * (n - 100))}"' for n in range(300, 400) if n % 37 == 0]
    lines = h3.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not any(m in line and '"prod"' in line for m in copied)]
    assert len(kept) == len(lines) - len(copied)
    h3.write_text("".join(kept))
    h5 = Path(out[5].removeprefix("test://"))
    text = h5.read_text()
    start = text.index("<domain")
    h5.write_text(text[:start] + text[text.index("</domain>", start) + len("</domain>\n") :])
    return out


def _findings_after_two_sweeps(store: Store, run: Any, uris: list[str], changed: list[str]) -> Any:
    run(store, uris)
    first = _open(store.findings("open"))
    run(store, changed)
    return first, _open(store.findings("open")), _open(store.findings("resolved"))


def test_streaming_sweep_gives_the_findings_of_the_whole_estate_sweep_sqlite(
    estate: list[str], tmp_path: Path
) -> None:
    changed = _change(estate, tmp_path)
    with Store.open(f"sqlite:///{tmp_path / 'a.db'}") as a:
        whole = _findings_after_two_sweeps(a, _sweep, estate, changed)
    with Store.open(f"sqlite:///{tmp_path / 'b.db'}") as b:
        streamed = _findings_after_two_sweeps(b, _stream, estate, changed)
    _assert_same(whole, streamed)


@pytest.mark.skipif(not PG_URL, reason="set VMWARDEN_TEST_PG_URL to test PostgreSQL")
def test_streaming_sweep_gives_the_findings_of_the_whole_estate_sweep_postgresql(
    estate: list[str], tmp_path: Path
) -> None:
    changed = _change(estate, tmp_path)
    with fresh_pg_store(PG_URL) as a:
        whole = _findings_after_two_sweeps(a, _sweep, estate, changed)
    with fresh_pg_store(PG_URL) as b:
        streamed = _findings_after_two_sweeps(b, _stream, estate, changed)
    _assert_same(whole, streamed)


def _assert_same(whole: Any, streamed: Any) -> None:
    (w_first, w_open, w_resolved), (s_first, s_open, s_resolved) = whole, streamed
    rules = {f[0] for f in w_first}
    assert {"dupmac", "dupmac-running", "mixed", "ownerless"} <= rules  # work for each kind
    dup = [f for f in w_first if f[0] == "dupmac"]
    assert len({f[3] for f in dup}) > 5  # duplicates span hosts
    assert s_first == w_first
    assert s_open == w_open
    assert s_resolved == w_resolved
    assert any(f[0] == "dupmac" for f in w_resolved)  # the change resolved cross-host ones


def test_a_sweep_asking_for_what_streaming_does_not_do_keeps_the_estate(
    estate: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Above the threshold, --images or --enforce keep the whole-estate path, and the log
    says why; without them the sweep streams, disk inspection (on by default) included."""
    policy = parse_policy(POLICY)
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}") as store:
        inspecting = Sweep(store, policy, actor="t", options=SweepOptions(stream_hosts=1))
        assert inspecting._streams(estate, enforce=False)
        images = SweepOptions(images_dirs=[tmp_path], stream_hosts=1)
        assert not Sweep(store, policy, actor="t", options=images)._streams(estate, enforce=False)
        assert "does not do --images" in caplog.text
        plain = SweepOptions(inspect=InspectionOptions(enabled=False), stream_hosts=1)
        assert not Sweep(store, policy, actor="t", options=plain)._streams(estate, enforce=True)
        assert "--enforce" in caplog.text
        assert Sweep(store, policy, actor="t", options=plain)._streams(estate, enforce=False)
        few = SweepOptions(inspect=InspectionOptions(enabled=False), stream_hosts=len(estate) + 1)
        assert not Sweep(store, policy, actor="t", options=few)._streams(estate, enforce=False)
