import json
import os
from datetime import timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from booking.layouts import read_layout
from booking.management.commands.create_api_user import ensure_api_user
from booking.models import Event
from booking.services.layouts import event_create_with_layout

DEMO_EVENT_NAME = "Demo concert"
#: The demo's venue: a theatre of four sections (booking/venues/make_sample_theatre.py writes it).
DEMO_LAYOUT = Path(__file__).resolve().parents[2] / "venues" / "sample_theatre.csv"
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
        "Load the demo: an event in a sample theatre (booking/venues/sample_theatre.csv: Stalls, Circle left "
        "and right, Balcony) and the users alice, bob and boxoffice (who may hold for others and sign in "
        "to the admin), and print their passwords and API tokens. Safe to run again."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            existing = Event.objects.filter(name=DEMO_EVENT_NAME).order_by("pk").first()
            created = existing is None
            event = existing or event_create_with_layout(
                name=DEMO_EVENT_NAME,
                starts_at=timezone.now() + timedelta(days=30),
                seats=read_layout(DEMO_LAYOUT.read_bytes()),
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
        sections = list(
            event.seats.exclude(section="").values_list("section", flat=True).order_by("section").distinct()
        )
        self.stdout.write(
            f"{'Created' if created else 'Kept'} demo event {event.pk} '{event.name}' "
            f"({event.seats.count()} seats{', sections ' + ', '.join(sorted(sections)) if sections else ''}); "
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
