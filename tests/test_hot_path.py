"""The write routes' hot path (booking/api/hot_path.py) answers exactly as Django does.

Each request is sent twice from the same state: once to Django alone, in a
savepoint rolled back afterwards, and once to the hot path in front of Django.
Both answers must match: status, every header, the body (the database clock's
times aside), and the seats' rows and audit rows they leave. Which requests
the hot path served itself and which it handed to Django is checked too.
"""

from __future__ import annotations

import logging
import re

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import OperationalError, transaction
from django.test import override_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from booking.api import hot_path, views
from booking.errors import Busy
from booking.models import Seat, SeatEvent

from .helpers import Answer, expire_hold, wsgi_post

PRODUCTION = {
    "DEBUG": False,
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "SECURE_SSL_REDIRECT": True,
    "SECURE_HSTS_SECONDS": 31_536_000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "ALLOWED_HOSTS": ["api.example"],
}


def _without_clock(value):
    """The answer with the database clock's values (which differ between two runs) blanked."""
    if isinstance(value, dict):
        return {
            k: "<clock>" if k in ("lockExpiresAt", "expiresInSeconds") else _without_clock(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_clock(v) for v in value]
    return value


def _without_new_secrets(headers: dict[str, str]) -> dict[str, str]:
    """The headers with a new CSRF cookie's value (random each time) blanked."""
    if "set-cookie" in headers:
        headers = {**headers, "set-cookie": re.sub(r"csrftoken=[^;]+", "csrftoken=<new>", headers["set-cookie"])}
    return headers


def _state(seat_ids):
    seats = list(Seat.objects.filter(pk__in=seat_ids).order_by("pk").values("pk", "status", "locked_by", "booked_by"))
    audit = list(
        SeatEvent.objects.filter(seat_id__in=seat_ids)
        .order_by("id")
        .values_list("seat_id", "action", "holder", "actor")
    )
    return seats, audit


@pytest.fixture
def dispatched(monkeypatch):
    """How many requests DRF's views dispatched (the hot path's own answers dispatch none)."""
    calls = []
    dispatch = APIView.dispatch

    def spy(self, request, *args, **kwargs):
        calls.append(request.path)
        return dispatch(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "dispatch", spy)
    return calls


@pytest.fixture
def both(in_process_app):
    """Send a request to Django alone (rolled back) and to the hot path in front of Django;
    return both answers and whether the hot path served it itself. Both are built anew for
    each request: Django's middleware read the settings when they are made."""

    def run(path, body=None, *, seats=(), **kwargs) -> tuple[Answer, Answer, bool]:
        django_handler, handed_over = WSGIHandler(), []

        def behind_the_hot_path(environ, start_response):
            handed_over.append(environ["PATH_INFO"])
            return django_handler(environ, start_response)

        application = hot_path.wrap(behind_the_hot_path)
        with transaction.atomic():
            django = wsgi_post(WSGIHandler(), path, body, **kwargs)
            django_state = _state(seats)
            transaction.set_rollback(True)
        answer = wsgi_post(application, path, body, **kwargs)
        assert _state(seats) == django_state, "the two answers left different rows"
        assert answer.status == django.status, (answer.body, django.body)
        if django.headers.get("content-type") == "application/json":
            assert _without_clock(answer.json()) == _without_clock(django.json())
        else:
            assert answer.body == django.body
        # The same length of a different clock reading: each answer's own length.
        assert answer.headers.pop("content-length", str(len(answer.body))) == str(len(answer.body))
        assert django.headers.pop("content-length", str(len(django.body))) == str(len(django.body))
        assert _without_new_secrets(answer.headers) == _without_new_secrets(django.headers)
        return answer, django, not handed_over

    return run


@pytest.fixture
def tokens(make_user):
    return {name: make_user(name).auth_token.key for name in ("alice", "bob")}


def test_lock_confirm_unlock_are_served_by_the_hot_path_with_django_s_answers(both, tokens, seat_ids):
    a, b, c = seat_ids[:3]
    answer, _, hot = both("/api/lock", {"seatIds": [a, b]}, token=tokens["alice"], seats=[a, b])
    assert hot and answer.status == "200 OK"
    assert answer.json()["holder"] == "alice" and answer.json()["expiresInSeconds"] > 59
    assert [s["status"] for s in answer.json()["seats"]] == ["locked", "locked"]
    answer, _, hot = both("/api/confirm", {"seatId": a}, token=tokens["alice"], seats=[a])
    assert hot and answer.json()["seats"][0]["status"] == "booked"
    answer, _, hot = both("/api/unlock", {"seatId": b}, token=tokens["alice"], seats=[b])
    assert hot and answer.json()["seats"][0]["status"] == "available"
    answer, _, hot = both("/api/lock", {"seatId": c}, token=tokens["bob"], seats=[c])
    assert hot and answer.json()["holder"] == "bob"
    assert list(SeatEvent.objects.filter(seat_id__in=[a, b, c]).order_by("id").values_list("action", "holder")) == [
        ("locked", "alice"),
        ("locked", "alice"),
        ("booked", "alice"),
        ("unlocked", "alice"),
        ("locked", "bob"),
    ]
    assert set(SeatEvent.objects.filter(seat_id__in=[a, b, c]).values_list("actor__username", flat=True)) == {
        "alice",
        "bob",
    }


def test_rule_errors_are_answered_by_the_hot_path_as_by_django(both, tokens, seat_ids, caplog):
    a, b, c, d = seat_ids[:4]
    both("/api/lock", {"seatId": a}, token=tokens["alice"], seats=[a])
    both("/api/lock", {"seatId": b}, token=tokens["alice"], seats=[b])
    both("/api/confirm", {"seatId": b}, token=tokens["alice"], seats=[b])
    both("/api/lock", {"seatId": d}, token=tokens["bob"], seats=[d])
    expire_hold(d)
    caplog.set_level(logging.WARNING, logger="django.request")
    cases = [
        ("/api/lock", {"seatId": a}, "bob", 409, "seat_locked", [a]),
        ("/api/lock", {"seatIds": [c, b]}, "bob", 409, "seat_booked", [b]),
        ("/api/confirm", {"seatId": c}, "bob", 409, "not_locked_by_you", [c]),
        ("/api/confirm", {"seatId": d}, "bob", 409, "hold_expired", [d]),
        ("/api/unlock", {"seatId": a}, "bob", 409, "not_locked_by_you", [a]),
        ("/api/lock", {"seatIds": [c, 999_999]}, "bob", 404, "seat_not_found", [999_999]),
    ]
    for path, body, user, status, code, seats in cases:
        caplog.clear()
        answer, _, hot = both(path, body, token=tokens[user], seats=[a, b, c, d])
        assert hot, (path, body)
        assert (
            answer.status.startswith(str(status)) and answer.json()["code"] == code and answer.json()["seats"] == seats
        )
        # Logged as Django logs a 4xx: once by the Django run, once by the hot path.
        assert [r.levelname for r in caplog.records if r.name == "django.request"] == ["WARNING", "WARNING"]


def test_too_many_holds_through_the_hot_path(both, tokens, seat_ids, settings):
    settings.BOOKING_MAX_HOLDS = 2
    both("/api/lock", {"seatIds": seat_ids[:2]}, token=tokens["alice"], seats=seat_ids[:3])
    answer, _, hot = both("/api/lock", {"seatId": seat_ids[2]}, token=tokens["alice"], seats=seat_ids[:3])
    assert hot and answer.json()["code"] == "too_many_holds"


def test_throttled_through_the_hot_path_is_django_s_429(both, tokens, seat_ids, monkeypatch):
    rates = {"user": "2/hour", "anon": "2/hour"}
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", rates)
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", rates)
    # The counter lives in the cache, not in the rolled-back savepoint: each `both` counts 2.
    answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1])
    assert hot and answer.status == "200 OK"
    answer, _, hot = both("/api/lock", {"seatId": seat_ids[1]}, token=tokens["alice"], seats=seat_ids[:2])
    assert hot and answer.status == "429 Too Many Requests"
    assert answer.json()["code"] == "throttled" and int(answer.headers["retry-after"]) >= 1
    assert Seat.objects.get(pk=seat_ids[1]).status == "available"


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [(Busy(), 503, "busy"), (OperationalError("lock timeout"), 503, "busy")],
)
def test_busy_through_the_hot_path(both, tokens, seat_ids, monkeypatch, raised, status, code):
    def busy(**kwargs):
        raise raised

    monkeypatch.setattr(views.LockView, "service", staticmethod(busy))
    answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1])
    assert hot and answer.status.startswith(str(status)) and answer.json()["code"] == code
    assert answer.headers["retry-after"] == "1"


def test_a_bug_is_django_s_500_in_the_spec_s_shape(both, tokens, seat_ids, monkeypatch, settings, caplog):
    settings.DEBUG = False

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.LockView, "service", staticmethod(broken))
    answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1])
    assert hot and answer.status == "500 Internal Server Error"
    assert answer.json() == {"code": "server_error", "detail": "Internal error."}
    assert [r.exc_info[1].args for r in caplog.records if r.name == "django.request"] == [("a bug",), ("a bug",)]


def test_production_headers_and_https_only(both, tokens, seat_ids):
    with override_settings(**PRODUCTION):
        https = {"HTTP_HOST": "api.example", "HTTP_X_FORWARDED_PROTO": "https"}
        answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1], **https)
        assert hot and answer.status == "200 OK"
        assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        # Plain HTTP: Django's redirect; a host not allowed: Django's 400.
        plain = {"HTTP_HOST": "api.example"}
        answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1], **plain)
        assert not hot and answer.status.startswith("301")
        evil = {"HTTP_HOST": "evil.example", "HTTP_X_FORWARDED_PROTO": "https"}
        answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1], **evil)
        assert not hot and answer.status.startswith("400")


@pytest.mark.parametrize(
    ("case", "secure"),
    [
        ({"HTTP_X_FORWARDED_PROTO": "https, http"}, True),
        ({"HTTP_X_FORWARDED_PROTO": "http"}, False),
        ({"wsgi.url_scheme": "https"}, True),
        ({}, False),
    ],
)
def test_https_as_django_sees_it_without_the_redirect(both, tokens, seat_ids, case, secure):
    """Where plain HTTP is served too, HSTS goes exactly where Django puts it."""
    with override_settings(**{**PRODUCTION, "SECURE_SSL_REDIRECT": False}):
        answer, _, hot = both(
            "/api/lock",
            {"seatId": seat_ids[0]},
            token=tokens["alice"],
            seats=seat_ids[:1],
            HTTP_HOST="api.example",
            **case,
        )
    assert hot and answer.status == "200 OK"
    assert ("strict-transport-security" in answer.headers) is secure


@pytest.mark.parametrize(
    ("case", "body", "extra", "status"),
    [
        ("acting for another holder", {"seatId": 1, "userId": "bob"}, {}, 403),
        ("malformed JSON", b'{"seatId": ', {}, 400),
        ("a duplicated id", {"seatIds": [1, 1]}, {}, 400),
        ("a string id", {"seatId": "1"}, {}, 400),
        ("a form body", b"seatId=1", {"CONTENT_TYPE": "application/x-www-form-urlencoded"}, 415),
        ("an Accept other than JSON", {"seatId": 1}, {"HTTP_ACCEPT": "text/html"}, 406),
        ("a query string", {"seatId": 1}, {"QUERY_STRING": "format=json"}, 200),
        ("an unknown token", {"seatId": 1}, {"HTTP_AUTHORIZATION": "Token nope"}, 401),
        ("no credentials", {"seatId": 1}, {"HTTP_AUTHORIZATION": ""}, 401),
        ("a host not allowed", {"seatId": 1}, {"HTTP_HOST": "evil.example"}, 400),
        ("no length", {"seatId": 1}, {"CONTENT_LENGTH": ""}, 400),
        (
            "cookies (a malformed CSRF one is renewed)",
            {"seatId": 1},
            {"HTTP_COOKIE": "sessionid=x; csrftoken=bad"},
            200,
        ),
    ],
)
def test_other_requests_go_to_django(both, tokens, seat_ids, case, body, extra, status):
    if isinstance(body, dict) and body.get("seatId") == 1:
        body = {**body, "seatId": seat_ids[0]}
    raw = body if isinstance(body, bytes) else None
    answer, _, hot = both(
        "/api/lock", None if raw else body, raw=raw, token=tokens["alice"], seats=seat_ids[:1], **extra
    )
    assert not hot, case
    assert answer.status.startswith(str(status)), (case, answer.body)


def test_off_switch_sends_everything_to_django(both, tokens, seat_ids, settings):
    settings.BOOKING_HOT_PATH = False
    answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1])
    assert not hot and answer.status == "200 OK"


def test_other_middleware_turns_it_off(both, tokens, seat_ids, settings, caplog):
    caplog.set_level(logging.INFO, logger="booking.api")
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    answer, _, hot = both("/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"], seats=seat_ids[:1])
    assert not hot and answer.status == "200 OK"
    assert "the write routes' hot path is off" in caplog.text


def test_the_production_application_is_the_hot_path(in_process_app, dispatched, tokens, seat_ids):
    answer = wsgi_post(in_process_app, "/api/lock", {"seatId": seat_ids[0]}, token=tokens["alice"])
    assert answer.status == "200 OK" and answer.json()["seats"][0]["status"] == "locked"
    assert dispatched == []
    answer = wsgi_post(in_process_app, "/api/lock", {"seatId": seat_ids[0], "userId": "bob"}, token=tokens["alice"])
    assert answer.status.startswith("403") and answer.json()["code"] == "forbidden"
    assert dispatched == ["/api/lock"]
