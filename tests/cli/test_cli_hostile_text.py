"""Text from guests, domain definitions and file names never drives the operator's terminal,
spreadsheet or syslog (#11.3).

A real sweep (``vmwarden scan --enforce`` in a subprocess) over a test-driver host whose VMs
are named like Rich markup and spreadsheet formulas, whose disk (a real ext4 guest) has an
os-release ``PRETTY_NAME`` with Rich markup that does not parse (``x[/]``), a screen clear
and an OSC 8 link, and whose storage directory holds an image file named with a newline and
an escape sequence. The notify action goes to real syslog UDP receivers (RFC 5424 and CEF).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.inspect.conftest import build_tree_image, qemu_img
from vmwarden.cli.main import ShownFormatter
from vmwarden.engine.fleetgen import FleetDisk, FleetNic, FleetVM, write_fleet

CLEAR = "\x1b[2J"
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
PRETTY = f"Debian x[/] {CLEAR}{OSC8} [link=https://evil.example]pwn[/link]"
LINK_NAME = "[link=https:evil.example]web01"
FORMULAS = ("=1+1+cmd|' \\C calc'!A0", "@SUM(1+1)", '+HYPERLINK("http:evil.example","x")')
EVIL_FILE = f"evil\n<13>1 forged{CLEAR}.qcow2"
# What vmwarden itself writes to a terminal: colours (m), and the progress bar's erase line
# (K), cursor up (A) and hide/show cursor (?25l/h). Never a clear (J) or an OSC (ESC ]).
OWN = re.compile(r"\x1b\[[0-9;?]*[mKAlh]")


def _policy(path: Path, rfc_port: int, cef_port: int) -> Path:
    path.write_text(
        f"""\
version: 1
notify:
  - {{type: syslog, address: "127.0.0.1:{rfc_port}", format: rfc5424}}
  - {{type: syslog, address: "127.0.0.1:{cef_port}", format: cef}}
rules:
  - name: os-named
    resource: vm
    severity: high
    filters: [{{type: value, key: guest.os_pretty, op: contains, value: Debian}}]
  - {{name: unregistered, resource: vm, severity: low, filters: [unregistered]}}
  - name: forgotten-image
    resource: image
    severity: medium
    filters: [orphaned]
    actions: [notify]
"""
    )
    return path


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[socket.socket, socket.socket]]:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rfc,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cef,
    ):
        for s in (rfc, cef):
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.5)
        yield rfc, cef


@pytest.fixture(scope="module")
def hostile(
    tmp_path_factory: pytest.TempPathFactory, receivers: tuple[socket.socket, socket.socket]
) -> list[str]:
    """``-c URI -p POLICY --images DIR`` of the hostile estate."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text(f'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="{PRETTY}"\n')
    disks = tmp_path / "disks"
    disks.mkdir()
    disk = build_tree_image(disks, tree, "guest.qcow2")
    store = tmp_path / "images"
    store.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", store / EVIL_FILE, "16M")
    vms = [
        FleetVM(
            uuid=f"11a3c000-0000-4000-8000-00000000000{i}",
            name=name,
            disks=[FleetDisk(str(disk))] if i == 0 else [],
            nics=[FleetNic(f"52:54:00:11:03:0{i}", "prod")],
        )
        for i, name in enumerate((LINK_NAME, *FORMULAS))
    ]
    host = write_fleet(tmp_path / "hv1.xml", vms, networks=["prod", "quarantine"])
    rfc, cef = receivers
    policy = _policy(tmp_path / "policy.yaml", rfc.getsockname()[1], cef.getsockname()[1])
    return ["-c", f"test://{host}", "-p", str(policy), "--images", str(store)]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, hostile: list[str]) -> Cli:
    """A store the hostile estate was scanned into (``--format json``: the one output that
    never went through Rich), for the report commands."""
    tmp = tmp_path_factory.mktemp("stored")
    cli = Cli(f"sqlite:///{tmp / 'vmwarden.db'}", tmp)
    ran = cli("scan", *hostile, "--format", "json")
    assert ran.code == 0, ran.err
    return cli


def _datagrams(s: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(s.recvfrom(65536)[0])
        except TimeoutError:
            return got


def _assert_inert(text: str) -> None:
    """Nothing a terminal would act on beyond colours: no clear, no OSC 8 link, no C1."""
    bare = OWN.sub("", text)
    assert "\x1b" not in bare, repr(bare[max(0, bare.find("\x1b") - 40) :][:120])
    assert "\x9b" not in bare and "\x9d" not in bare


def test_scan_enforce_with_hostile_names_prints_its_report_inertly(
    cli: Cli, hostile: list[str], receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich writes styles and links as to a terminal
    ran = cli("scan", *hostile, "--enforce")
    assert ran.code == 0, ran.err
    assert "Traceback" not in ran.err and "MarkupError" not in ran.err
    _assert_inert(ran.out + ran.err)
    plain = OWN.sub("", ran.out)
    # shown as written: the markup, the formula and the escape sequences as visible text
    assert LINK_NAME in plain
    assert "x[/]" in plain and "\\x1b[2J" in plain and "\\x1b]8;;https://evil.example/" in plain
    assert FORMULAS[0] in plain
    assert "evil\\n<13>1 forged\\x1b[2J.qcow2" in plain
    assert "done" in plain  # the report after the actions

    # one syslog record per alert, each one line; the file name's newline forges nothing
    shown = {"rfc5424": r"evil\n<13>1 forged\x1b[2J.qcow2", "cef": r"evil\n<13>1 forged\\x1b[2J"}
    for s, fmt in zip(receivers, ("rfc5424", "cef"), strict=True):
        (record,) = _datagrams(s)  # one orphaned image, one notify: exactly one record
        line = record.decode()
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
        assert line.startswith("<") and shown[fmt] in line, line


def test_scan_without_a_terminal_writes_no_escape_byte(cli: Cli, hostile: list[str]) -> None:
    ran = cli("scan", *hostile)
    assert ran.code == 0, ran.err
    assert "\x1b" not in ran.out + ran.err
    assert LINK_NAME in ran.out and "\\x1b[2J" in ran.out


def test_report_tables_show_markup_names_as_text_not_links(
    stored: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    for what in ("vms", "findings", "images"):
        ran = stored("report", what)
        assert ran.code == 0, ran.err
        _assert_inert(ran.out + ran.err)
        assert "\x1b]8" not in ran.out
    assert LINK_NAME in OWN.sub("", stored("report", "vms").out)


def test_report_csv_cells_never_start_a_formula(stored: Cli) -> None:
    for what in ("vms", "findings"):
        ran = stored("report", what, "--format", "csv")
        assert ran.code == 0, ran.err
        assert "\x1b" not in ran.out
        rows = list(csv.reader(io.StringIO(ran.out)))
        cells = [c for row in rows for c in row]
        live = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
        assert live == [], live
        for formula in FORMULAS:
            assert "'" + formula in cells  # kept whole, as text
    html = stored("report", "findings", "--format", "html")
    assert html.code == 0 and "\x1b" not in html.out
    assert "x[/]" in html.out and "<link" not in html.out


def test_an_error_naming_a_markup_vm_is_printed_as_text(cli: Cli, tmp_path: Path) -> None:
    host = write_fleet(tmp_path / "hv1.xml", [], networks=["prod", "quarantine"])
    ran = cli("release", "x[/]" + CLEAR, "--reason", "r", "-c", f"test://{host}")
    assert ran.code != 0
    assert "Traceback" not in ran.err and "MarkupError" not in ran.err
    assert "\x1b" not in ran.err and "x[/]\\x1b[2J" in ran.err


def test_quarantine_and_release_print_a_markup_name_as_text(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm = FleetVM(
        uuid="11a3c000-0000-4000-8000-0000000000aa",
        name=LINK_NAME,
        state="shutoff",
        nics=[FleetNic("52:54:00:11:03:aa", "prod")],
    )
    uri = f"test://{write_fleet(tmp_path / 'hv1.xml', [vm], networks=['prod', 'quarantine'])}"
    monkeypatch.setenv("FORCE_COLOR", "1")
    for args in (
        ("quarantine", LINK_NAME, "-c", uri, "--network", "quarantine"),
        ("release", LINK_NAME, "-c", uri, "--reason", "rebuilt"),
    ):
        ran = cli(*args)
        assert "Traceback" not in ran.err, ran.err
        _assert_inert(ran.out + ran.err)
        assert f"{args[0]} {LINK_NAME}: " in OWN.sub("", ran.out), ran.out + ran.err


def test_log_lines_show_controls_and_keep_tracebacks_whole() -> None:
    """The CLI's log handler (watch logs VM and image names for hours)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ShownFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("vmwarden.test.hostile")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("cannot read %s", "evil\nWARNING forged" + CLEAR)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "WARNING cannot read evil\\nWARNING forged\\x1b[2J"
    assert lines[1] == "ERROR failed" and lines[2].startswith("Traceback")


def test_an_emoji_code_in_a_path_stays_text(cli: Cli, tmp_path: Path) -> None:
    """Rich turned ':skull:' in an unreachable host's error into an emoji: the error named a
    file that does not exist."""
    good = write_fleet(tmp_path / "hv1.xml", [], networks=["prod"])
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules: []\n")
    bad = f"test://{tmp_path}/:skull:.xml"
    ran = cli("scan", "-c", f"test://{good}", "-c", bad, "-p", policy)
    assert ran.code == 2, ran.err
    (line,) = ran.error_lines()
    assert f"{tmp_path}/:skull:.xml" in line and "\U0001f480" not in line


def test_template_approve_and_list_print_names_as_text(cli: Cli, tmp_path: Path) -> None:
    """``--name 'x[/]'`` raised MarkupError after the approval was stored; a template file
    named with an escape sequence reached the terminal through ``template list``."""
    image = tmp_path / f"tmpl{CLEAR}.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", image, "1M")
    ran = cli("template", "approve", image, "--name", "x[/]" + CLEAR)
    assert ran.code == 0 and "Traceback" not in ran.err, ran.err
    assert "\x1b" not in ran.out + ran.err
    assert "approved x[/]\\x1b[2J sha256:" in ran.out
    assert '- name: "x[/]\\u001b[2J"' in ran.out  # YAML-quoted: pastes into a policy
    listed = cli("template", "list")
    assert listed.code == 0 and "\x1b" not in listed.out
    assert listed.out.startswith("x[/]\\x1b[2J\tsha256:") and "tmpl\\x1b[2J.qcow2" in listed.out
