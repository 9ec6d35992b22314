"""Reads are public, writes need a caller, and a caller acts as itself unless it may hold for others."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from booking.models import Seat, SeatEvent

from .helpers import assert_error, post, seat

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/lock", "/api/confirm", "/api/unlock"])
def test_writes_need_a_caller(anonymous, seat_ids, path):
    response = post(anonymous, path, {"seatId": seat_ids[0]})
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert_error(anonymous.get("/api/me/seats"), 401, "not_authenticated")


def test_a_bad_token_is_401(seat_ids):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(post(client, "/api/lock", {"seatId": seat_ids[0]}), 401, "not_authenticated")


@pytest.mark.parametrize("path", ["/api/events", "/api/seats", "/api/health", "/api/schema", "/api/docs"])
def test_reads_are_public(anonymous, event, path):
    assert anonymous.get(path).status_code == 200
    assert anonymous.get(f"/api/events/{event.pk}").status_code == 200
    assert anonymous.get(f"/api/events/{event.pk}/seats").status_code == 200


def test_acting_for_another_holder_is_forbidden(alice, seat_ids):
    assert_error(post(alice, "/api/lock", {"seatId": seat_ids[0], "userId": "bob"}), 403, "forbidden")
    assert_error(alice.get("/api/me/seats?userId=bob"), 403, "forbidden")
    assert seat(seat_ids[0]).status == "available"


def test_naming_oneself_is_fine(alice, seat_ids):
    assert post(alice, "/api/lock", {"seatId": seat_ids[0], "userId": "alice"}).status_code == 200


def test_box_office_acts_for_any_holder(box_office, bob, seat_ids):
    response = post(box_office, "/api/lock", {"seatIds": seat_ids[:2], "userId": "walk-in-42"})
    assert response.status_code == 200
    assert response.json()["holder"] == "walk-in-42"
    assert post(box_office, "/api/confirm", {"seatId": seat_ids[0], "userId": "walk-in-42"}).status_code == 200
    assert seat(seat_ids[0]).booked_by == "walk-in-42"
    audit = SeatEvent.objects.filter(seat_id=seat_ids[0]).order_by("id")
    assert [(a.action, a.holder, a.actor.username) for a in audit] == [
        ("locked", "walk-in-42", "boxoffice"),
        ("booked", "walk-in-42", "boxoffice"),
    ]
    mine = box_office.get("/api/me/seats?userId=walk-in-42").json()
    assert mine["holder"] == "walk-in-42"
    assert [(s["id"], s["status"]) for s in mine["seats"]] == [(seat_ids[0], "booked"), (seat_ids[1], "locked")]
    # A holder's hold is theirs: another caller cannot confirm it.
    assert_error(post(bob, "/api/confirm", {"seatId": seat_ids[1]}), 409, "not_locked_by_you")


def test_session_login_works_with_csrf(seat_ids, make_user):
    user = make_user("carol", password="s3cret-pass-word")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert_error(post(client, "/api/lock", {"seatId": seat_ids[0]}), 403, "forbidden")  # no CSRF token
    token = "a" * 32  # a CSRF secret in the cookie, echoed in the header
    client.cookies["csrftoken"] = token
    response = client.post("/api/lock", {"seatId": seat_ids[0]}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert Seat.objects.get(pk=seat_ids[0]).locked_by == "carol"


def test_superuser_may_act_for_others(seat_ids):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-long-enough")
    client = APIClient()
    client.force_authenticate(admin)
    assert post(client, "/api/lock", {"seatId": seat_ids[0], "userId": "someone"}).status_code == 200


def test_over_the_rate_is_429_throttled_with_retry_after(alice, anonymous, seat_ids, monkeypatch):
    from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

    rates = {"anon": "3/minute", "user": "3/minute"}
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", rates)
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", rates)
    for _ in range(3):
        assert anonymous.get("/api/events").status_code == 200
        assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200
    response = anonymous.get("/api/events")
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 61
    assert_error(post(alice, "/api/lock", {"seatId": seat_ids[0]}), 429, "throttled")
    assert seat(seat_ids[0]).status == "available"


# --- The token cache: a token's user is kept for BOOKING_TOKEN_CACHE_SECONDS per process ---


def _lock(client, seat_id):
    return post(client, "/api/lock", {"seatId": seat_id})


def _known_caller(make_user, settings, name: str, *, cache_seconds: float):
    """A user and an API client with its token, this process keeping a token's user ``cache_seconds``."""
    settings.BOOKING_TOKEN_CACHE_SECONDS = cache_seconds
    user = make_user(name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return user, client


def _delete_token_elsewhere(user) -> None:
    """Delete the user's token as another process would: no signal reaches this one."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM authtoken_token WHERE user_id = %s", [user.pk])


def test_a_token_deleted_in_this_process_stops_working_at_once(make_user, seat_ids, settings):
    user, client = _known_caller(make_user, settings, "dora", cache_seconds=60)
    assert _lock(client, seat_ids[0]).status_code == 200  # the token's user is now kept
    user.auth_token.delete()
    assert_error(_lock(client, seat_ids[1]), 401, "not_authenticated")


def test_a_user_deactivated_in_this_process_is_refused_at_once(make_user, seat_ids, settings):
    user, client = _known_caller(make_user, settings, "emil", cache_seconds=60)
    assert _lock(client, seat_ids[0]).status_code == 200
    user.is_active = False
    user.save()
    assert_error(_lock(client, seat_ids[1]), 401, "not_authenticated")


def test_a_right_granted_in_this_process_applies_at_once(make_user, seat_ids, settings):
    from django.contrib.auth.models import Permission

    user, client = _known_caller(make_user, settings, "fred", cache_seconds=60)
    assert_error(post(client, "/api/lock", {"seatId": seat_ids[0], "userId": "walk-in"}), 403, "forbidden")
    user.user_permissions.add(Permission.objects.get(codename="hold_for_others"))
    assert post(client, "/api/lock", {"seatId": seat_ids[0], "userId": "walk-in"}).status_code == 200


def test_a_token_revoked_by_another_process_works_at_most_the_cache_time(make_user, seat_ids, settings):
    """This process keeps authenticating a token deleted elsewhere until its entry is
    BOOKING_TOKEN_CACHE_SECONDS old."""
    import time

    user, client = _known_caller(make_user, settings, "gina", cache_seconds=0.5)
    assert _lock(client, seat_ids[0]).status_code == 200
    _delete_token_elsewhere(user)
    assert _lock(client, seat_ids[1]).status_code == 200  # still kept, as documented
    time.sleep(0.6)
    assert_error(_lock(client, seat_ids[2]), 401, "not_authenticated")


def test_without_the_cache_every_request_asks_the_database(make_user, seat_ids, settings):
    user, client = _known_caller(make_user, settings, "hugo", cache_seconds=0)
    assert _lock(client, seat_ids[0]).status_code == 200
    _delete_token_elsewhere(user)
    assert_error(_lock(client, seat_ids[1]), 401, "not_authenticated")


def test_unknown_tokens_are_never_kept(make_user, seat_ids, settings):
    from booking.api.authentication import token_cache

    settings.BOOKING_TOKEN_CACHE_SECONDS = 60
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    for _ in range(3):
        assert_error(_lock(client, seat_ids[0]), 401, "not_authenticated")
    assert token_cache.get("0123456789abcdef0123456789abcdef01234567") is None


def test_the_cache_keeps_at_most_its_size(monkeypatch):
    from rest_framework.authtoken.models import Token

    from booking.api import authentication

    monkeypatch.setattr(authentication, "TOKEN_CACHE_SIZE", 5)
    cache = authentication._TokenCache()
    for n in range(12):
        cache.put(f"key-{n}", object(), Token(key=f"key-{n}"), 60)
    assert len(cache._entries) == 5
    assert cache.get("key-11") is not None and cache.get("key-0") is None


@pytest.mark.parametrize(
    "header", ["Token", "Token a b", "Bearer abc", "token\u00e9 x", "Token k\u00e9y", "Basic Zm9vOmJhcg=="]
)
def test_odd_authorization_headers_are_401_or_anonymous_never_500(seat_ids, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = post(client, "/api/lock", {"seatId": seat_ids[0]})
    assert response.status_code == 401, response.content


@pytest.mark.parametrize(
    "holder",
    ['quote"d', "back\\slash", "{braces,and,commas}", "it's", "NULL", "inner  spaces", "ünïcødé ✓", "a" * 150],
)
def test_any_holder_string_is_stored_exactly_in_seats_and_audit(box_office, seat_ids, holder):
    """Holders travel to PostgreSQL inside array literals: quoting must keep every character."""
    assert post(box_office, "/api/lock", {"seatIds": seat_ids[:2], "userId": holder}).status_code == 200
    assert post(box_office, "/api/confirm", {"seatId": seat_ids[0], "userId": holder}).status_code == 200
    assert seat(seat_ids[0]).booked_by == holder and seat(seat_ids[1]).locked_by == holder
    audit = SeatEvent.objects.filter(seat_id__in=seat_ids[:2]).order_by("id").values_list("action", "holder")
    assert list(audit) == [("locked", holder), ("locked", holder), ("booked", holder)]
