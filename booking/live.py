"""Publishing seat changes to live clients.

Services call :func:`publish_seat_changes` from ``transaction.on_commit`` so
that nothing is pushed for a change that rolled back.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)


def event_group_name(event_id: int) -> str:
    return f"event-{event_id}"


def publish_seat_changes(seats: Iterable[dict[str, Any]]) -> None:
    """Send each changed seat (its API payload) to the clients watching its event.

    One channel-layer message per event carries all its changed seats; the
    WebSocket consumer sends one ``{"type": "seat"}`` frame per seat.
    """
    by_event: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for seat in seats:
        by_event[seat["event"]].append(seat)
    if not by_event:
        return
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer
    except ImportError:  # pragma: no cover - channels is a pinned dependency
        return
    layer = get_channel_layer()
    if layer is None:
        return
    for event_id, event_seats in by_event.items():
        try:
            async_to_sync(layer.group_send)(event_group_name(event_id), {"type": "seats.changed", "seats": event_seats})
        except Exception:  # a lost push must never undo or fail a committed booking
            logger.exception("live push failed for event %s", event_id)
