"""The SQL written by hand: only what the ORM cannot say (an advisory lock, the sweep's statement,
the webhook outbox's insert, the webhooks worker's lease and outcomes).

Each statement runs through Django's ``connection.cursor()`` (query logging,
``execute_wrapper``, error translation) inside the caller's ``atomic`` block.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import connection, transaction
from psycopg import sql as pg_sql

from ..models import WebhookDelivery, WebhookMessage

# A transaction-scoped advisory lock on the holder's name: the ORM has no word for
# advisory locks, and a holder is an opaque string with no row of its own to lock.
# Taken before any row lock, it cannot deadlock with them. The key's space (7) keeps
# these locks apart from any other use of advisory locks in the same database.
_LOCK_HOLDER = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))"


def lock_holder(holder: str) -> None:
    """Serialize one holder's lock requests until the transaction ends (PostgreSQL).

    Two requests of one holder for different seats would otherwise each count
    the holder's other holds before the other's commit, and both pass the hold
    limit. On SQLite the IMMEDIATE transaction already serializes every writer.
    """
    if connection.vendor != "postgresql":
        return
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("lock_holder() must run inside atomic()")
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_HOLDER, ["booking-holder:" + holder])


# The sweep's batch as one statement: lock the expired holds (skipping rows that a lock
# request holds: it records that expiry itself), free them, write their audit rows, and
# return them with their old holder. The ORM has no data-modifying CTE, and its three
# statements (the rows, one UPDATE of 10 000 ids, 10 000 audit rows built as model
# instances) took 5x as long (measured: 100 000 holds in 9.8 s against about 2 s).
# The UPDATE finds its rows by primary key (= ANY(ARRAY(...))), not by a hash join.
_RELEASE_EXPIRED = """
WITH expired AS (
    SELECT id, locked_by, lock_expires_at
    FROM booking_seat
    WHERE status = 'locked' AND lock_expires_at <= STATEMENT_TIMESTAMP() {extra}
    ORDER BY id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), released AS (
    UPDATE booking_seat AS s
    SET status = 'available', locked_by = '', locked_at = NULL, lock_expires_at = NULL, version = s.version + 1
    WHERE s.id = ANY(ARRAY(SELECT id FROM expired))
    RETURNING s.id, s.event_id, s.label, s.section, s.row, s.number, s.category, s.accessible, s.version
), freed AS (
    SELECT r.id, r.event_id, r.label, r.section, r.row, r.number, r.category, r.accessible, r.version,
        e.locked_by, e.lock_expires_at
    FROM released AS r JOIN expired AS e ON e.id = r.id
), audit AS (
    INSERT INTO booking_seatevent (seat_id, event_id, action, holder, created_at)
    SELECT id, event_id, 'expired', locked_by, STATEMENT_TIMESTAMP() FROM freed
)
SELECT id, event_id, label, section, row, number, category, accessible, version, locked_by, lock_expires_at
FROM freed ORDER BY id
"""
#: The freed seats: their new version, and the hold that expired.
RELEASED_COLUMNS = (
    "id",
    "event_id",
    "label",
    "section",
    "row",
    "number",
    "category",
    "accessible",
    "version",
    "locked_by",
    "lock_expires_at",
)


def release_expired_batch(*, batch: int, event_id: int | None, seat_ids: list[int] | None) -> list[dict[str, Any]]:
    """Free up to ``batch`` expired holds (PostgreSQL), with their audit rows; the freed seats."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("release_expired_batch() must run inside atomic()")
    extra = ""
    params: dict[str, Any] = {"batch": batch}
    if event_id is not None:
        extra += " AND event_id = %(event_id)s"
        params["event_id"] = event_id
    if seat_ids is not None:
        extra += " AND id = ANY(%(seat_ids)s)"
        params["seat_ids"] = seat_ids
    with connection.cursor() as cursor:
        cursor.execute(_RELEASE_EXPIRED.format(extra=extra), params)
        return [dict(zip(RELEASED_COLUMNS, values, strict=True)) for values in cursor.fetchall()]


# One shard of an event's seat-map counter, plus one (created at its first change). The ORM
# has no upsert that adds to the stored value (bulk_create's update_conflicts only copies
# the new row's). PostgreSQL and SQLite share this syntax.
_BUMP_SEAT_MAP = """
INSERT INTO booking_seatmapversion (event_id, shard, version) VALUES (%s, %s, 1)
ON CONFLICT (event_id, shard) DO UPDATE SET version = booking_seatmapversion.version + 1
"""


# PostgreSQL: one of the event's counter rows that no other transaction holds (SKIP LOCKED), so
# concurrent writers of one event never wait for each other; when all are held, a row more.
_BUMP_FREE_SHARD = """
UPDATE booking_seatmapversion SET version = version + 1
WHERE id = (
    SELECT id FROM booking_seatmapversion WHERE event_id = %s ORDER BY shard LIMIT 1 FOR UPDATE SKIP LOCKED
)
"""
#: Shard numbers a new counter row draws from (a smallint column): writers that add rows at
#: once rarely pick the same one.
SHARD_NUMBERS = 32767


def bump_seat_map_versions(shards: list[tuple[int, int]]) -> None:
    """Add one to a counter of each event, in that order (the caller sorts them): on PostgreSQL
    any row of the event that is free (a new one when none is), elsewhere the given shard's."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("bump_seat_map_versions() must run inside atomic()")
    with connection.cursor() as cursor:
        for event_id, shard in shards:
            if connection.vendor != "postgresql":
                cursor.execute(_BUMP_SEAT_MAP, [event_id, shard])
                continue
            cursor.execute(_BUMP_FREE_SHARD, [event_id])
            if cursor.rowcount == 0:
                cursor.execute(_BUMP_SEAT_MAP, [event_id, random.randrange(SHARD_NUMBERS)])


# The outbox's messages and their deliveries in one statement (PostgreSQL). The ORM has no
# data-modifying CTE; its two bulk_create()s cost the request about 0.6 ms more CPU a message
# than this statement (measured: docs/benchmark.md), and a booking writes two messages. All of
# the input travels as one JSON parameter, each message with its endpoints' ids, and the
# deliveries' other columns are constants in the text: each parameter psycopg adapts (an array
# most) costs the request CPU, and psycopg escapes every quote of a JSON text inside an array.
_INSERT_OUTBOX = """
WITH input AS (
    SELECT u.msg_id, u.type, u.payload, u.endpoints
    FROM jsonb_to_recordset(%s::jsonb) AS u(msg_id varchar, type varchar, payload jsonb, endpoints jsonb)
), message AS (
    INSERT INTO booking_webhookmessage (msg_id, type, payload)
    SELECT msg_id, type, payload FROM input
    RETURNING id, msg_id, created_at
), delivery AS (
    INSERT INTO booking_webhookdelivery (message_id, endpoint_id, next_attempt_at, {columns})
    SELECT message.id, target.endpoint_id::bigint, %s, {values}
    FROM message JOIN input USING (msg_id), jsonb_array_elements_text(input.endpoints) AS target(endpoint_id)
    RETURNING id, endpoint_id, message_id
)
SELECT message.msg_id, message.id, message.created_at, delivery.id, delivery.endpoint_id
FROM delivery JOIN message ON message.id = delivery.message_id
ORDER BY delivery.id
"""


@functools.cache
def _outbox_statement() -> str:
    """The statement, with the delivery's other columns set to those of a new
    ``WebhookDelivery()`` (its model's defaults, constants: read once per process)."""
    fields = [
        f
        for f in WebhookDelivery._meta.concrete_fields
        if f.name not in ("id", "message", "endpoint", "next_attempt_at")
    ]
    if any(f.has_default() and callable(f.default) for f in fields):
        raise TypeError("insert_webhook_outbox() reads the deliveries' defaults once: make them constants")
    new = WebhookDelivery()
    values = [f.get_db_prep_save(getattr(new, f.attname), connection) for f in fields]
    if any(value is not None and not isinstance(value, (str, int)) for value in values):
        raise TypeError("insert_webhook_outbox() writes the deliveries' defaults as SQL literals: str, int or None")
    with connection.cursor() as cursor:  # psycopg quotes each as a literal for this connection
        literals = [pg_sql.Literal(value).as_string(cursor.connection) for value in values]  # None: NULL
    return _INSERT_OUTBOX.format(
        columns=", ".join(connection.ops.quote_name(f.column) for f in fields),
        values=", ".join(f"{literal}::{f.db_type(connection)}" for literal, f in zip(literals, fields, strict=True)),
    )


def insert_webhook_outbox(
    messages: Sequence[WebhookMessage], targets: Sequence[tuple[str, int]], *, next_attempt_at: datetime
) -> list[tuple[int, int]]:
    """Insert the messages (PostgreSQL) and a new delivery for each (msg_id, endpoint id) of
    ``targets``; sets each message's pk and created_at; the (delivery id, endpoint id)s."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("insert_webhook_outbox() must run inside atomic()")
    endpoints: dict[str, list[int]] = {m.msg_id: [] for m in messages}
    for msg_id, endpoint_id in targets:
        endpoints[msg_id].append(endpoint_id)
    rows_in = [
        {"msg_id": m.msg_id, "type": m.type, "payload": m.payload, "endpoints": endpoints[m.msg_id]} for m in messages
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            _outbox_statement(), [orjson.dumps(rows_in, option=orjson.OPT_NON_STR_KEYS).decode(), next_attempt_at]
        )
        rows = cursor.fetchall()
    by_msg_id = {m.msg_id: m for m in messages}
    for msg_id, pk, created_at, _, _ in rows:
        message = by_msg_id[msg_id]
        message.pk, message.created_at = pk, created_at
        message._state.adding, message._state.db = False, connection.alias
    return [(delivery_id, endpoint_id) for _, _, _, delivery_id, endpoint_id in rows]


def set_statement_timeout(milliseconds: int) -> None:
    """Bound every statement of this transaction (PostgreSQL; SQLite has no such limit):
    a scrape's counts must not pile up on a database that is already slow."""
    if connection.vendor != "postgresql":
        return
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("set_statement_timeout() must run inside atomic()")
    with connection.cursor() as cursor:
        # SET takes no bind parameters; an int cannot carry anything else.
        cursor.execute(f"SET LOCAL statement_timeout = {int(milliseconds)}")


# The webhooks worker's lease of a batch in one statement (PostgreSQL): lock the due deliveries
# among the ids that no attempt holds (skipping, not waiting for, rows another worker is
# leasing), hold the pending ones for an attempt, and read each with its message's id and
# body. The ORM has no UPDATE … RETURNING: its locked SELECT of delivery, message and endpoint
# instances and then its UPDATE cost the worker 2.3 ms of CPU a batch of 4 and 7 ms one of 50
# (measured: docs/benchmark.md). The state is checked on the locked rows, not in the WHERE:
# with it there the planner may read the batch through the due index (partial, on pending
# rows), which it thinks small when its statistics predate a backlog, and walk every due
# delivery (8.9 ms a lease at 25 000 due, 0.14 ms by primary key). The payload comes as its
# text (jsonb's, with a space after each comma and colon), for orjson to read.
_LEASE_WEBHOOK_DELIVERIES = """
WITH free AS (
    SELECT d.id, d.state FROM booking_webhookdelivery AS d
    WHERE d.id = ANY(%(ids)s) AND d.next_attempt_at <= STATEMENT_TIMESTAMP()
        AND (d.leased_until IS NULL OR d.leased_until <= STATEMENT_TIMESTAMP())
        AND EXISTS (SELECT FROM booking_webhookendpoint AS e WHERE e.id = d.endpoint_id)
    ORDER BY d.id
    FOR UPDATE OF d SKIP LOCKED
), leased AS (
    UPDATE booking_webhookdelivery AS d SET leased_until = STATEMENT_TIMESTAMP() + make_interval(secs => %(lease)s)
    WHERE d.id = ANY(ARRAY(SELECT id FROM free WHERE state = 'pending'))
    RETURNING d.id, d.endpoint_id, d.attempts, d.message_id
)
SELECT l.id, l.endpoint_id, l.attempts, m.msg_id, m.payload::text
FROM leased AS l JOIN booking_webhookmessage AS m ON m.id = l.message_id
ORDER BY l.id
"""


def lease_webhook_deliveries(ids: Sequence[int], *, lease: timedelta) -> list[tuple[int, int, int, str, str]]:
    """Hold the due, free, pending deliveries among ``ids`` for ``lease`` (PostgreSQL); each one's
    (id, endpoint id, attempts so far, message id, body), in id order."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("lease_webhook_deliveries() must run inside atomic()")
    with connection.cursor() as cursor:
        cursor.execute(_LEASE_WEBHOOK_DELIVERIES, {"ids": list(ids), "lease": lease.total_seconds()})
        return cursor.fetchall()


# The delivered ones of a batch, each with its own status, duration and answer, in one
# statement (PostgreSQL): the ORM can only give each row its own values through a CASE with a
# branch per row, which cost the worker 1 ms of CPU a batch of 4 and 2.5 ms one of 50. The rows
# are found by primary key (= ANY), then matched to their outcomes.
_RECORD_WEBHOOKS_DELIVERED = """
UPDATE booking_webhookdelivery AS d
SET state = 'delivered', attempts = d.attempts + 1, delivered_at = STATEMENT_TIMESTAMP(),
    last_attempt_at = STATEMENT_TIMESTAMP(), next_attempt_at = NULL, leased_until = NULL,
    last_status_code = o.status, last_duration_ms = o.ms, response_excerpt = o.excerpt, last_error = ''
FROM jsonb_to_recordset(%(outcomes)s::jsonb) AS o(id bigint, status smallint, ms integer, excerpt varchar)
WHERE d.id = ANY(%(ids)s) AND d.id = o.id
"""


def record_webhooks_delivered(outcomes: Sequence[tuple[int, int, str, int]]) -> None:
    """Mark deliveries delivered (PostgreSQL), each ``(id, status, answer excerpt, duration ms)``;
    the times on the database's clock."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("record_webhooks_delivered() must run inside atomic()")
    rows = [{"id": pk, "status": status, "excerpt": excerpt, "ms": ms} for pk, status, excerpt, ms in outcomes]
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD_WEBHOOKS_DELIVERED, {"outcomes": orjson.dumps(rows).decode(), "ids": [pk for pk, *_ in outcomes]}
        )
