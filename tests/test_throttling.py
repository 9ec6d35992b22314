"""Rate limits (booking/api/throttling.py): counted per fixed window, exactly, in the cache the
app servers share (Redis in production), and answered with 429 and Retry-After."""

import uuid

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import override_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from .conftest import api_client_for, redis_available, redis_url, require
from .helpers import assert_error, post
from .racing import race, statuses


@pytest.fixture
def rates(monkeypatch):
    def set_rates(user: str, anon: str = "1000/hour") -> None:
        values = {"user": user, "anon": anon}
        monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", values)
        monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", values)

    return set_rates


@pytest.fixture
def redis_cache():
    """The default cache on Redis, as CACHE_URL=redis://… gives production, under a prefix of its own."""
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    prefix = f"test-throttle-{uuid.uuid4().hex[:8]}"
    config = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url(),
            "KEY_PREFIX": prefix,
        }
    }
    with override_settings(CACHES=config):
        yield caches["default"]
    # Only this test's keys: the cache's clear() would empty the whole Redis database (FLUSHDB).
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.django_db
@pytest.mark.redis
def test_over_the_rate_on_redis_is_429_with_retry_after(redis_cache, rates, alice, anonymous, seat_ids):
    rates("3/minute", "2/minute")
    for _ in range(3):
        assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200
    response = post(alice, "/api/lock", {"seatId": seat_ids[0]})
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 61
    for _ in range(2):
        assert anonymous.get("/api/events").status_code == 200
    assert_error(anonymous.get("/api/events"), 429, "throttled")
    # One counter per caller and window in Redis (DRF's user limit also counts anonymous callers by
    # address), each expiring with its window.
    alice_id = get_user_model().objects.get(username="alice").pk
    redis = redis_cache._cache.get_client()
    keys = list(redis.scan_iter(f"{redis_cache.key_prefix}*"))
    callers = {key.decode().split(":")[2] for key in keys}
    assert callers == {"throttle_anon_127.0.0.1", "throttle_user_127.0.0.1", f"throttle_user_{alice_id}"}
    assert all(0 < redis.ttl(key) <= 61 for key in keys)


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
def test_concurrent_requests_are_counted_exactly_on_redis(redis_cache, rates, make_user, seat_ids):
    """20 requests of one user at once against a limit of 10: exactly 10 pass (a read-modify-write
    of the request history, as DRF's own throttle does, lets more through)."""
    rates("10/hour")
    client = api_client_for(make_user("racer"))
    responses = race([lambda: post(client, "/api/unlock", {"seatId": seat_ids[0]})] * 20)
    assert statuses(responses) == {200: 10, 429: 10}


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_are_counted_exactly_in_local_memory(rates, make_user, seat_ids):
    rates("10/hour")
    client = api_client_for(make_user("racer"))
    responses = race([lambda: post(client, "/api/unlock", {"seatId": seat_ids[0]})] * 20)
    assert statuses(responses) == {200: 10, 429: 10}


@pytest.mark.django_db
def test_a_new_window_starts_a_new_count(rates, alice, seat_ids, monkeypatch):
    from booking.api import throttling

    clock = [1_000_000.0]
    monkeypatch.setattr(throttling.FixedWindowThrottle, "timer", lambda self: clock[0])
    rates("2/minute")
    assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200
    assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200
    response = post(alice, "/api/unlock", {"seatId": seat_ids[0]})
    assert_error(response, 429, "throttled")
    assert response["Retry-After"] == str(int(60 - clock[0] % 60) + 1)
    clock[0] += 60
    assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200


@pytest.mark.django_db
@pytest.mark.redis
def test_app_servers_reserve_in_chunks_and_together_never_pass_the_limit(
    redis_cache, rates, alice, seat_ids, monkeypatch
):
    """Each process reserves a share of the limit at once (one Redis round trip per chunk, not
    per request). Three processes taking turns: never more than the limit passes, and a
    client is refused early by at most each process's unused chunk."""
    from booking.api import throttling

    monkeypatch.setattr(throttling, "RESERVE_SHARE", 0.2)  # limit 25: chunks of 5
    rates("25/hour")
    processes = [throttling._Reservations() for _ in range(3)]
    passed = refused_in_a_row = 0
    turn = 0
    while refused_in_a_row < len(processes):
        monkeypatch.setattr(throttling, "reservations", processes[turn % len(processes)])
        turn += 1
        if post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200:
            passed, refused_in_a_row = passed + 1, 0
        else:
            refused_in_a_row += 1
    assert 25 - 3 * (5 - 1) <= passed <= 25
    [key] = [k for k in redis_cache._cache.get_client().scan_iter(f"{redis_cache.key_prefix}*throttle_user_*")]
    assert int(redis_cache._cache.get_client().get(key)) >= passed


@pytest.mark.django_db
@pytest.mark.redis
def test_one_process_asks_redis_once_per_chunk(redis_cache, rates, alice, seat_ids):
    rates("1000/hour")  # chunks of 10
    redis = redis_cache._cache.get_client()
    for sent in range(1, 13):
        assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200
        [key] = [k for k in redis.scan_iter(f"{redis_cache.key_prefix}*throttle_user_*")]
        assert int(redis.get(key)) == (10 if sent <= 10 else 20)
