"""/metrics: refused without credentials; the sale's counters, refusals, waits, backlogs and
watchers as Prometheus text; the structured log line of each booking event; and, in
prometheus_client's multiprocess mode, a booking made by another process that has exited."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from booking import activity, services
from booking.errors import Busy
from booking.models import WebhookDelivery, WebhookEndpoint, WebhookMessage

from .helpers import expire_hold, post
from .processes import REPO, child_env


def scrape(client, **headers) -> str:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sample's value (0 when it is not there: a counter nobody has touched)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture
def metrics(client):
    """Scrape, and the change of a sample since the fixture was set up."""

    class Metrics:
        def __init__(self) -> None:
            self.before = scrape(client)

        def now(self) -> str:
            return scrape(client)

        def delta(self, name: str, **labels: str) -> float:
            return value(self.now(), name, **labels) - value(self.before, name, **labels)

    return Metrics()


# --- Who may scrape -----------------------------------------------------------------


@pytest.mark.django_db
def test_refused_from_elsewhere_without_the_token(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    far = {"REMOTE_ADDR": "203.0.113.9"}
    response = client.get("/metrics", **far)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **far).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-token", **far).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", **far).status_code == 200
    # This machine is let in by default; a wrong token is refused even from here.
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


@pytest.mark.django_db
def test_allowed_networks_and_no_token_configured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "::1/128"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="11.0.0.1").status_code == 403
    # No token set: a bearer header lets nobody in.
    assert client.get("/metrics", REMOTE_ADDR="11.0.0.1", HTTP_AUTHORIZATION="Bearer ").status_code == 403


# --- What it shows ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_booking_counts_holds_seats_and_the_booking(alice, seat_ids, metrics, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert post(alice, "/api/lock", {"seatIds": seat_ids[:2]}).status_code == 200
        assert post(alice, "/api/lock", {"seatIds": seat_ids[:2]}).status_code == 200  # a renewal: no new hold
        assert post(alice, "/api/confirm", {"seatIds": seat_ids[:2]}).status_code == 200
    assert metrics.delta("booking_holds_created_total") == 2
    assert metrics.delta("booking_seats_booked_total") == 2
    assert metrics.delta("booking_bookings_confirmed_total") == 1
    assert metrics.delta("booking_lock_wait_seconds_count") == 3
    # django-prometheus: requests by view and status.
    assert metrics.delta("django_http_responses_total_by_status_view_method_total", view="lock", status="200") == 2


@pytest.mark.django_db
def test_nothing_is_counted_for_a_change_that_rolled_back(alice, seat_ids, metrics):
    # No on_commit callbacks run in this test's transaction: as for a change that rolled back.
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert metrics.delta("booking_holds_created_total") == 0


@pytest.mark.django_db
def test_conflicts_by_code_and_busy(alice, bob, seat_ids, metrics, monkeypatch):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    assert post(bob, "/api/lock", {"seatId": seat_ids[0]}).status_code == 409
    assert post(bob, "/api/confirm", {"seatId": seat_ids[0]}).status_code == 409
    assert post(bob, "/api/lock", {"seatId": seat_ids[0]}).status_code == 409

    def busy(**kwargs):
        raise Busy()

    monkeypatch.setattr(services, "seats_lock", busy)
    monkeypatch.setattr("booking.api.views.LockView.service", staticmethod(busy))
    assert post(bob, "/api/lock", {"seatId": seat_ids[1]}).status_code == 503
    assert metrics.delta("booking_api_conflicts_total", code="seat_locked") == 2
    assert metrics.delta("booking_api_conflicts_total", code="not_locked_by_you") == 1
    assert metrics.delta("booking_api_busy_total") == 1


@pytest.mark.django_db
def test_expiries_and_the_sweep_backlog(client, alice, seat_ids, metrics, django_capture_on_commit_callbacks):
    post(alice, "/api/lock", {"seatIds": seat_ids[:3]})
    expire_hold(*seat_ids[:3])
    assert value(scrape(client), "booking_expired_holds_unreleased") == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert services.holds_release_expired() == 3
    assert value(scrape(client), "booking_expired_holds_unreleased") == 0
    assert metrics.delta("booking_holds_expired_total") == 3


@pytest.mark.django_db
def test_the_webhook_backlog_counts_deliveries_due(client):
    endpoint = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", secret="whsec_x")
    now = timezone.now()
    for n, due in enumerate([now - timedelta(seconds=5), now - timedelta(seconds=1), now + timedelta(hours=1)]):
        message = WebhookMessage.objects.create(msg_id=f"msg_{n}", type="hold.created", payload={})
        WebhookDelivery.objects.create(endpoint=endpoint, message=message, next_attempt_at=due)
    WebhookDelivery.objects.filter(next_attempt_at__lt=now - timedelta(seconds=3)).update(state="delivered")
    assert value(scrape(client), "booking_webhook_deliveries_due") == 1


def test_a_failing_backlog_count_leaves_the_rest_of_the_scrape(client, db, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr("booking.selectors.backlog_counts", broken)
    before = value(scrape(client), "booking_dependency_errors_total", dependency="database")
    text = scrape(client)
    assert "booking_webhook_deliveries_due" not in text
    assert "booking_lock_wait_seconds_count" in text
    assert value(text, "booking_dependency_errors_total", dependency="database") == before + 1


@pytest.mark.django_db
def test_the_seat_map_and_its_304_are_counted_by_view(anonymous, client, event, metrics):
    etag = anonymous.get(f"/api/events/{event.pk}/seats")["ETag"]
    assert anonymous.get(f"/api/events/{event.pk}/seats", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert (
        metrics.delta("django_http_responses_total_by_status_view_method_total", view="event-seats", status="304") == 1
    )


# --- Log lines ----------------------------------------------------------------------


@pytest.mark.django_db
def test_one_structured_line_per_booking_event(
    alice, box_office, seat_ids, event, caplog, django_capture_on_commit_callbacks
):
    holder = "o'brien x=1"  # a quote, a space and an equals sign inside a holder stay inside its field
    caplog.set_level(logging.INFO, logger="booking.activity")
    with django_capture_on_commit_callbacks(execute=True):
        post(box_office, "/api/lock", {"seatIds": seat_ids[:2], "userId": holder})
        booking = post(box_office, "/api/confirm", {"seatIds": seat_ids[:2], "userId": holder}).json()["booking"]
        post(box_office, f"/api/bookings/{booking['reference']}/cancel", {"seatIds": [seat_ids[0]]})
        post(alice, "/api/lock", {"seatId": seat_ids[5]})
        expire_hold(seat_ids[5])
        services.holds_release_expired()
    lines = [r.getMessage() for r in caplog.records if r.name == "booking.activity"]
    a, b = seat_ids[:2]
    assert lines == [
        f"seats action=locked event={event.pk} holder={holder!r} count=2 seats={a},{b}",
        f"seats action=booked event={event.pk} holder={holder!r} booking={booking['reference']} count=2 seats={a},{b}",
        f"seats action=cancelled event={event.pk} holder={holder!r} booking={booking['reference']} count=1 seats={a}",
        f"seats action=locked event={event.pk} holder='alice' count=1 seats={seat_ids[5]}",
        f"seats action=expired event={event.pk} holder='alice' count=1 seats={seat_ids[5]}",
    ]
    assert activity.line("expired", 1, "bob", None, list(range(150))).endswith(",99,...")


# --- Watchers and push lag (through the ASGI application, as the live process runs it) -----------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_watchers_per_event_and_the_push_lag(event, seat_ids):
    from asgiref.sync import sync_to_async
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.db import connections

    from booking import live, metrics
    from config.asgi import application

    def watchers() -> float:
        return metrics.LIVE_WATCHERS.labels(str(event.pk))._value.get()

    def lag_count() -> float:
        return sum(s.value for s in metrics.PUSH_LAG_SECONDS.collect()[0].samples if s.name.endswith("_count"))

    live.flush()  # pushes of earlier tests, still in this process's publisher
    lags_before = lag_count()
    start = watchers()
    clients = [
        WebsocketCommunicator(application, f"/ws/events/{event.pk}/", headers=[(b"origin", b"http://testserver")])
        for _ in range(2)
    ]
    try:
        for communicator in clients:
            assert (await communicator.connect(timeout=5))[0]
            assert (await communicator.receive_json_from(timeout=5))["type"] == "snapshot"
        assert watchers() == start + 2
        await database_sync_to_async(services.seats_lock)(seat_ids=[seat_ids[0]], holder="alice")
        assert (await clients[0].receive_json_from(timeout=3))["type"] == "seats"
        assert lag_count() == lags_before + 1
        await clients[1].disconnect()
        assert watchers() == start + 1
    finally:
        await clients[0].disconnect()
        await sync_to_async(connections.close_all)()
    assert watchers() == start


# --- Several processes ----------------------------------------------------------------

_BOOK_AND_EXIT = """
import django, os
django.setup()
from datetime import timedelta
from django.utils import timezone
from booking import metrics, services
event = services.event_create_with_seats(name="Elsewhere", starts_at=timezone.now() + timedelta(days=1),
                                         rows=["A"], seats_per_row=2)
ids = list(event.seats.values_list("pk", flat=True))
services.seats_lock(seat_ids=ids, holder="zoe")
services.seats_confirm(seat_ids=ids, holder="zoe")
metrics.LIVE_WATCHERS.labels("999").inc()  # a watcher of a process about to die
print("booked", flush=True)
"""

_SCRAPE = """
import django
django.setup()
from booking.monitoring import scrape
print(scrape().decode())
"""


@pytest.mark.django_db(transaction=True)
def test_multiprocess_mode_shows_a_booking_of_a_process_that_exited(tmp_path):
    """Each process writes its values into PROMETHEUS_MULTIPROC_DIR; a scrape in another
    process (a web server worker) sums them, and forgets the watchers of dead processes.
    With METRICS_DATABASE the database's statements are counted too."""
    env = child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path), DEBUG="true", METRICS_DATABASE="true")

    def run(code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "booked" in run(_BOOK_AND_EXIT)
    assert list(tmp_path.glob("counter_*.db"))
    text = run(_SCRAPE)
    assert value(text, "booking_bookings_confirmed_total") == 1
    assert value(text, "booking_holds_created_total") == 2
    assert value(text, "booking_seats_booked_total") == 2
    assert value(text, "booking_live_watchers", event="999") == 0
    # METRICS_DATABASE: django-prometheus' engine counted the booking process's statements.
    assert value(text, "django_db_execute_total", alias="default") > 10
    assert not list(tmp_path.glob("gauge_livesum_*.db"))
