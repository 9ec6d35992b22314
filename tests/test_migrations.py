"""Migrations that move data: every seat booked before bookings existed has one after."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("booking", "0004_audit_event_without_constraint")]


@pytest.fixture
def at_the_schema_before_bookings():
    """The database as it was before bookings; put back to the latest schema afterwards."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor.loader.project_state(BEFORE).apps
    call_command("migrate", verbosity=0)


def test_every_seat_booked_before_the_migration_has_a_booking_after_it(at_the_schema_before_bookings):
    old = at_the_schema_before_bookings
    Event, Seat, SeatEvent = (old.get_model("booking", name) for name in ("Event", "Seat", "SeatEvent"))
    now = timezone.now()
    gala = Event.objects.create(name="Gala", starts_at=now + timedelta(days=3), hold_seconds=60)
    matinee = Event.objects.create(name="Matinee", starts_at=now + timedelta(days=4), hold_seconds=60)

    def seat(event, label, **state):
        made = Seat.objects.create(event=event, label=label, row=label[0], number=int(label[1:]), **state)
        if state.get("status") == "booked":
            SeatEvent.objects.create(seat=made, event=event, action="booked", holder=state["booked_by"])
        return made

    booked = lambda who, minutes: {  # noqa: E731
        "status": "booked",
        "booked_by": who,
        "booked_at": now - timedelta(minutes=minutes),
    }
    alice_gala = [seat(gala, "A1", **booked("alice", 30)), seat(gala, "A2", **booked("alice", 10))]
    bob_gala = [seat(gala, "B1", **booked("bob", 5))]
    alice_matinee = [seat(matinee, "A1", **booked("alice", 1))]
    free = seat(gala, "C1")
    held = seat(
        gala,
        "C2",
        status="locked",
        locked_by="carol",
        locked_at=now,
        lock_expires_at=now + timedelta(minutes=1),
    )

    call_command("migrate", verbosity=0)

    from booking.models import Booking
    from booking.models import Seat as NewSeat
    from booking.models import SeatEvent as NewSeatEvent

    assert not NewSeat.objects.filter(status="booked", booking__isnull=True).exists()
    assert Booking.objects.count() == 3  # one per holder and event
    for group in (alice_gala, bob_gala, alice_matinee):
        bookings = {NewSeat.objects.get(pk=s.pk).booking for s in group}
        assert len(bookings) == 1
        (booking,) = bookings
        assert booking.holder == group[0].booked_by and booking.event_id == group[0].event_id
        assert booking.created_at == min(s.booked_at for s in group)  # when its first seat was booked
        assert set(NewSeatEvent.objects.filter(booking=booking).values_list("seat_id", flat=True)) == {
            s.pk for s in group
        }
    assert len({b.reference for b in Booking.objects.all()}) == 3
    assert NewSeat.objects.get(pk=free.pk).booking is None
    assert NewSeat.objects.get(pk=held.pk).booking is None


def test_seats_made_before_venue_fields_get_the_default_rank_and_a_blocked_seat_has_no_holder():
    from django.db import IntegrityError, transaction

    executor = MigrationExecutor(connection)
    before = [("booking", "0012_seat_map_version")]
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        Event, Seat = old.get_model("booking", "Event"), old.get_model("booking", "Seat")
        event = Event.objects.create(name="Old", starts_at=timezone.now() + timedelta(days=3), hold_seconds=60)
        for row in ("B", "A", "AA"):
            for number in range(1, 5):
                Seat.objects.create(event=event, label=f"{row}{number}", row=row, number=number)
        call_command("migrate", verbosity=0)

        from booking.models import Seat as NewSeat

        rank = dict(NewSeat.objects.filter(event_id=event.pk).values_list("label", "rank"))
        assert rank["A2"] == rank["A3"] < rank["A1"] == rank["A4"] < rank["B2"] < rank["AA2"]
        assert set(NewSeat.objects.filter(event_id=event.pk).values_list("section", "category", "accessible")) == {
            ("", "", False)
        }
        seat = NewSeat.objects.get(event_id=event.pk, label="A1")
        with pytest.raises(IntegrityError), transaction.atomic():
            NewSeat.objects.filter(pk=seat.pk).update(status="blocked", locked_by="alice")
        with pytest.raises(IntegrityError), transaction.atomic():
            NewSeat.objects.filter(pk=seat.pk).update(block_reason="press")  # only a blocked seat has a reason
        NewSeat.objects.filter(pk=seat.pk).update(status="blocked", block_reason="press")
    finally:
        call_command("migrate", verbosity=0)
