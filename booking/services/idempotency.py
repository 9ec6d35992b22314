"""Idempotency-Key: a retried write never runs twice, even when its first answer was lost.

A request with a key first *claims* it (a row unique per caller, path and key,
with a random claim token and a lease). Its write then keeps its 2xx answer
in that row **in the write's own transaction** (:func:`keep_answer`, called by
each service at the end of its transaction): if the write committed, so did
its answer, and a retry replays it. The answer is kept only while the claim
is still this attempt's: an attempt that ran past its lease, and whose key a
retry has taken over, rolls back rather than commit a second time. A 4xx
answer (no change was made) is kept after the fact; a 429, 503 or 5xx answer
is not kept (the claim is given up, so a retry runs).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models.functions import Now

from .. import conf
from ..errors import IdempotencyClaimLost, IdempotencyKeyInUse, IdempotencyKeyMismatch
from ..models import IdempotencyKey

State = IdempotencyKey.State


@dataclass(frozen=True)
class Claim:
    """This attempt's right to run the write of a key and keep its answer."""

    key_id: int
    token: str


@dataclass(frozen=True)
class Replay:
    """The kept answer of a key's first request."""

    status_code: int
    body: str


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def idempotency_claim(*, user: Any, path: str, key: str, body: bytes) -> Claim | Replay:
    """Claim the key for this request, or the first request's answer to replay.

    Raises :class:`IdempotencyKeyMismatch` for the same key with another body,
    :class:`IdempotencyKeyInUse` while another attempt holds it. A key past its
    retention counts as new; a running key past its lease (its attempt died
    before it committed: a committed one would be done) is taken over.
    """
    body_print = fingerprint(body)
    for _ in range(3):  # a concurrent first request may insert the row between our read and insert
        with transaction.atomic():
            row = (
                IdempotencyKey.objects.select_for_update()
                .filter(user=user, path=path, key=key)
                .values("id", "fingerprint", "state", "status_code", "body", "lease_expires_at", "expires_at")
                .annotate(db_now=Now())
                .first()
            )
            token = secrets.token_hex(16)
            if row is None:
                try:
                    with transaction.atomic():
                        made = IdempotencyKey.objects.create(
                            user=user,
                            path=path,
                            key=key,
                            fingerprint=body_print,
                            state=State.RUNNING,
                            claim=token,
                            lease_expires_at=Now() + timedelta(seconds=conf.idempotency_lease_seconds()),
                            expires_at=Now() + timedelta(seconds=conf.idempotency_seconds()),
                        )
                except IntegrityError:
                    continue
                return Claim(made.pk, token)
            now = row["db_now"]
            if row["expires_at"] > now:
                if row["fingerprint"] != body_print:
                    raise IdempotencyKeyMismatch()
                if row["state"] == State.DONE:
                    return Replay(row["status_code"], row["body"])
                if row["lease_expires_at"] > now:
                    wait = math.ceil((row["lease_expires_at"] - now).total_seconds())
                    raise IdempotencyKeyInUse(retry_after=max(1, wait))
            # Past its retention (a new request), or an attempt that died: this one runs.
            IdempotencyKey.objects.filter(pk=row["id"]).update(
                fingerprint=body_print,
                state=State.RUNNING,
                claim=token,
                status_code=None,
                body="",
                lease_expires_at=Now() + timedelta(seconds=conf.idempotency_lease_seconds()),
                expires_at=Now() + timedelta(seconds=conf.idempotency_seconds()),
            )
            return Claim(row["id"], token)
    raise IdempotencyKeyInUse()


def idempotency_finish(claim: Claim, *, status_code: int, body: str) -> bool:
    """Keep the answer for the key, if the claim is still this attempt's; whether it was."""
    updated = IdempotencyKey.objects.filter(pk=claim.key_id, claim=claim.token, state=State.RUNNING).update(
        state=State.DONE, status_code=status_code, body=body
    )
    return updated == 1


def idempotency_release(claim: Claim) -> None:
    """Give the key up (an answer that is not kept): a retry runs."""
    IdempotencyKey.objects.filter(pk=claim.key_id, claim=claim.token, state=State.RUNNING).delete()


def idempotency_keys_purge() -> int:
    """Delete the keys past their retention; how many."""
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=Now()).delete()
    return deleted


# --- The answer, kept in the write's transaction -------------------------------

#: Set by the API around a request with a key: keeps a service's result as the request's answer.
_answer_keeper: ContextVar[Callable[[Any], None] | None] = ContextVar("answer_keeper", default=None)


@contextmanager
def answers_kept_by(keeper: Callable[[Any], None]) -> Iterator[None]:
    """Within this block, :func:`keep_answer` hands a service's result to ``keeper``."""
    reset = _answer_keeper.set(keeper)
    try:
        yield
    finally:
        _answer_keeper.reset(reset)


def keep_answer(result: Any) -> None:
    """A write service's last step inside its transaction: the request's answer, kept by
    whoever must keep it in this same transaction (nothing without an Idempotency-Key)."""
    keeper = _answer_keeper.get()
    if keeper is not None:
        keeper(result)


def finish_in_transaction(claim: Claim, *, status_code: int, body: str) -> None:
    """Keep the answer inside the caller's transaction, or roll it back if the claim was lost."""
    if not idempotency_finish(claim, status_code=status_code, body=body):
        raise IdempotencyClaimLost()
