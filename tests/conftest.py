"""Shared fixtures: events, seats, holders and API clients; and the rules for
tests that need a server (PostgreSQL, Redis): in CI they must run, never skip."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, reason: str) -> None:
    """Skip outside CI when a server a test needs is missing; fail in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {reason}")
    pytest.skip(reason)


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(redis_url(), socket_connect_timeout=1).ping())
    except Exception:
        return False


def pytest_report_header(config):
    return f"database: {connection.vendor} ({connection.settings_dict['NAME']}); CI={IN_CI}"


def pytest_collection_modifyitems(config, items):
    """PostgreSQL-only tests are deselected (not skipped) on SQLite: they run in the PostgreSQL pass."""
    if connection.vendor == "postgresql":
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("postgres") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    """Each test starts with empty throttle counters (the cache is per process, LocMem, in tests)."""
    from django.core.cache import cache

    from booking.api.throttling import reservations

    cache.clear()
    reservations.clear()


@pytest.fixture(autouse=True)
def fresh_webhook_endpoints():
    """Each test starts with no list of webhook endpoints kept (a test's rollback sends no signal)."""
    from booking.services.webhooks import endpoints

    endpoints.clear()


@pytest.fixture(autouse=True)
def closed_breakers():
    """Each test starts with every dependency's breaker closed (booking/dependencies.py: per process)
    and no live push owed."""
    from booking.dependencies import BREAKERS
    from booking.live import lost_groups

    for breaker in BREAKERS.values():
        breaker.reset()
    lost_groups.clear()  # no group is told it lost a push that an earlier test's fault lost


@pytest.fixture(autouse=True)
def fresh_token_cache():
    """Each test starts with no API token's user kept (booking/api/authentication.py)."""
    from booking.api.authentication import token_cache

    token_cache.clear()


@pytest.fixture
def make_event(db):
    from booking.services import event_create_with_seats

    def make(name="Concert", rows=("A", "B", "C"), seats_per_row=10, hold_seconds=60):
        return event_create_with_seats(
            name=name,
            starts_at=timezone.now() + timedelta(days=7),
            rows=list(rows),
            seats_per_row=seats_per_row,
            hold_seconds=hold_seconds,
        )

    return make


@pytest.fixture
def event(make_event):
    return make_event()


@pytest.fixture
def seat_ids(event):
    return list(event.seats.order_by("pk").values_list("pk", flat=True))


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    from booking.management.commands.create_api_user import ensure_api_user

    def make(username, *, hold_for_others=False, staff=False, password=None):
        ensure_api_user(username, hold_for_others=hold_for_others, staff=staff, password=password)
        return get_user_model().objects.get(username=username)

    return make


def api_client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


@pytest.fixture
def alice(make_user):
    return api_client_for(make_user("alice"))


@pytest.fixture
def bob(make_user):
    return api_client_for(make_user("bob"))


@pytest.fixture
def box_office(make_user):
    return api_client_for(make_user("boxoffice", hold_for_others=True))


@pytest.fixture
def staff(make_user):
    """A box office user who may sign in to the admin and act for any holder."""
    return make_user("boxoffice", staff=True, hold_for_others=True, password="box-office-pw")


@pytest.fixture
def staff_client(client, staff):
    """Django's test client, signed in as ``staff`` (the admin's pages)."""
    client.force_login(staff)
    return client


@pytest.fixture
def anonymous():
    return APIClient()


@pytest.fixture
def in_process_app(db):
    """The WSGI application (config/wsgi.py: the write routes' hot path in front of Django) on the
    test database.

    As Django's test client does, a request does not close the database
    connection at its end: it is the test's, with the test's data in it.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from config.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield application
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
