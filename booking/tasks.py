"""Celery tasks: each a few lines around a service."""

import logging

from celery import shared_task

from . import conf
from .errors import Busy
from .metrics import SWEEP_SECONDS
from .services import holds_release_expired
from .services.idempotency import idempotency_keys_purge
from .services.webhooks import webhook_messages_purge, webhooks_deliver, webhooks_deliver_due

logger = logging.getLogger("booking.expiry")


@shared_task(ignore_result=True)
def release_expired_holds() -> int:
    """Beat's sweep: free every expired hold. Idempotent, so a late or doubled run does no harm."""
    try:
        with SWEEP_SECONDS.time():
            return holds_release_expired(workers=conf.sweep_workers())
    except Busy:
        logger.warning("expiry sweep skipped: database busy; the next sweep retries")
        return 0


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    """Beat's hourly purge of Idempotency-Keys past their retention (BOOKING_IDEMPOTENCY_SECONDS)."""
    return idempotency_keys_purge()


@shared_task(ignore_result=True, acks_late=True)
def deliver_webhooks(delivery_ids: list[int]) -> list[str]:
    """An attempt at each of one endpoint's webhook deliveries, a few at once (each a no-op unless it is
    due: a duplicate send does no harm)."""
    return webhooks_deliver(delivery_ids)


@shared_task(ignore_result=True)
def deliver_due_webhooks() -> int:
    """Beat: send every due webhook delivery to a worker (retries, lost sends, a worker that was down)."""
    return webhooks_deliver_due()


@shared_task(ignore_result=True)
def purge_webhook_messages() -> int:
    """Beat, daily: delete the messages delivered everywhere before BOOKING_WEBHOOK_RETENTION_DAYS."""
    return webhook_messages_purge()
