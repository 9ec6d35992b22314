"""Small assertions shared by the test modules."""

from booking.models import Seat, SeatEvent


def post(client, path, body):
    return client.post(path, body, format="json")


def assert_error(response, status: int, code: str, seats: list[int] | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= {"code", "detail", "seats"}
    if seats is not None:
        assert body["seats"] == seats
    return body


def seat(seat_id: int) -> Seat:
    return Seat.objects.get(pk=seat_id)


def audit_actions(seat_id: int) -> list[tuple[str, str]]:
    """The seat's audit trail, oldest first, as (action, holder)."""
    return list(SeatEvent.objects.filter(seat_id=seat_id).order_by("created_at", "id").values_list("action", "holder"))


def expire_hold(*seat_ids: int) -> None:
    """Move holds' expiry into the past (as if their time had run out)."""
    from datetime import timedelta

    from django.db.models import F

    Seat.objects.filter(pk__in=seat_ids).update(
        lock_expires_at=F("lock_expires_at") - timedelta(hours=1), locked_at=F("locked_at") - timedelta(hours=1)
    )
