"""Property-based run against the served OpenAPI schema, with a valid admin token: whatever
schemathesis generates (valid and invalid input, bounded per operation, stateless), no 5xx.

The operations are driven one by one through schemathesis' strategies rather than its pytest
plugin, so one store (filled by a real sweep) serves the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from vmwarden.api import create_app
from vmwarden.api.tokens import mint
from vmwarden.store.users import UsersRepo

ADMIN = "sch-admin-7f3"  # a name hypothesis will not stumble on (disable/rotate by name)
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 15}


@pytest.fixture
def admin_app(settings) -> Iterator[tuple[object, str]]:
    app = create_app(settings)
    state = app.state.vmwarden
    token, tid, token_hash = mint()
    UsersRepo(state.store).add_user(ADMIN, "admin", tid, token_hash, actor="setup")
    try:
        yield app, token
    finally:
        for job in state.jobs.recent():
            state.jobs.wait(job.id, 120)
        state.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_no_server_errors(admin_app, mode):
    app, token = admin_app
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=headers)
    errors: list[str] = []
    calls: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 26

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            calls.append(response.status_code)
            if response.status_code >= 500:
                errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]} (query={case.query}, body={case.body!r})"
                )

        try:
            run()
        except Unsatisfiable:  # nothing invalid to send (e.g. no parameters at all)
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert errors == []
    assert len(calls) > 10 * len(operations)
    if mode is GenerationMode.POSITIVE:
        assert sum(200 <= c < 300 for c in calls) > len(calls) // 3
