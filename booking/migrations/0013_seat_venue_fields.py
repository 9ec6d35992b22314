"""Venue fields of a seat (section, category, accessible, rank), the status ``blocked``
with its reason, and the best-available indexes. Existing seats get the default rank."""

from django.db import migrations, models

# A copy of booking/seating.py's default rank as it was when this was written (a migration
# must not change when the app's code does): each event's rows front to back, then the middle.
RANK_ROW_STEP = 10_000


def _letters_to_index(letters: str) -> int:
    index = 0
    for char in letters:
        index = index * 26 + (ord(char) - ord("A") + 1)
    return index


def _row_order_key(row: str) -> tuple[int, int, str]:
    name = row.strip().upper()
    if name.isdigit():
        return (0, int(name), "")
    if name.isalpha() and name.isascii():
        return (1, _letters_to_index(name), "")
    return (2, 0, name)


def backfill_rank(apps, schema_editor):
    Seat = apps.get_model("booking", "Seat")
    for event_id in Seat.objects.values_list("event_id", flat=True).distinct().order_by("event_id"):
        seats = list(Seat.objects.filter(event_id=event_id).only("id", "row", "number"))
        spans: dict[str, tuple[int, int]] = {}
        for seat in seats:
            low, high = spans.get(seat.row, (seat.number, seat.number))
            spans[seat.row] = (min(low, seat.number), max(high, seat.number))
        position = {row: i for i, row in enumerate(sorted(spans, key=_row_order_key))}
        for seat in seats:
            low, high = spans[seat.row]
            seat.rank = position[seat.row] * RANK_ROW_STEP + min(abs(2 * seat.number - low - high), RANK_ROW_STEP - 1)
        Seat.objects.bulk_update(seats, ["rank"], batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [("booking", "0012_seat_map_version")]

    operations = [
        migrations.AddField(
            model_name="seat",
            name="section",
            field=models.CharField(
                blank=True, default="", help_text='Part of the venue, e.g. "Balcony".', max_length=64
            ),
        ),
        migrations.AddField(
            model_name="seat",
            name="category",
            field=models.CharField(
                blank=True, default="", help_text='A price level the shop maps to prices, e.g. "A".', max_length=32
            ),
        ),
        migrations.AddField(
            model_name="seat",
            name="accessible",
            field=models.BooleanField(default=False, help_text="A wheelchair or companion place."),
        ),
        migrations.AddField(
            model_name="seat",
            name="rank",
            field=models.PositiveIntegerField(
                default=0, help_text="Best available takes the lowest first: front rows, then the middle of the row."
            ),
        ),
        migrations.AddField(
            model_name="seat",
            name="block_reason",
            field=models.CharField(
                blank=True, default="", help_text="Why a blocked seat is held back.", max_length=200
            ),
        ),
        migrations.RunPython(backfill_rank, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="seat",
            name="status",
            field=models.CharField(
                choices=[
                    ("available", "available"),
                    ("locked", "locked"),
                    ("booked", "booked"),
                    ("blocked", "blocked"),
                ],
                default="available",
                max_length=10,
            ),
        ),
        migrations.RemoveConstraint(model_name="seat", name="seat_status_valid"),
        migrations.AddConstraint(
            model_name="seat",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["available", "locked", "booked", "blocked"])),
                name="seat_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="seat",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status", "blocked"), _negated=True),
                    models.Q(
                        ("locked_by", ""),
                        ("booked_by", ""),
                        ("locked_at__isnull", True),
                        ("lock_expires_at__isnull", True),
                        ("booked_at__isnull", True),
                    ),
                    _connector="OR",
                ),
                name="seat_blocked_has_no_holder",
            ),
        ),
        migrations.AddConstraint(
            model_name="seat",
            constraint=models.CheckConstraint(
                condition=models.Q(("status", "blocked"), ("block_reason", ""), _connector="OR"),
                name="seat_block_reason_only_blocked",
            ),
        ),
        migrations.AddIndex(
            model_name="seat",
            index=models.Index(
                condition=models.Q(("status__in", ["available", "locked"])),
                fields=["event", "rank"],
                name="seat_best_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="seat",
            index=models.Index(
                condition=models.Q(("status__in", ["available", "locked"])),
                fields=["event", "category", "rank"],
                name="seat_best_category_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="seat",
            index=models.Index(fields=["event", "section", "row", "number"], name="seat_row_idx"),
        ),
        migrations.AlterField(
            model_name="seatevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("locked", "locked"),
                    ("extended", "extended"),
                    ("unlocked", "unlocked"),
                    ("expired", "expired"),
                    ("booked", "booked"),
                    ("cancelled", "cancelled"),
                    ("admin_released", "released by admin"),
                    ("admin_booked", "booked by admin"),
                    ("admin_cancelled", "booking cancelled by admin"),
                    ("blocked", "blocked"),
                    ("unblocked", "unblocked"),
                ],
                max_length=20,
            ),
        ),
    ]
