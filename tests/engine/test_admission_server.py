"""The admission socket: real Unix sockets, real clients (threads and processes), no mocks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from vmwarden.engine.admission import PING, AdmissionError, AdmissionServer, Decision

ALLOW = Decision("allow", "ok")


def echo_decide(xml: str) -> Decision:
    """Denies XML naming 'rogue', allows the rest: enough to see requests arrive whole."""
    return Decision("deny", "rogue!") if "rogue" in xml else Decision("allow", f"{len(xml)}")


def talk(path: Path, payload: bytes, *, shut: bool = True, timeout: float = 10) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "admission.sock"


@pytest.fixture
def server(sock_path: Path):
    srv = AdmissionServer(sock_path, echo_decide, read_timeout=1.0).start_in_thread()
    yield srv
    srv.stop()


def test_answers_and_socket_is_private(server: AdmissionServer, sock_path: Path):
    mode = os.stat(sock_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(sock_path.parent).st_mode) == 0o700  # created by the server
    assert talk(sock_path, b"<domain><name>web</name></domain>")["decision"] == "allow"
    answer = talk(sock_path, b"<domain><name>rogue</name></domain>")
    assert answer == {**Decision("deny", "rogue!").to_dict()}
    assert server.counts["allow"] == 1
    assert server.counts["deny"] == 1


def test_request_arrives_whole(server: AdmissionServer, sock_path: Path):
    body = b"<domain>" + b"x" * 1_000_000 + b"</domain>"
    assert talk(sock_path, body)["reason"] == str(len(body))


def test_ping_is_not_judged(server: AdmissionServer, sock_path: Path):
    assert talk(sock_path, PING)["reason"] == "pong"
    assert server.counts["allow"] == server.counts["deny"] == 0


def test_garbage_is_refused_and_the_server_carries_on(sock_path: Path):
    from vmwarden.engine.admission_decider import Decider
    from vmwarden.policy import parse_policy

    policy = parse_policy("version: 1\ngate: {deny: [not-approved-template]}\n")
    srv = AdmissionServer(sock_path, Decider(None, policy)).start_in_thread()
    try:
        for junk in (b"\x00\xff\xfe garbage", b"not xml", b"<a><b></a>", b"<notdomain/>", b""):
            answer = talk(sock_path, junk)
            assert answer["decision"] == "deny", junk
            assert answer["reason"].startswith("vmwarden"), answer
        assert srv.counts["errors"] == 0
        assert talk(sock_path, PING)["reason"] == "pong"
    finally:
        srv.stop()


def test_oversized_request_is_refused(sock_path: Path):
    srv = AdmissionServer(sock_path, echo_decide, max_request=1024).start_in_thread()
    try:
        answer = talk(sock_path, b"<domain>" + b"y" * 5000 + b"</domain>")
        assert answer["decision"] == "deny"
        assert "larger than" in answer["reason"]
        assert srv.counts["bad_request"] == 1
        assert talk(sock_path, b"<domain/>")["decision"] == "allow"
    finally:
        srv.stop()


def test_slow_client_times_out_without_holding_up_others(server: AdmissionServer, sock_path):
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.settimeout(10)
    slow.connect(str(sock_path))
    slow.sendall(b"<domain>")  # ...and never finishes
    try:
        # another client is served while the slow one is still connected
        assert talk(sock_path, b"<domain/>")["decision"] == "allow"
        data = b""
        while chunk := slow.recv(4096):
            data += chunk
        answer = json.loads(data)
        assert answer["decision"] == "deny"
        assert "not received within" in answer["reason"]
    finally:
        slow.close()
    assert server.counts["bad_request"] == 1


def test_client_that_vanishes_does_not_hurt(server: AdmissionServer, sock_path: Path):
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock_path))
        s.sendall(b"<dom")
        s.close()
    assert talk(sock_path, b"<domain/>")["decision"] == "allow"


def test_failing_decide_is_a_refusal_not_a_crash(sock_path: Path):
    def broken(xml: str) -> Decision:
        raise RuntimeError("store on fire")

    srv = AdmissionServer(sock_path, broken).start_in_thread()
    try:
        answer = talk(sock_path, b"<domain/>")
        assert answer["decision"] == "deny"
        assert "store on fire" in answer["reason"]
        assert srv.counts["errors"] == 1
    finally:
        srv.stop()


def test_slow_decide_answers_within_the_deadline(sock_path: Path):
    release = threading.Event()

    def stuck(xml: str) -> Decision:
        release.wait(30)
        return ALLOW

    srv = AdmissionServer(sock_path, stuck, decide_timeout=0.2).start_in_thread()
    try:
        answer = talk(sock_path, b"<domain/>")
        assert answer["decision"] == "deny"
        assert "could not decide within 0.2s" in answer["reason"]
    finally:
        release.set()
        srv.stop()


def test_non_root_peer_is_refused():
    """Even with the socket opened up to everyone, SO_PEERCRED keeps non-root clients out."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or python is None:
        pytest.skip("needs root (to run a client as nobody) and a system python3")
    with tempfile.TemporaryDirectory(prefix="vmwarden-adm-") as d:
        os.chmod(d, 0o755)  # pytest's tmp_path is private to root: nobody could not even try
        path = Path(d) / "admission.sock"
        server = AdmissionServer(path, echo_decide).start_in_thread()
        try:
            os.chmod(path, 0o666)
            client = (  # connects (it may), sends, and prints what came back
                "import socket,sys\n"
                "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                "try:\n"
                " s.sendall(b'<x/>'); s.shutdown(socket.SHUT_WR); print(repr(s.recv(100)))\n"
                "except (BrokenPipeError, ConnectionResetError): print(repr(b''))\n"
            )
            proc = subprocess.run(
                [python, "-I", "-c", client, str(path)],
                capture_output=True,
                text=True,
                user="nobody",
                timeout=30,
                check=False,
            )
        finally:
            server.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "b''"  # connected, then closed without an answer
    assert server.counts["refused_peer"] == 1
    assert server.counts["allow"] == 0


def test_stale_socket_is_replaced_live_one_and_files_are_not(sock_path: Path, tmp_path: Path):
    sock_path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens
    srv = AdmissionServer(sock_path, echo_decide).start_in_thread()
    try:
        assert talk(sock_path, b"<domain/>")["decision"] == "allow"
        with pytest.raises(AdmissionError, match="already serves"):
            AdmissionServer(sock_path, echo_decide).start_in_thread()
        assert talk(sock_path, b"<domain/>")["decision"] == "allow"  # the live one is intact
    finally:
        srv.stop()
    assert not sock_path.exists()
    regular = tmp_path / "not-a-socket"
    regular.write_text("precious")
    with pytest.raises(AdmissionError, match="not a socket"):
        AdmissionServer(regular, echo_decide).start_in_thread()
    assert regular.read_text() == "precious"


def test_asyncio_use(sock_path: Path):
    """The daemon's way: inside its own event loop."""
    import asyncio

    async def main() -> dict:
        async with AdmissionServer(sock_path, echo_decide):
            return await asyncio.to_thread(talk, sock_path, b"<domain/>")

    assert asyncio.run(main())["decision"] == "allow"
    assert not sock_path.exists()


def test_every_answer_is_due_well_within_the_hooks_wait():
    """#11.1: reading the request and deciding are each bounded, and together take at most
    half of what the hook waits: the hook hears vmwarden's answer, never 'unreachable'."""
    from vmwarden.connectors.libvirt import hook_qemu as qemu
    from vmwarden.engine import admission

    assert admission.READ_TIMEOUT + admission.DECIDE_TIMEOUT <= qemu.TIMEOUT / 2


def test_a_decision_stuck_in_every_worker_still_gets_answers_in_time(sock_path: Path):
    """The service's own pool is busy with stuck decisions: new requests still get their
    refusal within the deadline instead of waiting for a free worker forever."""
    release = threading.Event()

    def stuck(xml: str) -> Decision:
        release.wait(30)
        return ALLOW

    srv = AdmissionServer(sock_path, stuck, decide_timeout=0.3, workers=1).start_in_thread()
    try:
        answers = [talk(sock_path, b"<domain/>", timeout=5) for _ in range(3)]
        assert [a["decision"] for a in answers] == ["deny"] * 3
        assert all("could not decide within 0.3s" in a["reason"] for a in answers)
    finally:
        release.set()
        srv.stop()
