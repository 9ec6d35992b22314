"""The webhooks' admin: endpoints made by the service with their secret shown once (on the page
that answers, never in a cookie, never again), rotated, tested, disabled and enabled; deliveries
filtered, read, and resent through the service; pages in a bounded number of queries; and only
those who may change endpoints see a secret."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages.storage.cookie import CookieStorage
from django.db import connection
from django.db.models.functions import Now
from django.http import HttpRequest
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks import Webhook

from booking.admin import WebhookEndpointForm
from booking.models import WebhookDelivery, WebhookEndpoint, WebhookEventType, WebhookMessage
from booking.services import webhooks

from .webhook_receiver import Receiver

pytestmark = pytest.mark.django_db

ENDPOINTS_URL = "/admin/booking/webhookendpoint/"
DELIVERIES_URL = "/admin/booking/webhookdelivery/"
MESSAGES_URL = "/admin/booking/webhookmessage/"

#: As in test_admin.py: what the admin needs (session, user, count, rows, filters), far below
#: one query per row on a page of 100.
MAX_PAGE_QUERIES = 10


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("integrator", password="integrator-pw")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def receiver():
    started = Receiver()
    yield started
    started.stop()


@pytest.fixture
def endpoint(receiver):
    return webhooks.webhook_endpoint_create(url=receiver.url, description="The shop")


def message_with_delivery(endpoint, event_type="booking.confirmed", *, state="pending", attempts=0, **fields):
    message = WebhookMessage.objects.create(
        msg_id=webhooks.new_msg_id(),
        type=event_type,
        payload={"type": event_type, "timestamp": "2030-01-01T20:00:00Z", "data": {"reference": "7KQ2M9XD"}},
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, message=message, state=state, attempts=attempts, next_attempt_at=timezone.now(), **fields
    )
    return message, delivery


def run_action(client, url, action, ids, **extra):
    return client.post(url, {"action": action, "_selected_action": ids, "index": 0, "select_across": 0, **extra})


def confirm_action(client, url, action, ids, **extra):
    """The confirmation page's "Yes": the same action, with confirm=yes and no index."""
    return client.post(url, {"action": action, "_selected_action": ids, "select_across": 0, "confirm": "yes", **extra})


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def everything_the_browser_keeps(client) -> str:
    """Every cookie's value, and the messages cookie decoded (it is signed and compressed, not encrypted)."""
    texts = [morsel.value for morsel in client.cookies.values()]
    if "messages" in client.cookies:
        decoded = CookieStorage(HttpRequest())._decode(client.cookies["messages"].value) or []
        texts += [str(m) for m in decoded]
    return "\n".join(texts)


def what_the_session_keeps(client) -> str:
    return repr(dict(client.session.items()))


# --- Create: through the service, the secret shown once -------------------------------


def test_the_add_form_offers_the_types_as_checkboxes_without_webhook_test(admin_client):
    page = admin_client.get(f"{ENDPOINTS_URL}add/")
    assert page.status_code == 200
    for event_type in WebhookEventType.values:
        shown = f'type="checkbox" name="event_types" value="{event_type}"' in page.text
        assert shown == (event_type != "webhook.test"), event_type
    assert 'name="active"' not in page.text  # a new endpoint is active
    assert "_addanother" not in page.text and "_continue" not in page.text  # the next page shows the secret


def test_create_shows_the_secret_once_and_never_again(admin_client, receiver, monkeypatch):
    made = []
    real = webhooks.webhook_endpoint_create

    def spy(**kwargs):
        made.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(webhooks, "webhook_endpoint_create", spy)
    answer = admin_client.post(
        f"{ENDPOINTS_URL}add/",
        {
            "url": receiver.url,
            "description": "Box office shop",
            "event_types": ["booking.confirmed", "booking.cancelled"],
        },
    )

    endpoint = WebhookEndpoint.objects.get()
    assert made == [
        {
            "url": receiver.url,
            "event_types": ["booking.cancelled", "booking.confirmed"],
            "description": "Box office shop",
        }
    ]
    assert (endpoint.url, endpoint.description, endpoint.active) == (receiver.url, "Box office shop", True)
    assert endpoint.event_types == ["booking.cancelled", "booking.confirmed"]
    # The answer to the POST shows it, and nothing keeps it: no redirect, no cookie, no session, no log.
    assert answer.status_code == 200
    assert answer.templates[0].name == "admin/booking/webhookendpoint/secrets.html"
    assert endpoint.secret.startswith("whsec_") and answer.text.count(endpoint.secret) == 1
    assert "no-store" in answer["Cache-Control"]
    assert endpoint.secret not in everything_the_browser_keeps(admin_client)
    assert endpoint.secret not in what_the_session_keeps(admin_client)
    (entry,) = LogEntry.objects.filter(object_id=str(endpoint.pk))
    assert entry.action_flag == ADDITION and endpoint.secret not in entry.change_message

    change = admin_client.get(f"{ENDPOINTS_URL}{endpoint.pk}/change/")
    assert change.status_code == 200
    assert endpoint.secret not in change.text
    assert f"whsec_…{endpoint.secret[-4:]}" in change.text
    listing = admin_client.get(ENDPOINTS_URL)
    assert endpoint.secret not in listing.text
    assert endpoint.secret not in everything_the_browser_keeps(admin_client)


def test_the_secret_shown_verifies_what_the_endpoint_receives(admin_client, receiver):
    answer = admin_client.post(f"{ENDPOINTS_URL}add/", {"url": receiver.url, "description": ""})
    shown = answer.context["rows"][0]["secret"]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == []  # none ticked: every type
    run_action(admin_client, ENDPOINTS_URL, "send_test_messages", [endpoint.pk])
    assert webhooks.webhook_deliver(WebhookDelivery.objects.get().pk) == "delivered"
    (got,) = receiver.wait_for(1, timeout=5)
    assert Webhook(shown).verify(got.body, got.headers)["type"] == "webhook.test"


@pytest.mark.parametrize(
    "fields, error_field",
    [
        ({"url": "ftp://files.example.com/hooks"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://shop.example.com/hooks", "event_types": ["webhook.test"]}, "event_types"),
        ({"url": "https://shop.example.com/hooks", "event_types": ["seat.exploded"]}, "event_types"),
    ],
)
def test_the_add_form_refuses_what_is_not_an_http_receiver_or_a_type(admin_client, fields, error_field):
    page = admin_client.post(f"{ENDPOINTS_URL}add/", {"description": "", **fields})
    assert page.status_code == 200
    assert error_field in page.context["adminform"].form.errors
    assert not WebhookEndpoint.objects.exists()


# --- Rotate, test, disable, enable ----------------------------------------------------


def test_rotate_asks_then_shows_the_new_secret_once_and_keeps_the_old_one_signing(admin_client, endpoint):
    old = endpoint.secret
    change = admin_client.get(f"{ENDPOINTS_URL}{endpoint.pk}/change/")
    assert 'value="rotate_secrets"' in change.text

    asked = run_action(admin_client, ENDPOINTS_URL, "rotate_secrets", [endpoint.pk], _back=1)
    assert asked.status_code == 200 and "Rotate signing secrets" in asked.text
    assert "24 hours" in asked.text
    endpoint.refresh_from_db()
    assert endpoint.secret == old and old not in asked.text  # nothing yet; the current one is not shown

    before = timezone.now()
    answer = confirm_action(admin_client, ENDPOINTS_URL, "rotate_secrets", [endpoint.pk], _back=1)
    endpoint.refresh_from_db()
    assert answer.status_code == 200
    assert answer.templates[0].name == "admin/booking/webhookendpoint/secrets.html"
    assert endpoint.secret != old and answer.text.count(endpoint.secret) == 1 and old not in answer.text
    assert endpoint.previous_secret == old
    expiry = endpoint.previous_secret_expires_at - before
    assert timedelta(hours=23, minutes=59) < expiry < timedelta(hours=24, minutes=1)
    assert "no-store" in answer["Cache-Control"]
    assert endpoint.secret not in everything_the_browser_keeps(admin_client)
    assert endpoint.secret not in what_the_session_keeps(admin_client)

    change = admin_client.get(f"{ENDPOINTS_URL}{endpoint.pk}/change/")
    assert endpoint.secret not in change.text and old not in change.text
    assert f"whsec_…{endpoint.secret[-4:]}" in change.text
    assert f"whsec_…{old[-4:]}</code>: signs too" in change.text


def test_send_test_message_writes_one_webhook_test_delivery_to_that_endpoint(admin_client, endpoint, receiver):
    other = webhooks.webhook_endpoint_create(url=receiver.url + "/other")
    answer = run_action(admin_client, ENDPOINTS_URL, "send_test_messages", [endpoint.pk], _back=1)
    assert answer.status_code == 302 and answer["Location"] == f"{ENDPOINTS_URL}{endpoint.pk}/change/"
    (message,) = WebhookMessage.objects.all()
    assert message.type == "webhook.test" and message.payload["data"]["endpoint"] == endpoint.pk
    (delivery,) = message.deliveries.all()
    assert (delivery.endpoint, delivery.state) == (endpoint, "pending")
    assert not other.deliveries.exists()
    page = admin_client.get(answer["Location"])
    assert any(message.msg_id in text and "Test message sent" in text for text in messages_of(page))


def test_a_disabled_endpoint_is_not_sent_a_test(admin_client, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False, disabled_reason="it answered 410 Gone")
    answer = run_action(admin_client, ENDPOINTS_URL, "send_test_messages", [endpoint.pk])
    assert not WebhookMessage.objects.exists()
    assert any("is disabled" in text for text in messages_of(admin_client.get(answer["Location"])))


def test_disable_asks_first_then_enable_clears_why_and_since_when(admin_client, endpoint, superuser):
    asked = run_action(admin_client, ENDPOINTS_URL, "disable_endpoints", [endpoint.pk])
    assert asked.status_code == 200 and "Disable endpoints" in asked.text
    endpoint.refresh_from_db()
    assert endpoint.active
    confirm_action(admin_client, ENDPOINTS_URL, "disable_endpoints", [endpoint.pk])
    endpoint.refresh_from_db()
    assert not endpoint.active and endpoint.disabled_reason == "disabled in the admin by integrator"
    assert webhooks.endpoints.subscribed("booking.confirmed") == []  # this process's list forgot it at once

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=5))
    run_action(admin_client, ENDPOINTS_URL, "enable_endpoints", [endpoint.pk])
    endpoint.refresh_from_db()
    assert (endpoint.active, endpoint.disabled_reason, endpoint.failing_since) == (True, "", None)
    assert webhooks.endpoints.subscribed("booking.confirmed") == [endpoint.pk]


def test_re_activating_in_the_change_form_clears_the_disabled_reason(admin_client, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        active=False, disabled_reason="it answered 410 Gone", failing_since=timezone.now() - timedelta(days=1)
    )
    page = admin_client.get(f"{ENDPOINTS_URL}{endpoint.pk}/change/")
    assert "it answered 410 Gone" in page.text and 'value="enable_endpoints"' in page.text
    answer = admin_client.post(
        f"{ENDPOINTS_URL}{endpoint.pk}/change/",
        {"url": endpoint.url, "description": "The shop", "event_types": ["booking.confirmed"], "active": "on"},
    )
    assert answer.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.active, endpoint.disabled_reason, endpoint.failing_since) == (True, "", None)
    assert endpoint.event_types == ["booking.confirmed"]


def test_the_change_form_writes_only_what_it_changed(admin_client, endpoint, monkeypatch):
    """A rotation and a failure the worker records while the form is saved (after the admin read
    the endpoint) stay."""
    rotated = []
    clean = WebhookEndpointForm.clean

    def meanwhile(form):
        rotated.append(webhooks.webhook_secret_rotate(WebhookEndpoint.objects.get(pk=endpoint.pk)))
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=Now())
        return clean(form)

    monkeypatch.setattr(WebhookEndpointForm, "clean", meanwhile)
    answer = admin_client.post(
        f"{ENDPOINTS_URL}{endpoint.pk}/change/", {"url": endpoint.url, "description": "Renamed", "active": "on"}
    )
    assert answer.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.description, endpoint.secret, endpoint.event_types) == ("Renamed", rotated[0], [])
    assert endpoint.failing_since is not None


def test_an_endpoint_subscribed_to_webhook_test_alone_keeps_it_when_edited(admin_client, receiver):
    endpoint = webhooks.webhook_endpoint_create(url=receiver.url, event_types=["webhook.test"])
    page = admin_client.get(f"{ENDPOINTS_URL}{endpoint.pk}/change/")
    form = page.context["adminform"].form
    assert form["event_types"].value() == ["webhook.test"]
    assert 'name="event_types" value="webhook.test"' in page.text
    answer = admin_client.post(
        f"{ENDPOINTS_URL}{endpoint.pk}/change/",
        {"url": endpoint.url, "description": "Renamed", "event_types": ["webhook.test"], "active": "on"},
    )
    assert answer.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.description, endpoint.event_types) == ("Renamed", ["webhook.test"])


def test_deleting_an_endpoint_counts_its_deliveries_and_deletes_them(admin_client, endpoint, receiver):
    other = webhooks.webhook_endpoint_create(url=receiver.url + "/other")
    for _ in range(3):
        message, _ = message_with_delivery(endpoint)
        WebhookDelivery.objects.create(endpoint=other, message=message)
    confirm = admin_client.get(f"{ENDPOINTS_URL}{endpoint.pk}/delete/")
    assert confirm.status_code == 200 and "3 deliveries (3 pending, 0 failed)" in confirm.text
    assert admin_client.post(f"{ENDPOINTS_URL}{endpoint.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookDelivery.objects.filter(endpoint_id=endpoint.pk).exists()
    assert WebhookMessage.objects.count() == 3 and other.deliveries.count() == 3

    asked = run_action(admin_client, ENDPOINTS_URL, "delete_selected", [other.pk])
    assert asked.status_code == 200 and "3 deliveries (3 pending, 0 failed)" in asked.text
    admin_client.post(ENDPOINTS_URL, {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"})
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


# --- The lists ----------------------------------------------------------------------


def test_endpoint_list_shows_types_state_and_counts_in_a_bounded_number_of_queries(
    admin_client, receiver, django_assert_max_num_queries
):
    endpoints = [
        webhooks.webhook_endpoint_create(url=f"{receiver.url}/{i}", event_types=["hold.created"] if i else [])
        for i in range(20)
    ]
    message_with_delivery(
        endpoints[0], state="failed", attempts=8, last_error="connection refused: Failed to connect to 127.0.0.1 port 9"
    )
    message_with_delivery(endpoints[0])
    message_with_delivery(endpoints[0])
    WebhookEndpoint.objects.filter(pk=endpoints[1].pk).update(active=False, disabled_reason="it answered 410 Gone")
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        page = admin_client.get(ENDPOINTS_URL)
    assert page.status_code == 200
    first = page.context["cl"].result_list.get(pk=endpoints[0].pk)
    assert (first.pending_n, first.failed_n) == (2, 1)
    assert f"endpoint__id__exact={endpoints[0].pk}&amp;outcome=pending" in page.text
    assert "it answered 410 Gone" in page.text and ">all<" in page.text and "hold.created" in page.text
    assert not any(endpoint.secret in page.text for endpoint in endpoints)


def listed_ids(page) -> set[str]:
    return {delivery.message.msg_id for delivery in page.context["cl"].result_list}


def test_deliveries_are_filtered_by_endpoint_type_and_outcome(admin_client, endpoint, receiver):
    other = webhooks.webhook_endpoint_create(url=receiver.url + "/other")
    confirmed, _ = message_with_delivery(endpoint, "booking.confirmed", state="delivered", attempts=1)
    held, _ = message_with_delivery(endpoint, "hold.created", state="failed", attempts=8)
    retrying, _ = message_with_delivery(endpoint, "hold.created", attempts=2, last_status_code=500)
    elsewhere, _ = message_with_delivery(other, "booking.confirmed")
    everything = {m.msg_id for m in (confirmed, held, retrying, elsewhere)}

    page = admin_client.get(DELIVERIES_URL)
    assert page.status_code == 200 and listed_ids(page) == everything
    assert listed_ids(admin_client.get(DELIVERIES_URL, {"endpoint__id__exact": other.pk})) == {elsewhere.msg_id}
    by_type = admin_client.get(DELIVERIES_URL, {"message__type__exact": "hold.created"})
    assert listed_ids(by_type) == {held.msg_id, retrying.msg_id}
    assert listed_ids(admin_client.get(DELIVERIES_URL, {"outcome": "failed"})) == {held.msg_id}
    assert listed_ids(admin_client.get(DELIVERIES_URL, {"outcome": "delivered"})) == {confirmed.msg_id}
    assert listed_ids(admin_client.get(DELIVERIES_URL, {"outcome": "pending"})) == {retrying.msg_id, elsewhere.msg_id}
    assert listed_ids(admin_client.get(DELIVERIES_URL, {"outcome": "retrying"})) == {retrying.msg_id}
    both = admin_client.get(
        DELIVERIES_URL, {"endpoint__id__exact": endpoint.pk, "message__type__exact": "booking.confirmed"}
    )
    assert listed_ids(both) == {confirmed.msg_id}
    assert listed_ids(admin_client.get(DELIVERIES_URL, {"q": held.msg_id})) == {held.msg_id}
    assert listed_ids(admin_client.get(DELIVERIES_URL, {"q": "/other"})) == {elsewhere.msg_id}
    for outcome in ("pending", "retrying", "delivered", "failed"):
        assert f">{outcome}</span>" in page.text


def test_a_message_is_found_by_its_exact_id_through_its_unique_index(admin_client, endpoint):
    wanted, _ = message_with_delivery(endpoint)
    message_with_delivery(endpoint)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(MESSAGES_URL, {"q": wanted.msg_id})
    assert [message.msg_id for message in page.context["cl"].result_list] == [wanted.msg_id]
    searches = [q["sql"] for q in queries if '"booking_webhookmessage"."msg_id" = ' in q["sql"]]
    assert searches and not any("UPPER" in q["sql"] for q in queries)  # exact: the unique index serves it
    assert admin_client.get(MESSAGES_URL, {"q": wanted.msg_id[:-1]}).context["cl"].result_count == 0


def test_delivery_list_is_a_bounded_number_of_queries(admin_client, endpoint, receiver, django_assert_max_num_queries):
    others = [webhooks.webhook_endpoint_create(url=f"{receiver.url}/{i}") for i in range(5)]
    for i in range(100):
        message_with_delivery(
            [endpoint, *others][i % 6], WebhookEventType.values[i % 5], state=["pending", "failed"][i % 2]
        )
    for params in ({}, {"outcome": "failed"}, {"message__type__exact": "hold.created"}, {"q": "127.0.0.1"}):
        with django_assert_max_num_queries(MAX_PAGE_QUERIES):
            page = admin_client.get(DELIVERIES_URL, params)
        assert page.status_code == 200 and len(page.context["cl"].result_list) > 0
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        assert admin_client.get(MESSAGES_URL).status_code == 200


def test_resend_puts_a_failed_delivery_back_to_pending_through_the_service(admin_client, endpoint, monkeypatch):
    _, failed = message_with_delivery(endpoint, state="failed", attempts=8, last_status_code=503)
    _, delivered = message_with_delivery(endpoint, state="delivered", attempts=1)
    WebhookDelivery.objects.filter(pk=failed.pk).update(next_attempt_at=None)
    calls = []
    real = webhooks.webhook_deliveries_resend
    monkeypatch.setattr(webhooks, "webhook_deliveries_resend", lambda ids: calls.append(list(ids)) or real(ids))

    answer = run_action(admin_client, DELIVERIES_URL, "resend_deliveries", [failed.pk])
    assert answer.status_code == 302
    assert calls == [[failed.pk]]
    failed.refresh_from_db()
    assert failed.state == "pending" and failed.next_attempt_at <= timezone.now() and failed.leased_until is None
    delivered.refresh_from_db()
    assert delivered.state == "delivered"
    assert "1 delivery sent again now" in messages_of(admin_client.get(answer["Location"]))[0]


def test_deliveries_to_a_disabled_endpoint_are_not_resent(admin_client, endpoint):
    _, failed = message_with_delivery(endpoint, state="failed", attempts=1, last_error="endpoint disabled: gone")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    answer = run_action(admin_client, DELIVERIES_URL, "resend_deliveries", [failed.pk])
    failed.refresh_from_db()
    assert failed.state == "failed"
    assert any("endpoint is disabled" in text for text in messages_of(admin_client.get(answer["Location"])))


def test_a_delivery_page_shows_its_payload_headers_and_response_read_only(
    admin_client, endpoint, django_assert_max_num_queries
):
    message, delivery = message_with_delivery(
        endpoint, state="failed", attempts=8, last_status_code=500, response_excerpt="<h1>Oops</h1>"
    )
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        page = admin_client.get(f"{DELIVERIES_URL}{delivery.pk}/change/")
    assert page.status_code == 200
    assert "<pre" in page.text and "{\n  &quot;" in page.text  # indented, escaped
    assert "\n  &quot;type&quot;: &quot;booking.confirmed&quot;" in page.text
    assert "&quot;reference&quot;: &quot;7KQ2M9XD&quot;" in page.text
    assert f"webhook-id: {message.msg_id}" in page.text and "webhook-signature: v1,… " in page.text
    assert endpoint.secret not in page.text
    assert "&lt;h1&gt;Oops&lt;/h1&gt;" in page.text
    assert 'name="_save"' not in page.text and "/delete/" not in page.text
    assert 'value="resend_deliveries"' in page.text
    back = run_action(admin_client, DELIVERIES_URL, "resend_deliveries", [delivery.pk], _back=1)
    assert back["Location"] == f"{DELIVERIES_URL}{delivery.pk}/change/"
    assert admin_client.get(f"{DELIVERIES_URL}add/").status_code == 403


def test_a_message_page_shows_its_body_and_each_endpoints_delivery(admin_client, endpoint, receiver):
    other = webhooks.webhook_endpoint_create(url=receiver.url + "/other")
    message, first = message_with_delivery(endpoint, state="delivered", attempts=1)
    WebhookDelivery.objects.create(endpoint=other, message=message, state="failed", attempts=8)
    page = admin_client.get(f"{MESSAGES_URL}{message.pk}/change/")
    assert page.status_code == 200
    assert "&quot;reference&quot;: &quot;7KQ2M9XD&quot;" in page.text
    assert endpoint.url in page.text and other.url in page.text
    assert ">delivered</span>" in page.text and ">failed</span>" in page.text
    listing = admin_client.get(MESSAGES_URL)
    assert "1 delivered, 0 pending, 1 failed" in listing.text


# --- Who may do what -----------------------------------------------------------------


@pytest.fixture
def viewer_client(client, make_user):
    """Staff who may look at endpoints and deliveries, and change neither."""
    viewer = make_user("viewer", staff=True, password="pw")
    viewer.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="booking",
            codename__in=["view_webhookendpoint", "view_webhookdelivery", "view_webhookmessage"],
        )
    )
    client.force_login(get_user_model().objects.get(pk=viewer.pk))
    return client


def test_who_may_only_view_sees_no_secret_and_cannot_rotate_test_or_resend(viewer_client, endpoint):
    _, failed = message_with_delivery(endpoint, state="failed", attempts=8)
    old = endpoint.secret
    listing = viewer_client.get(ENDPOINTS_URL)
    assert listing.status_code == 200 and "rotate_secrets" not in listing.text
    change = viewer_client.get(f"{ENDPOINTS_URL}{endpoint.pk}/change/")
    assert change.status_code == 200 and old not in change.text
    assert "Rotate secret" not in change.text and "Send a test message" not in change.text
    assert viewer_client.get(f"{ENDPOINTS_URL}add/").status_code == 403
    run_action(viewer_client, ENDPOINTS_URL, "rotate_secrets", [endpoint.pk])
    answer = confirm_action(viewer_client, ENDPOINTS_URL, "rotate_secrets", [endpoint.pk])
    endpoint.refresh_from_db()
    assert endpoint.secret == old and endpoint.secret not in answer.content.decode()
    run_action(viewer_client, ENDPOINTS_URL, "send_test_messages", [endpoint.pk])
    assert not WebhookMessage.objects.filter(type="webhook.test").exists()

    deliveries = viewer_client.get(DELIVERIES_URL)
    assert deliveries.status_code == 200 and "resend_deliveries" not in deliveries.text
    run_action(viewer_client, DELIVERIES_URL, "resend_deliveries", [failed.pk])
    failed.refresh_from_db()
    assert failed.state == "failed"


def test_adding_an_endpoint_takes_the_right_to_change_them_too(client, make_user, receiver):
    """The page after the create shows the secret: the right to add alone is not enough."""
    adder = make_user("adder", staff=True, password="pw")
    adder.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="booking", codename__in=["view_webhookendpoint", "add_webhookendpoint"]
        )
    )
    client.force_login(get_user_model().objects.get(pk=adder.pk))
    assert client.get(f"{ENDPOINTS_URL}add/").status_code == 403
    assert client.post(f"{ENDPOINTS_URL}add/", {"url": receiver.url}).status_code == 403
    assert not WebhookEndpoint.objects.exists()


def test_box_office_staff_do_not_see_webhooks(client, make_user, endpoint):
    """create_api_user --staff grants nothing of webhooks: an endpoint's URL can be its credential."""
    clerk = make_user("clerk", staff=True, password="pw")
    for codename in ("view_webhookendpoint", "view_webhookdelivery", "view_webhookmessage"):
        assert not clerk.has_perm(f"booking.{codename}"), codename
    client.force_login(clerk)
    for url in (ENDPOINTS_URL, DELIVERIES_URL, MESSAGES_URL):
        assert client.get(url).status_code == 403, url
    assert endpoint.url not in client.get("/admin/").text
