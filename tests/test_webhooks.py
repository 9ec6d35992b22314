"""Webhooks in one process: the outbox written with the change, signed attempts to a real receiver."""

from __future__ import annotations

import base64
import json
import re
import ssl
from datetime import timedelta

import pytest
import trustme
from django.core.management import call_command
from django.db.models.functions import Now
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from booking import services
from booking.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from booking.services import holds, webhooks

from .helpers import expire_hold, post
from .webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    started = Receiver()
    yield started
    started.stop()


@pytest.fixture
def endpoint(receiver):
    return webhooks.webhook_endpoint_create(url=receiver.url)


def deliver_all() -> list[str]:
    """One attempt at every delivery that is due, as the worker would make."""
    due = WebhookDelivery.objects.filter(state="pending", next_attempt_at__lte=Now()).values_list("pk", flat=True)
    return [webhooks.webhook_deliver(pk) for pk in list(due)]


def messages(event_type=None):
    found = WebhookMessage.objects.order_by("id")
    return list(found.filter(type=event_type) if event_type else found)


def make_due():
    WebhookDelivery.objects.filter(state="pending").update(next_attempt_at=Now())


def test_a_confirm_writes_its_message_with_the_booking(alice, seat_ids, endpoint):
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:2]}).status_code == 200
    answer = post(alice, "/api/confirm", {"seatIds": seat_ids[:2], "orderId": "o-1"}).json()
    (message,) = messages("booking.confirmed")
    assert message.payload["type"] == "booking.confirmed"
    assert message.payload["data"] == answer["booking"]
    assert message.payload["timestamp"] == answer["booking"]["createdAt"]
    assert message.msg_id.startswith("msg_")
    (delivery,) = message.deliveries.all()
    assert (delivery.endpoint, delivery.state, delivery.attempts) == (endpoint, "pending", 0)


def test_message_ids_are_unique_and_in_the_order_written(alice, seat_ids, endpoint):
    for seat_id in seat_ids[:3]:
        assert post(alice, "/api/lock", {"seatId": seat_id}).status_code == 200
    ids = [message.msg_id for message in messages()]
    assert len(ids) == len(set(ids)) == 3
    assert ids == sorted(ids)  # the unique index grows at its end
    assert all(re.fullmatch(r"msg_[0-9a-f]{28}", msg_id) for msg_id in ids)
    batch = [webhooks.new_msg_id() for _ in range(10_000)]  # the same millisecond: the random part
    assert len(set(batch)) == len(batch)


def test_the_receiver_verifies_the_signature_and_a_tampered_body_fails(alice, seat_ids, endpoint, receiver):
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["delivered"]
    (got,) = receiver.wait_for(1, timeout=5)
    assert set(got.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert got.headers["content-type"] == "application/json"
    verified = Webhook(endpoint.secret).verify(got.body, got.headers)
    assert verified["type"] == "hold.created"
    assert verified["data"]["holder"] == "alice" and verified["data"]["seats"][0]["id"] == seat_ids[0]
    tampered = got.body.replace(b"alice", b"mallory")
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(tampered, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(got.body, got.headers)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert (
        delivery.delivered_at and delivery.last_duration_ms is not None and "answered 200" in delivery.response_excerpt
    )


def test_500_twice_then_200_arrives_on_the_third_try_with_the_same_id(alice, seat_ids, endpoint, receiver):
    receiver.answers = [500, 500, 200]
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["retry"]
    delivery = WebhookDelivery.objects.get()
    assert delivery.next_attempt_at - delivery.last_attempt_at == timedelta(seconds=5)  # the ladder's first step
    assert deliver_all() == []  # not due yet
    make_due()
    assert deliver_all() == ["retry"]
    delivery.refresh_from_db()
    assert delivery.next_attempt_at - delivery.last_attempt_at == timedelta(minutes=5)
    make_due()
    assert deliver_all() == ["delivered"]
    arrived = receiver.wait_for(3, timeout=5)
    assert len({got.headers["webhook-id"] for got in arrived}) == 1
    assert [json.loads(got.body) for got in arrived][0] == json.loads(arrived[2].body)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 3)


def test_after_the_last_retry_a_delivery_has_failed(alice, seat_ids, endpoint, receiver, settings):
    receiver.answers = [503]
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    outcomes = []
    for _ in range(len(settings.BOOKING_WEBHOOK_RETRY_SCHEDULE) + 1):
        make_due()
        outcomes += deliver_all()
    assert outcomes == ["retry"] * 7 + ["failed"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("failed", 8, 503)
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.failing_since is not None


def test_410_disables_the_endpoint(alice, seat_ids, endpoint, receiver):
    receiver.answers = [410]
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["gone"]
    endpoint.refresh_from_db()
    assert not endpoint.active and "410" in endpoint.disabled_reason
    assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200
    assert messages("hold.released") == []  # nobody receives it now


def test_an_endpoint_failing_for_five_days_is_disabled(alice, seat_ids, endpoint, receiver, caplog):
    receiver.answers = [500]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=Now() - timedelta(days=5, minutes=1))
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["retry"]
    endpoint.refresh_from_db()
    assert not endpoint.active and "5 days" in endpoint.disabled_reason
    assert "disabled" in caplog.text
    make_due()
    assert deliver_all() == ["endpoint disabled"]
    assert WebhookDelivery.objects.get().state == "failed"


def test_a_dead_receiver_is_retried_and_a_success_clears_its_failure(alice, seat_ids, endpoint, receiver):
    receiver.stop()
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["retry"]
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code is None and delivery.last_error.startswith("connection refused: ")
    receiver.start()
    make_due()
    assert deliver_all() == ["delivered"]
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(alice, seat_ids, endpoint, receiver, settings):
    settings.BOOKING_WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.delays = [1.0]
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["retry"]
    assert WebhookDelivery.objects.get().last_error.startswith("timed out: ")


def test_a_redirect_is_a_failed_attempt_and_a_long_answer_is_kept_as_an_excerpt(alice, seat_ids, endpoint, receiver):
    receiver.answers = [302]
    receiver.body = b"moved " * 20_000  # 120 kB: read to its end, the first 500 characters kept
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["retry"]
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code == 302 and delivery.response_excerpt == ("moved " * 84)[:500]
    assert len(receiver.received) == 1  # not followed


def test_a_rolled_back_change_writes_no_message(alice, seat_ids, endpoint, monkeypatch):
    save_audit = holds.save_audit

    def save_then_fail(audit):
        save_audit(audit)
        raise RuntimeError("a fault after the writes")

    monkeypatch.setattr(holds, "save_audit", save_then_fail)
    with pytest.raises(RuntimeError):
        services.seats_lock(seat_ids=seat_ids[:1], holder="alice")
    assert messages() == [] and not WebhookDelivery.objects.exists()


def test_no_endpoint_no_message(alice, seat_ids):
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert messages() == []


def test_an_endpoint_gets_only_its_types(alice, seat_ids, receiver):
    bookings_only = webhooks.webhook_endpoint_create(url=receiver.url, event_types=["booking.confirmed"])
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert post(alice, "/api/confirm", {"seatId": seat_ids[0]}).status_code == 200
    assert [m.type for m in messages()] == ["booking.confirmed"]
    assert [d.endpoint for d in WebhookDelivery.objects.all()] == [bookings_only]


def test_every_change_reports_its_type(alice, bob, box_office, seat_ids, endpoint):
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:3]}).status_code == 200
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:1]}).status_code == 200  # a renewal: no message
    assert post(alice, "/api/unlock", {"seatId": seat_ids[2]}).status_code == 200
    expire_hold(seat_ids[1])
    assert post(bob, "/api/lock", {"seatId": seat_ids[1]}).status_code == 200  # takes over alice's expired hold
    reference = post(alice, "/api/confirm", {"seatId": seat_ids[0]}).json()["booking"]["reference"]
    assert post(alice, f"/api/bookings/{reference}/cancel", {}).status_code == 200
    expire_hold(seat_ids[1])
    assert services.holds_release_expired() == 1  # the sweep
    services.seats_admin_book(seat_ids=seat_ids[5:6], holder="walk-in")
    services.seats_admin_cancel(seat_ids=seat_ids[5:6])
    assert post(box_office, "/api/lock", {"seatId": seat_ids[7], "userId": "phone"}).status_code == 200
    services.seats_admin_release(seat_ids=seat_ids[7:8])
    got = [(m.type, m.payload["data"].get("holder")) for m in messages()]
    assert got == [
        ("hold.created", "alice"),
        ("hold.released", "alice"),
        ("hold.expired", "alice"),
        ("hold.created", "bob"),
        ("booking.confirmed", "alice"),
        ("booking.cancelled", "alice"),
        ("hold.expired", "bob"),
        ("booking.confirmed", "walk-in"),
        ("booking.cancelled", "walk-in"),
        ("hold.created", "phone"),
        ("hold.released", "phone"),
    ]
    created = messages("hold.created")[0].payload["data"]
    assert created["event"] and [s["id"] for s in created["seats"]] == seat_ids[:3]
    cancelled = messages("booking.cancelled")[0].payload["data"]
    assert cancelled["reference"] == reference and cancelled["status"] == "cancelled"


def test_a_rotated_secret_signs_beside_the_old_one_until_it_expires(alice, seat_ids, endpoint, receiver):
    old = endpoint.secret
    new = webhooks.webhook_secret_rotate(endpoint)
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    deliver_all()
    (got,) = receiver.wait_for(1, timeout=5)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(got.body, got.headers)
    Webhook(old).verify(got.body, got.headers)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=Now() - timedelta(seconds=1))
    assert post(alice, "/api/unlock", {"seatId": seat_ids[0]}).status_code == 200
    deliver_all()
    second = receiver.wait_for(2, timeout=5)[1]
    Webhook(new).verify(second.body, second.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(second.body, second.headers)


def test_a_test_message_goes_to_one_endpoint(endpoint, receiver):
    other = webhooks.webhook_endpoint_create(url=receiver.url + "/other")
    message = webhooks.webhook_send_test(endpoint)
    assert [d.endpoint for d in message.deliveries.all()] == [endpoint]
    assert other.deliveries.count() == 0
    assert deliver_all() == ["delivered"]
    assert json.loads(receiver.wait_for(1, timeout=5)[0].body)["type"] == "webhook.test"


def test_resend_sends_a_delivered_message_again_with_its_id(alice, seat_ids, endpoint, receiver):
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    assert webhooks.webhook_deliveries_resend([delivery.pk]) == 1
    assert deliver_all() == ["delivered"]
    first, second = receiver.wait_for(2, timeout=5)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_delivered_messages_are_purged_after_the_retention(alice, seat_ids, endpoint, receiver, settings):
    settings.BOOKING_WEBHOOK_RETENTION_DAYS = 30
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:1]}).status_code == 200
    deliver_all()
    receiver.answers = [500]
    assert post(alice, "/api/unlock", {"seatIds": seat_ids[:1]}).status_code == 200  # not delivered yet
    WebhookMessage.objects.update(created_at=Now() - timedelta(days=31))
    from booking.tasks import purge_webhook_messages

    assert purge_webhook_messages() >= 1
    assert [m.type for m in messages()] == ["hold.released"]  # the undelivered one stays


def test_create_webhook_prints_the_secret_last(receiver, capsys):
    call_command("create_webhook", receiver.url, "--events", "booking.confirmed,booking.cancelled")
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    endpoint = WebhookEndpoint.objects.get()
    assert secret == endpoint.secret and secret.startswith("whsec_")
    assert endpoint.event_types == ["booking.cancelled", "booking.confirmed"]
    Webhook(secret)  # the library accepts it


@pytest.mark.parametrize("args", [["not a url"], ["http://x.example/h", "--events", "booking.exploded"]])
def test_create_webhook_refuses_bad_input(args):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_webhook", *args)
    assert not WebhookEndpoint.objects.exists()


def test_the_documented_receiver_verifies_what_we_send(endpoint, tmp_path):
    """docs/api.md's ten-line receiver, run as written: it accepts our message and refuses a forgery."""
    import re
    import subprocess
    import time

    import requests

    from .processes import BIN, REPO, free_port

    doc = (REPO / "docs" / "api.md").read_text()
    code = re.search(r"<!-- webhook-receiver -->\n```python\n(.*?)```", doc, re.DOTALL).group(1)
    script = tmp_path / "receiver.py"
    script.write_text(code)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=url)
    process = subprocess.Popen(
        [str(BIN / "python"), str(script)],
        env={"WEBHOOK_SECRET": endpoint.secret, "PORT": str(port), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                requests.get(url, timeout=0.2)
                break
            except requests.RequestException:
                time.sleep(0.05)
        message = webhooks.webhook_send_test(endpoint)
        assert deliver_all() == ["delivered"]
        assert WebhookDelivery.objects.get().last_status_code == 204
        forged = requests.post(
            url,
            data=b'{"type":"booking.confirmed"}',
            headers={"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
            timeout=5,
        )
        assert forged.status_code == 400
    finally:
        process.terminate()
        output = process.communicate(timeout=5)[0]
    assert f"{message.msg_id} webhook.test" in output


def test_two_rotations_at_once_keep_the_secret_the_first_handed_out(endpoint):
    stale = WebhookEndpoint.objects.get(pk=endpoint.pk)
    first = webhooks.webhook_secret_rotate(endpoint)
    second = webhooks.webhook_secret_rotate(stale)
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (second, first)


def test_a_resend_leaves_an_attempt_in_flight_alone_and_starts_a_failed_one_over(alice, seat_ids, endpoint):
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:1]}).status_code == 200
    assert post(alice, "/api/unlock", {"seatIds": seat_ids[:1]}).status_code == 200
    in_flight, failed = WebhookDelivery.objects.order_by("pk")
    WebhookDelivery.objects.filter(pk=in_flight.pk).update(leased_until=Now() + timedelta(seconds=30))
    WebhookDelivery.objects.filter(pk=failed.pk).update(state="failed", attempts=8, next_attempt_at=None)
    assert webhooks.webhook_deliveries_resend([in_flight.pk, failed.pk]) == 1
    failed.refresh_from_db()
    assert (failed.state, failed.attempts) == ("pending", 0)
    in_flight.refresh_from_db()
    assert in_flight.leased_until is not None and in_flight.state == "pending"


def test_an_endpoint_deleted_elsewhere_never_fails_a_booking(alice, seat_ids, endpoint, monkeypatch):
    """This process still lists the endpoint (another process deleted it a moment ago)."""
    assert webhooks.endpoints.subscribed("hold.created") == [endpoint.pk]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()  # an update()/delete() elsewhere: no signal here
    monkeypatch.setattr(webhooks.endpoints, "clear", lambda **kwargs: None)
    webhooks.endpoints._entries = [(endpoint.pk, [])]
    webhooks.endpoints._until = float("inf")
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert deliver_all() == ["endpoint deleted"]
    assert not WebhookDelivery.objects.exists()


@pytest.fixture
def fresh_http_session():
    """The attempts' connections, CA bundle and proxies are kept per thread, process and URL:
    start and end afresh."""

    def forget() -> None:
        webhooks._local.__dict__.clear()
        webhooks._proxy_for.cache_clear()
        webhooks._ca_bundle.cache_clear()

    forget()
    yield
    forget()


@pytest.mark.parametrize("bypassed", [False, True])
def test_attempts_go_through_the_environments_proxy_unless_no_proxy_names_the_host(
    alice, seat_ids, receiver, monkeypatch, fresh_http_session, bypassed
):
    # The receiver stands in for a forward proxy: a proxied request names the whole URL.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://ops:s%40cret@{receiver.url.split('/')[2]}")
    monkeypatch.setenv("NO_PROXY", "hooks.example.invalid" if bypassed else "localhost")
    monkeypatch.delenv("no_proxy", raising=False)
    webhooks.webhook_endpoint_create(url="http://hooks.example.invalid/in")
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    (outcome,) = deliver_all()
    if bypassed:  # straight to a host that does not resolve
        assert outcome != "delivered" and receiver.received == []
        assert "hooks.example.invalid" in WebhookDelivery.objects.get().last_error
    else:
        assert outcome == "delivered"
        (got,) = receiver.received
        assert got.path == "http://hooks.example.invalid/in" and got.headers["host"] == "hooks.example.invalid"
        assert got.headers["proxy-authorization"] == "Basic " + base64.b64encode(b"ops:s@cret").decode()


@pytest.fixture
def https_receiver():
    """A receiver behind a certificate for 127.0.0.1 from a CA of its own."""
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    started = Receiver(tls=tls)
    started.ca = ca
    yield started
    started.stop()


@pytest.mark.parametrize("trusted", [True, False])
def test_an_https_receiver_is_reached_when_its_ca_is_trusted(
    alice, seat_ids, https_receiver, monkeypatch, tmp_path, fresh_http_session, trusted
):
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    if trusted:  # as requests reads it; otherwise certifi's bundle, which does not hold this CA
        https_receiver.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    else:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    endpoint = webhooks.webhook_endpoint_create(url=https_receiver.url)
    assert https_receiver.url.startswith("https://")
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    (outcome,) = deliver_all()
    delivery = WebhookDelivery.objects.get()
    if trusted:
        assert outcome == "delivered" and delivery.last_status_code == 200, delivery.last_error
        (got,) = https_receiver.received
        Webhook(endpoint.secret).verify(got.body, got.headers)  # signed as over plain HTTP
    else:
        assert outcome == "retry" and https_receiver.received == []
        assert delivery.last_status_code is None and delivery.last_error.startswith("certificate not trusted: ")
