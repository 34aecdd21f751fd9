"""``watch --listen``: /metrics and /state need a token from every client (#11.4), request
bodies are capped before authentication on a real uvicorn server (#11.1), and a busy port is
one line and exit 2 (#10.8)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmwarden.api.tokens import mint
from vmwarden.cli.watch_http import HttpThread, watch_app
from vmwarden.engine.metrics import listen_socket
from vmwarden.engine.watch import WatchConfig, Watcher
from vmwarden.policy import load_policy
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

POLICY = "version: 1\nrules: []\n"
URIS = ["test:///default"]


@pytest.fixture
def served(tmp_path: Path):
    """(watcher, store, token, policy path) over a real SQLite store with one auditor."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        token, tid, token_hash = mint()
        UsersRepo(store).add_user("artur", "auditor", tid, token_hash, actor="ci")
        watcher = Watcher(WatchConfig(uris=URIS), load_policy(policy), store)
        try:
            yield watcher, store, token, policy
        finally:
            watcher.executor.shutdown(wait=False)


@pytest.mark.parametrize("trust_proxy", [False, True])
def test_metrics_and_state_need_a_token_even_from_loopback(served, trust_proxy: bool):
    watcher, store, token, policy = served
    app = watch_app(watcher, store, db=None, policy=policy, uris=URIS, trust_proxy=trust_proxy)
    signed = {"Authorization": f"Bearer {token}"}
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        for path in ("/metrics", "/state"):
            assert local.get(path).status_code == 401
            assert local.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
            assert local.get(path, headers=signed).status_code == 200
            # a plain proxy_pass (no X-Forwarded-For) or one that sets it: same answer
            forwarded = {"X-Forwarded-For": "127.0.0.1"}
            assert local.get(path, headers=forwarded).status_code == 401
            assert local.get(path, headers={**forwarded, **signed}).status_code == 200
    with TestClient(app, client=("192.0.2.4", 40000)) as remote:
        assert remote.get("/metrics").status_code == 401
        assert remote.get("/metrics", headers=signed).status_code == 200


@pytest.fixture
def http_server(served):
    """The app on a real uvicorn in its own thread, as ``watch --listen`` runs it."""
    watcher, store, _token, policy = served
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    servers: list[HttpThread] = []

    def start(max_body: int = 1024 * 1024) -> int:
        app = watch_app(watcher, store, db=None, policy=policy, uris=URIS, max_body=max_body)
        servers.append(HttpThread(app, sock, on_exit=lambda: None).start())
        deadline = time.monotonic() + 10
        while not servers[-1].server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return port

    yield start
    for s in servers:
        s.stop()


def post(port: int, body_size: int, *, declared: int | None = None, chunked: bool = False):
    """POST /api/exceptions anonymously; returns (status, seconds, bytes the server took)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = "POST /api/exceptions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    else:
        head += f"Content-Length: {declared if declared is not None else body_size}\r\n"
    t0 = time.monotonic()
    conn.sendall((head + "\r\n").encode())
    sent = 0
    chunk = b"[" + b"1," * 32767 + b"1"  # 64 KiB of JSON-ish bytes
    try:
        while sent < body_size:
            piece = chunk[: body_size - sent]
            if chunked:
                conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            else:
                conn.sendall(piece)
            sent += len(piece)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed while we were still sending: fine
    response = http.client.HTTPResponse(conn)
    response.begin()
    took = time.monotonic() - t0
    status = response.status
    conn.close()
    return status, took, sent


def test_a_huge_declared_body_is_refused_413_before_authentication(http_server):
    port = http_server()
    status, took, _ = post(port, 64 * 1024, declared=300 * 1024 * 1024)
    assert status == 413  # not 401: nothing behind the cap ever saw the request
    assert took < 2


def test_a_streamed_body_is_cut_at_the_cap(http_server):
    port = http_server()
    status, _, sent = post(port, 64 * 1024 * 1024, chunked=True)
    assert status == 413
    assert sent < 64 * 1024 * 1024  # refused long before the client was done


def test_bodies_under_the_cap_reach_authentication(http_server):
    port = http_server(max_body=8 * 1024)
    past_the_cap = {401, 422}  # FastAPI parses (422: not JSON) or authenticates (401)
    assert post(port, 4 * 1024)[0] in past_the_cap
    assert post(port, 4 * 1024, chunked=True)[0] in past_the_cap
    assert post(port, 9 * 1024)[0] == 413
    assert post(port, 9 * 1024, chunked=True)[0] == 413


def vmwarden(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("option", ["--listen", "--metrics-listen"])
def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path, option: str):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = vmwarden(
            "watch", "-c", "test:///default", "-p", str(policy), "--no-enforce",
            "--db", f"sqlite:///{tmp_path / 'w.db'}", option, f"127.0.0.1:{port}",
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use "
                      "(another vmwarden, or another service, on that port?)"]  # fmt: skip


@pytest.mark.parametrize("size", ["lots", "0", "2GiB"])
def test_max_body_must_be_a_sane_size(tmp_path: Path, size: str):
    done = vmwarden("watch", "-c", "test:///default", "-p", "x.yaml", "--max-body", size)
    assert done.returncode == 2
    assert "--max-body" in done.stderr
    assert "Traceback" not in done.stderr


def test_sighup_reloads_the_policy_and_keeps_the_old_one_when_bad(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmwarden.cli.main", "watch", "-c", "test:///default",
             "-p", str(policy), "--no-enforce", "--db", f"sqlite:///{tmp_path / 'w.db'}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def wait_for(text: str) -> None:
            deadline = time.monotonic() + 60
            while text not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

        wait_for("Ctrl-C stops")
        time.sleep(1.0)  # the loop installs its signal handlers as it starts
        policy.write_text("version: 1\nrules: [{name: broken}]\n")
        os.kill(proc.pid, signal.SIGHUP)
        wait_for("policy not reloaded, the old one stays")
        assert proc.poll() is None  # still watching, on the old policy
        policy.write_text(POLICY)
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(f"policy reloaded from {policy}")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "Traceback" not in log.read_text()


def test_an_admission_socket_path_that_is_a_file_is_one_line_and_exit_2(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    (tmp_path / "file").write_text("not a socket")
    done = vmwarden(
        "watch", "-c", "test:///default", "-p", str(policy), "--no-enforce",
        "--db", f"sqlite:///{tmp_path / 'w.db'}", "--admission-socket", str(tmp_path / "file"),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: {tmp_path / 'file'} exists and is not a socket" in done.stderr
    assert (tmp_path / "file").read_text() == "not a socket"  # never replaced


def test_metrics_listen_needs_a_token_from_loopback_too(served, tmp_path: Path):
    """``--metrics-listen`` (the bare /metrics + /state server) checks tokens against the
    store like the API: none or a wrong one is 401, an auditor's is served."""
    _watcher, _store, token, policy = served  # the store (and its auditor) at tmp_path/w.db
    port = listen_socket("127.0.0.1", 0)
    number = port.getsockname()[1]
    port.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmwarden.cli.main", "watch", "-c", "test:///default",
         "-p", str(policy), "--no-enforce", "--db", f"sqlite:///{tmp_path / 'w.db'}",
         "--metrics-listen", f"127.0.0.1:{number}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def get(path: str, token: str | None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", number, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
            return conn.getresponse().status
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                get("/metrics", None)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        for path in ("/metrics", "/state"):
            assert get(path, None) == 401
            assert get(path, "vmw_nope") == 401
            assert get(path, token) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
