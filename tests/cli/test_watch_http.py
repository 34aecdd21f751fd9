"""``watch --listen``'s /metrics and /state: anonymous for a loopback peer, but a request
forwarded by a proxy (``X-Forwarded-For`` / ``Forwarded``) is a remote client even when the
proxy connects over loopback -- uvicorn no longer rewrites the peer from those headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmwarden.api.tokens import mint
from vmwarden.cli.watch_http import watch_app
from vmwarden.engine.watch import WatchConfig, Watcher
from vmwarden.policy import load_policy
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

POLICY = "version: 1\nrules: []\n"


@pytest.mark.parametrize("trust_proxy", [False, True])
def test_forwarded_requests_to_metrics_need_a_token(tmp_path: Path, trust_proxy: bool):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    uris = ["test:///default"]
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        token, tid, token_hash = mint()
        UsersRepo(store).add_user("artur", "auditor", tid, token_hash, actor="ci")
        watcher = Watcher(WatchConfig(uris=uris), load_policy(policy), store)
        try:
            app = watch_app(
                watcher, store, db=None, policy=policy, uris=uris, trust_proxy=trust_proxy
            )
            with TestClient(app, client=("127.0.0.1", 40000)) as local:
                assert local.get("/metrics").status_code == 200
                for header in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=10.0.0.9"}):
                    assert local.get("/metrics", headers=header).status_code == 401
                    assert local.get("/state", headers=header).status_code == 401
                    signed = {**header, "Authorization": f"Bearer {token}"}
                    assert local.get("/metrics", headers=signed).status_code == 200
            with TestClient(app, client=("192.0.2.4", 40000)) as remote:
                assert remote.get("/metrics").status_code == 401
        finally:
            watcher.executor.shutdown(wait=False)
