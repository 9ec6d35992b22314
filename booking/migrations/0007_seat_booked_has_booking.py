from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("booking", "0006_bookings_for_booked_seats")]

    operations = [
        migrations.AddConstraint(
            model_name="seat",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("booking__isnull", False), ("status", "booked")),
                    models.Q(models.Q(("status", "booked"), _negated=True), ("booking__isnull", True)),
                    _connector="OR",
                ),
                name="seat_booked_has_booking",
            ),
        ),
    ]
