"""The booking rules' settings, read at call time so tests can override them.

Defaults live in config/settings.py, where each is read from the environment.
"""

from django.conf import settings

#: The spec's limit on ids in one request.
MAX_IDS_PER_REQUEST = 100


def hold_seconds() -> int:
    return settings.BOOKING_HOLD_SECONDS


def max_hold_seconds(event_hold_seconds: int) -> int:
    """How long a hold may last, renewals included, after it was first taken."""
    configured = getattr(settings, "BOOKING_MAX_HOLD_SECONDS", None)
    ceiling = configured if configured is not None else 10 * event_hold_seconds
    return max(ceiling, event_hold_seconds)


def lock_timeout_ms() -> int:
    return settings.BOOKING_LOCK_TIMEOUT_MS


def max_holds() -> int:
    return settings.BOOKING_MAX_HOLDS


def sweep_seconds() -> float:
    return settings.BOOKING_SWEEP_SECONDS


def sweep_batch() -> int:
    return settings.BOOKING_SWEEP_BATCH


def sweep_workers() -> int:
    """Concurrent sweeps of one beat run (PostgreSQL); 1 runs batches one after another."""
    return max(1, getattr(settings, "BOOKING_SWEEP_WORKERS", 1))


def cancel_cutoff_seconds() -> int:
    """How long before its event starts a holder can no longer cancel a booking."""
    return getattr(settings, "BOOKING_CANCEL_CUTOFF_SECONDS", 0)


def idempotency_seconds() -> int:
    return settings.BOOKING_IDEMPOTENCY_SECONDS


def idempotency_lease_seconds() -> int:
    return settings.BOOKING_IDEMPOTENCY_LEASE_SECONDS
