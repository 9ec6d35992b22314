"""Fuzzing from the project's own OpenAPI schema (schemathesis): lock, confirm,
unlock and the reads never answer 5xx, and every error has the spec's shape.

The schema is what /api/schema serves (fetched through the WSGI application in
this process). Each operation gets schema-valid and schema-violating inputs
(wrong types, missing fields, odd ids and query strings), authenticated with
a token; some ids hit real seats. Bounded by MAX_EXAMPLES per operation, so the
module takes well under a minute.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation import GenerationMode

MAX_EXAMPLES = 60

OPERATIONS = [
    ("POST", "/api/lock"),
    ("POST", "/api/confirm"),
    ("POST", "/api/unlock"),
    ("GET", "/api/seats"),
    ("GET", "/api/events"),
    ("GET", "/api/events/{id}"),
    ("GET", "/api/events/{id}/seats"),
    ("GET", "/api/me/seats"),
    ("GET", "/api/health"),
]


@pytest.fixture
def fuzz_token(make_user, make_event):
    """A user with a token, and seats with small ids so that fuzzed ids sometimes hit real seats."""
    make_event(rows=("A", "B"), seats_per_row=10)
    return make_user("fuzzer").auth_token.key


def assert_error_shape(response) -> None:
    body = response.json()
    assert isinstance(body, dict), body
    assert {"code", "detail"} <= set(body) <= {"code", "detail", "seats"}, body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if "seats" in body:
        assert isinstance(body["seats"], list) and all(isinstance(s, int) for s in body["seats"]), body


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_error_and_errors_have_the_spec_shape(method, path, in_process_app, fuzz_token):
    from django.core.cache import cache

    schema = schemathesis.openapi.from_wsgi("/api/schema", in_process_app)
    operation = schema[path][method]
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE
    )
    seen = []

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        cache.clear()  # throttle counters: the fuzzer is one user sending many requests
        response = case.call(headers={"Authorization": f"Token {fuzz_token}"})
        seen.append(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.body!r}: {response.text}"
        if response.status_code >= 400:
            assert_error_shape(response)

    fuzz()
    print(method, path, sorted(Counter(seen).items()))
    assert seen, "the fuzzer sent nothing"
