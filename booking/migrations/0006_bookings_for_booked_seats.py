"""Every seat booked before bookings existed gets one: one booking per holder and event,
with a new reference, made when its first seat was booked; its seats' booking audit rows
point to it."""

import secrets

from django.db import migrations
from django.db.models import Min

# A copy of booking/references.py's alphabet: a migration keeps working when the app changes.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def create_bookings(apps, schema_editor):
    Seat = apps.get_model("booking", "Seat")
    Booking = apps.get_model("booking", "Booking")
    SeatEvent = apps.get_model("booking", "SeatEvent")
    taken = set(Booking.objects.values_list("reference", flat=True))
    groups = (
        Seat.objects.filter(status="booked", booking__isnull=True)
        .values("event_id", "booked_by")
        .annotate(first=Min("booked_at"))
        .order_by("event_id", "booked_by")
    )
    for group in groups:
        reference = "".join(secrets.choice(ALPHABET) for _ in range(8))
        while reference in taken:
            reference = "".join(secrets.choice(ALPHABET) for _ in range(8))
        taken.add(reference)
        booking = Booking.objects.create(
            reference=reference, event_id=group["event_id"], holder=group["booked_by"], created_at=group["first"]
        )
        seats = Seat.objects.filter(
            status="booked", booking__isnull=True, event_id=group["event_id"], booked_by=group["booked_by"]
        )
        seat_ids = list(seats.values_list("pk", flat=True))
        Seat.objects.filter(pk__in=seat_ids).update(booking=booking)
        SeatEvent.objects.filter(
            seat_id__in=seat_ids, holder=group["booked_by"], action__in=("booked", "admin_booked"), booking__isnull=True
        ).update(booking=booking)


class Migration(migrations.Migration):
    dependencies = [("booking", "0005_bookings")]

    operations = [migrations.RunPython(create_bookings, migrations.RunPython.noop)]
