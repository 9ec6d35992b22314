"""Webhooks: a transactional outbox, signed as Standard Webhooks, delivered with retries.

A service that changes seats calls :func:`webhooks_emit` inside its own
transaction: the message and one delivery per subscribed endpoint are written
with the change, so a committed change always has its message and a rolled-back
one never does. After commit the process's sender (``booking/webhook_sender.py``)
hands the new deliveries to the webhooks worker, gathered; beat's
:func:`webhooks_deliver_due` sends whatever is due (a send that was lost, a
worker that was down, the retries). :func:`webhooks_deliver` makes an attempt
at each of a batch: it leases them (a worker killed mid-attempt lets them go
when the lease ends), POSTs each signed message, and records the outcomes.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import certifi
import orjson
import pycurl
import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, PositiveIntegerField, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from ..models import WebhookDelivery, WebhookEndpoint, WebhookEventType, WebhookMessage
from ..representations import iso, seat_payloads, seat_values
from ..webhook_sender import send_now, sender
from . import sql

logger = logging.getLogger("booking.webhooks")

#: An endpoint that has failed every attempt for this long is disabled.
DISABLE_AFTER = timedelta(days=5)
#: Due deliveries sent per beat run, oldest first (the rest go on the next run).
DUE_BATCH = 500
#: libcurl's error codes an attempt names in its delivery's last error.
_CURL_ERRORS = {
    pycurl.E_COULDNT_RESOLVE_HOST: "cannot resolve host",
    pycurl.E_COULDNT_RESOLVE_PROXY: "cannot resolve proxy",
    pycurl.E_COULDNT_CONNECT: "connection refused",
    pycurl.E_OPERATION_TIMEDOUT: "timed out",
    pycurl.E_SSL_CONNECT_ERROR: "TLS error",
    pycurl.E_PEER_FAILED_VERIFICATION: "certificate not trusted",
    pycurl.E_GOT_NOTHING: "empty answer",
    pycurl.E_RECV_ERROR: "connection reset",
    pycurl.E_SEND_ERROR: "connection reset",
    pycurl.E_UNSUPPORTED_PROTOCOL: "unsupported URL",
    pycurl.E_URL_MALFORMAT: "malformed URL",
}
#: How often a batch of deliveries records the ones delivered so far.
RECORD_SECONDS = 1.0


def retry_schedule() -> list[timedelta]:
    """The waits after each failed attempt (BOOKING_WEBHOOK_RETRY_SCHEDULE: by default 5 s, 5 min,
    30 min, 2 h, 5 h, 10 h, 10 h, Standard Webhooks' ladder); after the last, it has failed."""
    return [timedelta(seconds=seconds) for seconds in settings.BOOKING_WEBHOOK_RETRY_SCHEDULE]


def timeout_seconds() -> float:
    """How long a receiver has to answer (BOOKING_WEBHOOK_TIMEOUT_SECONDS, 15)."""
    return settings.BOOKING_WEBHOOK_TIMEOUT_SECONDS


def lease() -> timedelta:
    """How long an attempt holds its delivery: longer than any attempt, and not much longer, as a
    worker killed mid-attempt leaves it held until then."""
    return timedelta(seconds=2 * timeout_seconds() + 5)


Delivery = WebhookDelivery.State


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes them: ``whsec_`` and 24 random bytes in base64."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_msg_id() -> str:
    """``msg_``, the time in milliseconds (12 hex digits) and 8 random bytes: unique, and in the
    order written, so the unique index on it grows at its end (a random id lands every insert
    on a leaf page of its own, each one read and written back, most after every checkpoint as
    a full page)."""
    return f"msg_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


# --- Which endpoints receive a type ----------------------------------------------


class _Endpoints:
    """The active endpoints and their types, kept per process for a moment (every seat write asks).

    A change in this process clears it at once (signals, booking/apps.py); one in
    another process reaches it within BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[int, list[str]]] | None = None
        self._until = 0.0

    def subscribed(self, event_type: str) -> list[int]:
        entries, until = self._entries, self._until
        if entries is None or until <= time.monotonic():
            entries = [
                (pk, types or [])
                for pk, types in WebhookEndpoint.objects.filter(active=True).values_list("pk", "event_types")
            ]
            with self._lock:
                self._entries = entries
                self._until = time.monotonic() + settings.BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS
        return [
            pk for pk, types in entries if (not types and event_type != WebhookEventType.TEST) or event_type in types
        ]

    def clear(self, **kwargs: Any) -> None:
        with self._lock:
            self._entries = None


endpoints = _Endpoints()


# --- The outbox ------------------------------------------------------------------


def webhooks_emit(
    event_type: str, data: dict[str, Any], *, at: datetime | None = None, endpoint_ids: Sequence[int] | None = None
) -> WebhookMessage | None:
    """Write the message of a change and its deliveries, in the caller's transaction; send after commit.

    ``at``: when the change happened (the database's clock, where the caller has
    it). Nothing is written when no endpoint receives the type.
    """
    written = _write([(event_type, data)], at=at, endpoint_ids=endpoint_ids)
    return written[0] if written else None


def _write(
    messages: list[tuple[str, dict[str, Any]]], *, at: datetime | None, endpoint_ids: Sequence[int] | None = None
) -> list[WebhookMessage]:
    """The messages and their deliveries (one statement on PostgreSQL, two INSERTs elsewhere), and
    one send per endpoint after commit."""
    targets = {
        event_type: list(endpoint_ids) if endpoint_ids is not None else endpoints.subscribed(event_type)
        for event_type, _ in messages
    }
    messages = [(event_type, data) for event_type, data in messages if targets[event_type]]
    if not messages:
        return []
    when = at or timezone.now()
    written = [
        WebhookMessage(msg_id=new_msg_id(), type=t, payload={"type": t, "timestamp": iso(when), "data": data})
        for t, data in messages
    ]
    insert = _insert_in_one_statement if connection.vendor == "postgresql" else _insert_with_orm
    by_endpoint: dict[int, list[int]] = {}
    with transaction.atomic(savepoint=False):  # the caller's transaction (no statement), or one of its own
        for delivery_id, endpoint_id in insert(written, targets, when):
            by_endpoint.setdefault(endpoint_id, []).append(delivery_id)
    transaction.on_commit(lambda: sender.submit(by_endpoint))
    return written


def _insert_in_one_statement(
    written: list[WebhookMessage], targets: dict[str, list[int]], when: datetime
) -> list[tuple[int, int]]:
    return sql.insert_webhook_outbox(
        written,
        [(message.msg_id, pk) for message in written for pk in targets[message.type]],
        next_attempt_at=when,
    )


def _insert_with_orm(
    written: list[WebhookMessage], targets: dict[str, list[int]], when: datetime
) -> list[tuple[int, int]]:
    WebhookMessage.objects.bulk_create(written)
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint_id=pk, message=message, next_attempt_at=when)
        for message in written
        for pk in targets[message.type]
    )
    return [(delivery.pk, delivery.endpoint_id) for delivery in deliveries]


def webhooks_emit_holds(
    event_type: str, rows: Sequence[dict[str, Any]], *, holders: Sequence[str], at: datetime | None = None
) -> None:
    """A hold message per event and holder: ``{"holder", "event", "seats"}``, the seats as
    the change left them (``rows`` read as dicts, ``holders[i]`` the holder of ``rows[i]``)."""
    if not rows or not endpoints.subscribed(event_type):
        return
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row, holder in zip(rows, holders, strict=True):
        groups.setdefault((row["event_id"], holder), []).append(row)
    _write(
        [
            (event_type, {"holder": holder, "event": event_id, "seats": seat_payloads(map(seat_values, seats))})
            for (event_id, holder), seats in groups.items()
        ],
        at=at,
    )


def webhooks_deliver_due(*, limit: int = DUE_BATCH) -> int:
    """Send every delivery that is due and not in flight to a worker; how many."""
    due = list(
        WebhookDelivery.objects.filter(state=Delivery.PENDING, next_attempt_at__lte=Now())
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=Now()))
        .order_by("next_attempt_at", "pk")
        .values_list("endpoint_id", "pk")[:limit]
    )
    by_endpoint: dict[int, list[int]] = {}
    for endpoint_id, pk in due:
        by_endpoint.setdefault(endpoint_id, []).append(pk)
    send_now(by_endpoint)
    return len(due)


# --- One attempt -----------------------------------------------------------------


def message_headers(msg_id: str, sent_at: datetime) -> dict[str, str]:
    """An attempt's headers but its signature."""
    return {
        "content-type": "application/json",
        "user-agent": "seat-booking-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
    }


def signatures(endpoint: WebhookEndpoint, msg_id: str, timestamp: datetime, body: str, *, now: datetime) -> str:
    """``webhook-signature``: one ``v1,…`` per valid secret (two during a rotation), space-separated."""
    secrets_ = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        secrets_.append(endpoint.previous_secret)
    return " ".join(_signer(secret).sign(msg_id, timestamp, body) for secret in secrets_)


@functools.lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    """The signer of a secret, made once per process (it decodes the secret), not per attempt."""
    return Webhook(secret)


_local = threading.local()

#: What an attempt keeps of a receiver's answer (its excerpt is the first 500 characters of it).
ANSWER_BYTES = 2000


def parallel_attempts() -> int:
    """How many attempts of a batch are in flight at once (BOOKING_WEBHOOK_PARALLEL_ATTEMPTS, 8)."""
    return max(1, settings.BOOKING_WEBHOOK_PARALLEL_ATTEMPTS)


def _curls(count: int) -> tuple[pycurl.CurlMulti, list[pycurl.Curl]]:
    """This thread's libcurl multi handle and ``count`` of its easy handles: the multi handle keeps
    receivers' connections alive from one attempt to the next (straight or through a proxy).

    libcurl (pycurl) rather than urllib3: an attempt cost the worker 230 µs of CPU through urllib3
    and http.client, 50 µs through libcurl (measured: docs/benchmark.md), and a booking makes two.
    """
    if getattr(_local, "multi", None) is None:
        _local.multi, _local.curls = pycurl.CurlMulti(), []
    multi: pycurl.CurlMulti = _local.multi
    curls: list[pycurl.Curl] = _local.curls
    while len(curls) < count:
        curls.append(pycurl.Curl())
    return multi, curls[:count]


class Answered(NamedTuple):
    """What came of one POST: the status and the answer's first ``ANSWER_BYTES`` decoded, or the
    error of one that got no answer (refused, timed out, a bad URL…); how long it took."""

    status: int | None
    excerpt: str
    error: str
    duration_ms: int


def _post_all(posts: Sequence[tuple[str, bytes, dict[str, str]]]) -> list[Answered]:
    """POST each ``(url, body, headers)``, all at once; what came of each, in order.

    At once rather than one after the other: the worker and the receiver then wake once for
    several answers, not once for each (measured: about a third of the CPU a message, for both)."""
    multi, curls = _curls(len(posts))
    answers = []
    for curl, (url, body, headers) in zip(curls, posts, strict=True):
        answers.append(_prepare(curl, url, body, headers))
        multi.add_handle(curl)
    errors: dict[int, str] = {}
    try:
        active = len(curls)
        while active:
            _, active = multi.perform()
            if active:
                multi.select(1.0)  # at most a second: libcurl's own timeouts end each transfer
        queued = 1
        while queued:
            queued, _, failed = multi.info_read()
            errors.update({id(curl): f"{_CURL_ERRORS.get(code, 'error')}: {why}"[:300] for curl, code, why in failed})
    finally:
        for curl in curls:
            multi.remove_handle(curl)
    return [
        Answered(
            status=None if id(curl) in errors else curl.getinfo(pycurl.RESPONSE_CODE),
            excerpt="" if id(curl) in errors else bytes(answer).decode("utf-8", "replace")[:500],
            error=errors.get(id(curl), ""),
            duration_ms=int(curl.getinfo(pycurl.TOTAL_TIME) * 1000),
        )
        for curl, answer in zip(curls, answers, strict=True)
    ]


def _prepare(curl: pycurl.Curl, url: str, body: bytes, headers: dict[str, str]) -> bytearray:
    """Set ``curl`` to POST ``body`` to ``url``; the buffer the answer's start goes into."""
    answer = bytearray()

    def keep(chunk: bytes) -> None:  # the rest of a long answer is read and dropped
        if len(answer) < ANSWER_BYTES:
            answer.extend(chunk[: ANSWER_BYTES - len(answer)])

    curl.reset()  # no option of the last attempt carries over; its connections stay
    curl.setopt(pycurl.URL, url)
    # http and https only, redirects not followed (a receiver that moved answers 3xx: a failure).
    curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    curl.setopt(pycurl.FOLLOWLOCATION, False)
    curl.setopt(pycurl.POST, True)
    curl.setopt(pycurl.POSTFIELDS, body)
    # "Expect:" off: a body is sent at once, without waiting for a "100 Continue".
    curl.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()] + ["Expect:"])
    curl.setopt(pycurl.WRITEFUNCTION, keep)
    curl.setopt(pycurl.TIMEOUT_MS, int(timeout_seconds() * 1000))
    curl.setopt(pycurl.NOSIGNAL, True)  # threads: no SIGALRM for the timeouts
    curl.setopt(pycurl.CAINFO, _ca_bundle())
    # The proxy as requests would choose it, or none: "" also stops libcurl reading the environment.
    curl.setopt(pycurl.PROXY, _proxy_for(url) or "")
    return answer


@functools.cache
def _ca_bundle() -> str:
    """The CA certificates receivers' certificates are checked against: REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE as requests reads them, else certifi's. Read once: a running process's
    environment does not change. The server's ``~/.netrc`` is never read (libcurl's default), so
    a receiver is never sent credentials of ours."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()


@functools.lru_cache(maxsize=1024)
def _proxy_for(url: str) -> str | None:
    """The proxy the environment gives this URL (HTTP(S)_PROXY, ALL_PROXY; none if NO_PROXY names
    its host), as requests would choose it; credentials in it (``http://user:pa%40ss@proxy:3128``)
    are sent as Proxy-Authorization."""
    proxies = requests.utils.get_environ_proxies(url)
    return proxies.get(urllib.parse.urlsplit(url).scheme or "http") or proxies.get("all")


@dataclass(slots=True)
class Leased:
    """A delivery held for an attempt: what the attempt sends, and what its outcome needs."""

    pk: int
    endpoint: WebhookEndpoint
    attempts: int  # before this one
    msg_id: str
    body: str  # the message's payload as JSON: what is signed and sent


def webhook_deliver(delivery_id: int) -> str:
    """One attempt at a delivery, if it is due and no other attempt holds it; the outcome."""
    return webhooks_deliver([delivery_id])[0]


def webhooks_deliver(delivery_ids: Sequence[int]) -> list[str]:
    """An attempt at each delivery that is due and that no other attempt holds (one endpoint's,
    ``parallel_attempts()`` at once on kept-alive connections); each one's outcome, in order.

    The batch costs the database the same few statements however many it holds (not three per
    delivery): the lease, which reads them too, their endpoints, and the delivered ones'
    outcomes in one ``UPDATE``. A retry, a 410 or a failure is recorded as it happens."""
    ids = list(dict.fromkeys(delivery_ids))
    outcomes = dict.fromkeys(ids, "not due")
    leased = _lease(ids)
    if len(leased) < len(ids):
        # Deliveries to an endpoint deleted since they were written (the lease skips them).
        missing = set(ids) - {delivery.pk for delivery in leased}
        orphans = WebhookDelivery.objects.filter(pk__in=missing).exclude(
            endpoint_id__in=WebhookEndpoint.objects.values("pk")
        )
        gone = list(orphans.values_list("pk", flat=True))
        if gone:
            WebhookDelivery.objects.filter(pk__in=gone).delete()
            outcomes.update(dict.fromkeys(gone, "endpoint deleted"))
    delivered: list[tuple[Leased, int, str, int]] = []
    leased_at = recorded_at = time.monotonic()
    width = parallel_attempts()
    for position in range(0, len(leased), width):
        if time.monotonic() - leased_at > lease().total_seconds() / 2:  # slow receivers: keep the rest held
            rest = [later.pk for later in leased[position:]]
            WebhookDelivery.objects.filter(pk__in=rest).update(leased_until=Now() + lease())
            leased_at = time.monotonic()
        outcomes.update(_attempt_all(leased[position : position + width], delivered))
        if delivered and time.monotonic() - recorded_at > RECORD_SECONDS:
            # A slow batch records as it goes: the log stays current, and a worker killed
            # mid-batch sends again only what it delivered in its last second.
            _record_delivered(delivered)
            delivered, recorded_at = [], time.monotonic()
    _record_delivered(delivered)
    return [outcomes[pk] for pk in delivery_ids]


def _lease(ids: list[int]) -> list[Leased]:
    """Hold the due deliveries among ``ids`` for an attempt each, read with their endpoint and
    message (a worker killed mid-attempt lets them go when the lease ends); in id order. Rows
    another worker is leasing are skipped, not waited for, and so are deliveries whose endpoint
    is gone."""
    if not ids:
        return []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            rows = [
                # The body compact, as orjson writes it (the stored text has jsonb's spaces).
                (pk, endpoint_id, attempts, msg_id, orjson.dumps(orjson.loads(payload)).decode())
                for pk, endpoint_id, attempts, msg_id, payload in sql.lease_webhook_deliveries(ids, lease=lease())
            ]
        else:
            rows = _lease_with_orm(ids)
    # One endpoint object per endpoint: one a 410 disables is disabled for the rest of the batch.
    endpoints_by_pk = WebhookEndpoint.objects.in_bulk({endpoint_id for _, endpoint_id, *_ in rows})
    return [
        Leased(pk, endpoints_by_pk[endpoint_id], attempts, msg_id, body)
        for pk, endpoint_id, attempts, msg_id, body in rows
        if endpoint_id in endpoints_by_pk  # deleted since the lease: no attempt (a later one drops it)
    ]


def _lease_with_orm(ids: list[int]) -> list[tuple[int, int, int, str, str]]:
    """The lease where there is no ``sql.lease_webhook_deliveries`` (SQLite, whose write
    transaction already keeps out every other writer)."""
    locked = (
        WebhookDelivery.objects.select_related("message")
        .select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=ids, next_attempt_at__lte=Now(), endpoint_id__in=WebhookEndpoint.objects.values("pk"))
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=Now()))
        .order_by("pk")
    )
    leased = [delivery for delivery in locked if delivery.state == Delivery.PENDING]
    WebhookDelivery.objects.filter(pk__in=[delivery.pk for delivery in leased]).update(leased_until=Now() + lease())
    return [
        (d.pk, d.endpoint_id, d.attempts, d.message.msg_id, orjson.dumps(d.message.payload).decode()) for d in leased
    ]


def _attempt_all(deliveries: Sequence[Leased], delivered: list[tuple[Leased, int, str, int]]) -> dict[int, str]:
    """POST each signed message, all at once; each one's outcome. A 2xx joins ``delivered``
    (recorded with the batch), anything else is recorded now. An endpoint a 410 disables is
    sent nothing after the attempts already in flight."""
    outcomes: dict[int, str] = {}
    sending: list[Leased] = []
    for delivery in deliveries:
        if delivery.endpoint.active:
            sending.append(delivery)
            continue
        reason = delivery.endpoint.disabled_reason or "inactive"
        _finish(delivery, state=Delivery.FAILED, error=f"endpoint disabled: {reason}")
        outcomes[delivery.pk] = "endpoint disabled"
    if not sending:
        return outcomes
    sent_at = timezone.now()  # the attempts' time, which receivers check against their own clocks
    posts = [
        (
            delivery.endpoint.url,
            delivery.body.encode(),
            {
                **message_headers(delivery.msg_id, sent_at),
                "webhook-signature": signatures(
                    delivery.endpoint, delivery.msg_id, sent_at, delivery.body, now=sent_at
                ),
            },
        )
        for delivery in sending
    ]
    for delivery, answer in zip(sending, _post_all(posts), strict=True):
        if answer.status is not None and 200 <= answer.status < 300:
            delivered.append((delivery, answer.status, answer.excerpt, answer.duration_ms))
            outcomes[delivery.pk] = "delivered"
        else:
            outcomes[delivery.pk] = _record(delivery, answer)
    return outcomes


def _record_delivered(delivered: list[tuple[Leased, int, str, int]]) -> None:
    """The delivered ones' outcomes in one ``UPDATE``, each with its own status, duration and
    answer; times on the database's clock."""
    if not delivered:
        return
    if connection.vendor == "postgresql":
        with transaction.atomic():
            sql.record_webhooks_delivered(
                [(delivery.pk, status, excerpt, duration_ms) for delivery, status, excerpt, duration_ms in delivered]
            )
    else:
        _record_delivered_with_orm(delivered)
    failing = {delivery.endpoint.pk for delivery, *_ in delivered if delivery.endpoint.failing_since is not None}
    if failing:
        WebhookEndpoint.objects.filter(pk__in=failing).update(failing_since=None)


def _record_delivered_with_orm(delivered: list[tuple[Leased, int, str, int]]) -> None:
    """The same where there is no ``sql.record_webhooks_delivered``: one ``UPDATE`` for those that
    answered alike (the same status and body), a ``CASE`` for their durations."""
    alike: dict[tuple[int, str], dict[int, list[int]]] = {}
    for delivery, status, excerpt, duration_ms in delivered:
        alike.setdefault((status, excerpt), {}).setdefault(duration_ms, []).append(delivery.pk)
    for (status, excerpt), by_duration in alike.items():
        durations = [When(pk__in=pks, then=Value(ms)) for ms, pks in by_duration.items()]
        WebhookDelivery.objects.filter(pk__in=[pk for pks in by_duration.values() for pk in pks]).update(
            state=Delivery.DELIVERED,
            attempts=F("attempts") + 1,
            delivered_at=Now(),
            last_attempt_at=Now(),
            next_attempt_at=None,
            leased_until=None,
            last_status_code=status,
            last_duration_ms=Case(*durations, output_field=PositiveIntegerField()),
            response_excerpt=excerpt,
            last_error="",
        )


def _record(delivery: Leased, answer: Answered) -> str:
    """A failed attempt's outcome, and what comes next; times on the database's clock."""
    endpoint = delivery.endpoint
    attempts = delivery.attempts + 1
    common: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": Now(),
        "last_status_code": answer.status,
        "last_duration_ms": answer.duration_ms,
        "response_excerpt": answer.excerpt,
        "last_error": answer.error,
        "leased_until": None,
    }
    if answer.status == 410:  # Gone: the receiver asks not to be sent anything any more
        _disable(endpoint, "it answered 410 Gone")
        _update(delivery, state=Delivery.FAILED, next_attempt_at=None, **common)
        return "gone"
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since=None).update(failing_since=Now())
    if WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__lte=Now() - DISABLE_AFTER).exists():
        _disable(endpoint, f"every attempt failed for {DISABLE_AFTER.days} days")
    schedule = retry_schedule()
    if attempts > len(schedule):
        _update(delivery, state=Delivery.FAILED, next_attempt_at=None, **common)
        logger.warning("webhook %s to %s failed after %s attempts", delivery.msg_id, endpoint.url, attempts)
        return "failed"
    _update(delivery, next_attempt_at=Now() + schedule[attempts - 1], **common)
    return "retry"


def _update(delivery: Leased, **values: Any) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**values)


def _finish(delivery: Leased, *, state: str, error: str) -> None:
    _update(delivery, state=state, last_error=error[:300], leased_until=None, next_attempt_at=None)


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    endpoint.active, endpoint.disabled_reason = False, reason  # the batch's later deliveries see it
    if WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(active=False, disabled_reason=reason):
        logger.warning("webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
        endpoints.clear()


# --- The box office's and integrators' tools ------------------------------------------


def webhook_endpoint_create(*, url: str, event_types: Sequence[str] = (), description: str = "") -> WebhookEndpoint:
    unknown = sorted(set(event_types) - set(WebhookEventType.values))
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(unknown)} (known: {', '.join(WebhookEventType.values)})")
    return WebhookEndpoint.objects.create(
        url=url, event_types=sorted(set(event_types)), description=description, secret=new_secret()
    )


def webhook_secret_rotate(endpoint: WebhookEndpoint, *, overlap: timedelta = timedelta(hours=24)) -> str:
    """A new secret; the old one goes on signing (a second signature) for ``overlap``."""
    secret = new_secret()
    # The stored secret becomes the previous one (not the caller's copy: two rotations at once
    # must not drop the secret the first one handed out).
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret=F("secret"), previous_secret_expires_at=Now() + overlap, secret=secret
    )
    return secret


def webhook_endpoints_set_active(endpoint_ids: Sequence[int], *, active: bool, actor: Any = None) -> list[int]:
    """Enable or disable endpoints; the ids that changed. Enabling forgets why one was off and
    since when it failed (its next failure starts a new five days); nothing is written for a
    disabled endpoint meanwhile."""
    changing = list(
        WebhookEndpoint.objects.filter(pk__in=list(endpoint_ids), active=not active).values_list("pk", flat=True)
    )
    if active:
        values: dict[str, Any] = {"active": True, "disabled_reason": "", "failing_since": None}
    else:
        who = actor.get_username() if actor is not None else "a service"
        values = {"active": False, "disabled_reason": f"disabled in the admin by {who}"}
    WebhookEndpoint.objects.filter(pk__in=changing).update(**values)
    endpoints.clear()  # an update() sends no post_save
    return changing


def webhook_send_test(endpoint: WebhookEndpoint) -> WebhookMessage | None:
    """A ``webhook.test`` message to this endpoint only."""
    with transaction.atomic():
        return webhooks_emit(
            WebhookEventType.TEST, {"endpoint": endpoint.pk, "note": "a test message"}, endpoint_ids=[endpoint.pk]
        )


def webhook_deliveries_resend(delivery_ids: Sequence[int]) -> int:
    """Send deliveries again now (failed or delivered ones too), with their message's id; how many."""
    with transaction.atomic():
        # An attempt in flight keeps its lease (no second attempt beside it); a resend starts the
        # retry ladder over.
        free = WebhookDelivery.objects.filter(pk__in=list(delivery_ids)).filter(
            Q(leased_until__isnull=True) | Q(leased_until__lte=Now())
        )
        delivery_ids = list(free.values_list("pk", flat=True))
        count = WebhookDelivery.objects.filter(pk__in=delivery_ids).update(
            state=Delivery.PENDING, next_attempt_at=Now(), attempts=0
        )
        by_endpoint: dict[int, list[int]] = {}
        for endpoint_id, pk in WebhookDelivery.objects.filter(pk__in=list(delivery_ids)).values_list(
            "endpoint_id", "pk"
        ):
            by_endpoint.setdefault(endpoint_id, []).append(pk)
        transaction.on_commit(lambda: sender.submit(by_endpoint))
    return count


def webhook_messages_purge() -> int:
    """Delete the messages older than BOOKING_WEBHOOK_RETENTION_DAYS that were delivered everywhere."""
    cutoff = timezone.now() - timedelta(days=settings.BOOKING_WEBHOOK_RETENTION_DAYS)
    old = WebhookMessage.objects.filter(created_at__lt=cutoff).exclude(
        deliveries__state__in=[Delivery.PENDING, Delivery.FAILED]
    )
    deleted, _ = old.delete()
    return deleted
