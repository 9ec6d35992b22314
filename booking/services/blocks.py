"""Seats held back by the venue (press, technical, sight line): block and unblock.

A blocked seat is nobody's (no holder, no booking) and not for sale: a lock of it
answers ``seat_blocked``, best available never picks it, the sweep never touches it
(it only frees stored holds). Through the steps of :mod:`booking.services.pipeline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import SeatBooked, SeatLocked
from ..models import SeatAction, SeatStatus, WebhookEventType
from ..representations import seat_payloads, seat_values
from .expiry import log_expiry
from .idempotency import keep_answer
from .pipeline import (
    AVAILABLE,
    RuleErrors,
    audit_rows,
    is_expired_hold,
    lock_seat_rows,
    mark_written,
    push_after_commit,
    save_audit,
    update_seats,
    write_transaction,
)
from .webhooks import webhooks_emit_holds

#: Longest block reason (the model's field).
MAX_REASON = 200


@dataclass
class BlockResult:
    """The seats as they now are."""

    seats: list[dict[str, Any]]


def seats_block(*, seat_ids: Sequence[int], reason: str = "", actor: Any = None) -> BlockResult:
    """Hold every seat back from sale, or none. A free seat or an expired hold may be blocked
    (the hold's expiry is recorded first, as a lock does); a seat blocked already keeps its reason."""
    with write_transaction():
        rows, now = lock_seat_rows(seat_ids)
        errors = RuleErrors()
        for row in rows:
            if row["live_status"] == SeatStatus.BOOKED:
                errors.add(SeatBooked, row["id"])
            elif row["live_status"] == SeatStatus.LOCKED:
                errors.add(SeatLocked, row["id"])
        errors.raise_first()

        block_rows([row for row in rows if row["live_status"] == SeatStatus.AVAILABLE], now, reason=reason, actor=actor)
        result = BlockResult(seats=seat_payloads(map(seat_values, rows)))
        keep_answer(result)
    return result


def seats_unblock(*, seat_ids: Sequence[int], actor: Any = None) -> BlockResult:
    """Put every blocked seat among them back on sale; other seats are left as they are."""
    with write_transaction():
        rows, _ = lock_seat_rows(seat_ids)
        unblock_rows([row for row in rows if row["live_status"] == SeatStatus.BLOCKED], actor=actor)
        result = BlockResult(seats=seat_payloads(map(seat_values, rows)))
        keep_answer(result)
    return result


def block_rows(rows: list[dict[str, Any]], now: datetime, *, reason: str, actor: Any) -> None:
    """Block locked rows that read as available (free, or an expired hold: its expiry is recorded
    first, as a lock records it), inside the caller's write transaction; the admin's action too."""
    expired = [row for row in rows if is_expired_hold(row)]
    audit = audit_rows(expired, SeatAction.EXPIRED, actor=None)
    for row in expired:
        log_expiry(row)
    audit += audit_rows(rows, SeatAction.BLOCKED, actor=actor, holder="")
    update_seats(
        [row["id"] for row in rows],
        **{**AVAILABLE, "status": SeatStatus.BLOCKED.value, "block_reason": (reason or "").strip()[:MAX_REASON]},
    )
    mark_written(rows, live_status=SeatStatus.BLOCKED)
    save_audit(audit)
    push_after_commit(rows)
    webhooks_emit_holds(WebhookEventType.HOLD_EXPIRED, expired, holders=[row["locked_by"] for row in expired], at=now)


def unblock_rows(rows: list[dict[str, Any]], *, actor: Any) -> None:
    """Put locked blocked rows back on sale, inside the caller's write transaction."""
    update_seats([row["id"] for row in rows], **AVAILABLE, block_reason="")
    mark_written(rows, live_status=SeatStatus.AVAILABLE)
    save_audit(audit_rows(rows, SeatAction.UNBLOCKED, actor=actor, holder=""))
    push_after_commit(rows)
