"""Celery tasks: each a few lines around a service."""

import logging

from celery import shared_task

from . import conf
from .errors import Busy
from .services import holds_release_expired
from .services.idempotency import idempotency_keys_purge

logger = logging.getLogger("booking.expiry")


@shared_task(ignore_result=True)
def release_expired_holds() -> int:
    """Beat's sweep: free every expired hold. Idempotent, so a late or doubled run does no harm."""
    try:
        return holds_release_expired(workers=conf.sweep_workers())
    except Busy:
        logger.warning("expiry sweep skipped: database busy; the next sweep retries")
        return 0


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    """Beat's hourly purge of Idempotency-Keys past their retention (BOOKING_IDEMPOTENCY_SECONDS)."""
    return idempotency_keys_purge()
