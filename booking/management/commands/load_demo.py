import json
import os
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from booking.management.commands.create_api_user import ensure_api_user
from booking.models import Event
from booking.services import event_create_with_seats

DEMO_EVENT_NAME = "Demo concert"
DEMO_ROWS = [chr(ord("A") + i) for i in range(10)]  # A-J
DEMO_SEATS_PER_ROW = 12
#: (username, password, may hold for others and sign in to the admin). The box office is staff
#: with create_api_user --staff's rights (not a superuser): it runs the admin's seat, booking
#: and event pages and their actions, and sees the audit trail.
DEMO_USERS = [
    ("alice", "demo-alice", False),
    ("bob", "demo-bob", False),
    ("boxoffice", "demo-boxoffice", True),
]


class Command(BaseCommand):
    help = (
        "Load the demo: an event of 10 rows x 12 seats and the users alice, bob and boxoffice "
        "(who may hold for others and sign in to the admin), and print their passwords and API tokens. "
        "Safe to run again."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            existing = Event.objects.filter(name=DEMO_EVENT_NAME).order_by("pk").first()
            created = existing is None
            event = existing or event_create_with_seats(
                name=DEMO_EVENT_NAME,
                starts_at=timezone.now() + timedelta(days=30),
                rows=DEMO_ROWS,
                seats_per_row=DEMO_SEATS_PER_ROW,
            )
            tokens = {
                username: ensure_api_user(
                    username,
                    hold_for_others=box_office,
                    staff=box_office,
                    password=_password_unless_set(username, password),
                )
                for username, password, box_office in DEMO_USERS
            }
        port = os.environ.get("PORT", "8000")
        self.stdout.write(
            f"{'Created' if created else 'Kept'} demo event {event.pk} '{event.name}' "
            f"({event.seats.count()} seats, rows {DEMO_ROWS[0]}-{DEMO_ROWS[-1]}, 1-{DEMO_SEATS_PER_ROW}); "
            f"seat map: http://127.0.0.1:{port}/events/{event.pk}/"
        )
        self.stdout.write("Demo users (username, password, API token):")
        for username, password, box_office in DEMO_USERS:
            note = (
                f"  (may hold for others; signs in to the admin: http://127.0.0.1:{port}/admin/)" if box_office else ""
            )
            self.stdout.write(f"  {username:<10} {password:<15} {tokens[username]}{note}")
        first_seat = event.seats.order_by("pk").values_list("pk", flat=True).first()
        body = json.dumps({"seatId": first_seat})
        self.stdout.write(
            f"Try: curl -H 'Authorization: Token {tokens['alice']}' -H 'Content-Type: application/json' "
            f"-d '{body}' http://127.0.0.1:{port}/api/lock"
        )


def _password_unless_set(username: str, password: str) -> str | None:
    """The demo password for a new user (or one without a password); a password changed since is kept."""
    user = get_user_model().objects.filter(username=username).first()
    return password if user is None or not user.has_usable_password() else None
