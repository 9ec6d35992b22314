"""Every error under /api/ is JSON in the spec's shape {code, detail, seats?}, whatever refuses
the request (a view, DRF, Django's CSRF check, its Host check, its body limit, the URL
resolver) and whatever the method; outside /api/ the pages keep Django's HTML answers."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from .conftest import api_client_for
from .helpers import assert_error

pytestmark = pytest.mark.django_db

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ERROR_KEYS = {"code", "detail", "seats"}


def assert_json_error(response, what: str) -> None:
    """A non-2xx answer: JSON, an object with a code and a detail (HEAD: JSON, no body)."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.content[:300]!r}"
    assert response["Content-Type"].startswith("application/json"), f"{what}: {response['Content-Type']}"
    if what.startswith("HEAD"):
        return
    body = response.json()
    assert isinstance(body, dict) and {"code", "detail"} <= set(body) <= ERROR_KEYS, f"{what}: {body}"
    assert isinstance(body["code"], str) and body["code"], f"{what}: {body}"
    assert isinstance(body["detail"], str) and body["detail"], f"{what}: {body}"


# --- Unknown paths, any method ------------------------------------------------------------


UNKNOWN_API_PATHS = ["/api/lock/", "/api/nope", "/api/", "/api", "/api/events/1/seats/", "/api/me", "/api/a/b/c"]


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_api_path_is_a_json_404_for_every_method(make_user, method, path):
    """A signed-in browser's POST to /api/lock/ was Django's HTML "CSRF verification failed"."""
    session = Client(enforce_csrf_checks=True)
    session.force_login(make_user("alice"))
    for client in (Client(enforce_csrf_checks=True), session):
        response = client.generic(method, path, b"{}", content_type="application/json")
        assert response.status_code in (301, 404), (method, path, response.content[:200])
        if response.status_code == 301:  # /api: CommonMiddleware's slash, to a JSON 404
            assert response["Location"] == "/api/"
            continue
        assert_json_error(response, f"{method} {path}")
        if method != "HEAD":
            assert response.json()["code"] == "not_found"


def test_a_missing_page_outside_the_api_is_html(db):
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "Seat booking" in response.text  # the site's own page (templates/404.html)


# --- What Django refuses before a view runs -------------------------------------------------


def test_a_session_write_without_the_csrf_token_is_a_json_403(make_user, seat_ids):
    session = Client(enforce_csrf_checks=True)
    session.force_login(make_user("alice"))
    response = session.post("/api/lock", {"seatId": seat_ids[0]}, content_type="application/json")
    body = assert_error(response, 403, "forbidden")
    assert "CSRF" in body["detail"]


def test_the_csrf_failure_view_answers_json_under_the_api_and_html_elsewhere():
    from django.middleware.csrf import REASON_NO_CSRF_COOKIE, _get_failure_view

    view = _get_failure_view()
    api = view(RequestFactory().post("/api/lock"), reason=REASON_NO_CSRF_COOKIE)
    assert api.status_code == 403 and api["Content-Type"] == "application/json"
    body = json.loads(api.content)
    assert body["code"] == "forbidden" and REASON_NO_CSRF_COOKIE in body["detail"]
    page = view(RequestFactory().post("/accounts/login/"), reason=REASON_NO_CSRF_COOKIE)
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("idempotency_key", [None, "big-body-1"])
def test_a_body_over_the_upload_limit_is_a_json_413(make_user, seat_ids, idempotency_key):
    client = api_client_for(make_user("alice"))
    body = b'{"seatId": %d, "pad": "%s"}' % (seat_ids[0], b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    response = client.post("/api/lock", body, content_type="application/json", **headers)
    body = assert_error(response, 413, "too_large")
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in body["detail"]


def test_a_form_body_over_the_limit_from_a_browser_session_is_json(make_user, seat_ids):
    """CsrfViewMiddleware reads a form body itself, before any view: Django's handler400 answers."""
    session = Client(enforce_csrf_checks=True)
    session.force_login(make_user("alice"))
    big = b"seatId=1&pad=" + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = session.post("/api/nope", big, content_type="application/x-www-form-urlencoded")
    assert_json_error(response, "POST /api/nope (form, too big)")


@pytest.mark.parametrize("path", ["/api/events", "/api/lock", "/api/nope"])
def test_a_host_header_not_allowed_is_a_json_400_under_the_api(db, path):
    response = Client(raise_request_exception=False).get(path, HTTP_HOST="evil.example")
    assert_error(response, 400, "invalid")


def test_a_host_header_not_allowed_is_an_html_400_on_the_pages(db):
    response = Client(raise_request_exception=False).get("/", HTTP_HOST="evil.example")
    assert response.status_code == 400 and response["Content-Type"].startswith("text/html")


@pytest.mark.urls("tests.urls_crashing")
def test_a_crash_is_a_json_500_under_the_api_and_html_elsewhere(db):
    client = Client(raise_request_exception=False)
    api = client.get("/api/crash")
    assert api.status_code == 500 and api.json() == {"code": "server_error", "detail": "Internal error."}
    page = client.get("/crash")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")


# --- The schema and its page --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/schema", 405),
        ("DELETE", "/api/docs", 405),
        ("GET", "/api/schema?format=bogus", 404),
        ("GET", "/api/docs?format=bogus", 404),
    ],
)
def test_the_schema_and_its_page_answer_errors_in_json(db, method, path, status):
    """They answered in YAML or plain text; OPTIONS on the page was a 500 (no template)."""
    response = Client().generic(method, path)
    assert response.status_code == status
    assert_json_error(response, f"{method} {path}")


def test_options_on_the_docs_page_is_not_a_500(db):
    response = Client().options("/api/docs")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")


def test_the_schema_and_its_page_still_render(db):
    assert Client().get("/api/schema").status_code == 200
    page = Client().get("/api/docs")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")


# --- Every URL pattern under /api/, every method, every kind of caller --------------------------


def api_patterns() -> list[URLPattern]:
    (api,) = [p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and str(p.pattern) == "api/"]
    patterns = []
    for pattern in api.url_patterns:
        assert isinstance(pattern, URLPattern), f"a nested include under /api/: cover it here too ({pattern})"
        patterns.append(pattern)
    return patterns


@pytest.fixture
def walk_data(make_event, make_user):
    """An event, a booking of alice's, and the values every path parameter is tried with."""
    from booking.services import seats_admin_book

    event = make_event(rows=("A",), seats_per_row=6)
    ids = list(event.seats.order_by("pk").values_list("pk", flat=True))
    reference = seats_admin_book(seat_ids=ids[:2], holder="alice").references[0]
    return {
        "pk": [event.pk, 999_999_999],
        "reference": [reference, reference.lower(), "ZZZZZZZZ", "not-a-ref"],
        "users": {"alice": make_user("alice"), "boxoffice": make_user("boxoffice", hold_for_others=True)},
    }


def concrete_paths(pattern: URLPattern, values: dict) -> list[str]:
    """The pattern with each combination of its parameters' values; the catch-all as some paths."""
    if pattern.name is None:  # the catch-all
        return ["/api/lock/", "/api/nope", "/api/events/1/seats/extra"]
    params = sorted(pattern.pattern.regex.groupindex)
    missing = [p for p in params if p not in values]
    assert not missing, f"say which values {pattern.name}'s parameters {missing} are tried with"
    return [
        reverse(pattern.name, kwargs=dict(zip(params, combo, strict=True)))
        for combo in itertools.product(*(values[p] for p in params))
    ]


def callers(users: dict) -> dict[str, Client]:
    anonymous = APIClient()
    token = api_client_for(users["alice"])
    box_office = api_client_for(users["boxoffice"])
    session = Client(enforce_csrf_checks=True)
    session.force_login(users["alice"])
    session_csrf = Client(enforce_csrf_checks=True)
    session_csrf.force_login(users["alice"])
    session_csrf.get("/accounts/login/")  # sets the csrftoken cookie
    session_csrf.defaults["HTTP_X_CSRFTOKEN"] = session_csrf.cookies["csrftoken"].value
    return {
        "anonymous": anonymous,
        "token": token,
        "box office": box_office,
        "session without CSRF": session,
        "session": session_csrf,
    }


BODIES = [b"{}", b'{"seatId": 1, "userId": "somebody else"}', b"[[[", b"\xff"]


def test_every_api_url_with_every_method_answers_errors_in_the_spec_shape(walk_data):
    from booking.api.throttling import reservations

    statuses: Counter[int] = Counter()
    clients = callers(walk_data["users"])
    for pattern in api_patterns():
        for path in concrete_paths(pattern, walk_data):
            for (who, client), method, body in itertools.product(clients.items(), METHODS, BODIES):
                if body != b"{}" and method in ("GET", "HEAD", "OPTIONS", "DELETE"):
                    continue  # one body for requests that have none
                cache.clear()  # throttle counters: one caller sends many requests here
                reservations.clear()
                response = client.generic(method, path, body, content_type="application/json")
                what = f"{method} {path} as {who} with {body[:20]!r}"
                statuses[response.status_code] += 1
                if not 200 <= response.status_code < 300:
                    assert_json_error(response, what)
    # The walk reached the answers it is about.
    assert {200, 400, 401, 403, 404, 405} <= set(statuses), statuses
