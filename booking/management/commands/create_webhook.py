from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator

from booking.services.webhooks import webhook_endpoint_create


class Command(BaseCommand):
    help = (
        "Register a webhook endpoint for hold.created, hold.released, hold.expired, booking.confirmed and "
        "booking.cancelled (or the --events given); prints its signing secret (whsec_…) as the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("url", help="Where the messages are POSTed (http:// or https://).")
        parser.add_argument("--events", default="", help="Comma-separated event types; all of them by default.")
        parser.add_argument("--description", default="", help="A note for the box office (max. 200 characters).")

    def handle(self, *args, url, events, description, **options):
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError as exc:
            raise CommandError(f"'{url}' is not an http(s) URL.") from exc
        if len(url) > 500 or len(description) > 200:
            raise CommandError("The URL may have at most 500 characters, the description 200.")
        types = [part.strip() for part in events.split(",") if part.strip()]
        try:
            endpoint = webhook_endpoint_create(url=url, event_types=types, description=description)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"Endpoint {endpoint.pk} registered for {', '.join(endpoint.event_types) or 'every event type'}. "
            "Its signing secret (shown once; rotate it in the admin):"
        )
        self.stdout.write(endpoint.secret)
