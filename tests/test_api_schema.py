"""schemathesis against the app's own ``/openapi.json``, with the operator token: whatever it
generates, fitting the schema or not, no route answers with a server error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.factories import comparison, load, subscribe
from worker.models import utcnow
from worker.runtime import Runtime
from worker.web import create_app

EXAMPLES_PER_MODE = 5
"""Per operation and mode: 24 operations x 2 modes x 5 cases take about 30 s a stack."""


def test_no_generated_input_makes_any_route_fail(rt: Runtime) -> None:
    load(rt, comparison("schema-duel", "Writing", utcnow() - timedelta(hours=1)))
    subscribe(rt, ("ada@example.com", "Ada", ("Writing",)))
    app = create_app(rt.settings, rt)
    token = {"Authorization": f"Bearer {rt.settings.operator_token}"}
    server_errors: list[str] = []
    answered: set[int] = set()
    with TestClient(app):  # runs the lifespan: the app's runtime is ``rt``
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert any(op.path == "/api/subscribers/{email}" for op in operations)
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES_PER_MODE,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                def check(case: Any) -> None:
                    response = case.call(headers=token)
                    answered.add(response.status_code)
                    if response.status_code >= 500:
                        server_errors.append(
                            f"{case.method} {case.formatted_path} {case.query} {case.body!r}"
                            f" -> {response.status_code}: {response.text[:200]}"
                        )

                try:
                    check()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing there to get wrong
    assert server_errors == []
    assert {200, 404, 422} <= answered  # the token was taken, and bad input was made
