from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction
from rest_framework.authtoken.models import Token

from booking.holders import validate_holder

#: What the box office needs in the admin (booking app, codenames): events and seats to see,
#: add (an event, a seating block) and change; bookings and the audit trail to read (nobody
#: edits them there). Not booking.hold_for_others: acting for other holders, in the API or
#: through the admin's seat and booking actions (cancelling a booking too), is granted on its
#: own (--hold-for-others).
STAFF_PERMISSIONS = (
    "view_event",
    "add_event",
    "change_event",
    "view_seat",
    "add_seat",
    "change_seat",
    "view_seatevent",
    "view_booking",
)


class Command(BaseCommand):
    help = "Create an API user (or reuse one) and print its token last."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--staff",
            action="store_true",
            help="May sign in to the admin and manage events and seats (not act for other holders).",
        )
        parser.add_argument("--hold-for-others", action="store_true", help="Grant booking.hold_for_others.")
        parser.add_argument("--password", default=None, help="Set a password (for the seat-map page and admin).")

    def handle(self, *args, username, staff, hold_for_others, password, **options):
        validate_username(username)
        if password is not None:
            validate_new_password(password, username)
        token_key = ensure_api_user(username, staff=staff, hold_for_others=hold_for_others, password=password)
        self.stdout.write(token_key)


def validate_username(username: str) -> None:
    """The user model's own rules (length, characters) and a holder's: CommandError if broken.

    get_or_create runs no validator: without this a name too long was a database error
    (PostgreSQL) or stored as given (SQLite)."""
    User = get_user_model()
    field = User._meta.get_field(User.USERNAME_FIELD)
    assert isinstance(field, models.Field)
    try:
        field.clean(username, None)
        validate_holder(username)
    except ValidationError as exc:
        raise CommandError(f"Username {username!r}: {' '.join(exc.messages)}") from exc


def validate_new_password(password: str, username: str) -> None:
    """AUTH_PASSWORD_VALIDATORS, as createsuperuser and the admin's password form apply them."""
    try:
        password_validation.validate_password(password, get_user_model()(username=username))
    except ValidationError as exc:
        raise CommandError(f"--password: {' '.join(exc.messages)}") from exc


def ensure_api_user(
    username: str, *, staff: bool = False, hold_for_others: bool = False, password: str | None = None
) -> str:
    """Create the user if needed, add the asked-for rights (never remove any), return its token."""
    with transaction.atomic():
        user, created = get_user_model().objects.get_or_create(username=username)
        if created and password is None:
            user.set_unusable_password()
        if password is not None:
            user.set_password(password)
        if staff:
            user.is_staff = True
        user.save()
        if staff:
            user.user_permissions.add(
                *Permission.objects.filter(content_type__app_label="booking", codename__in=STAFF_PERMISSIONS)
            )
        if hold_for_others:
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="booking", codename="hold_for_others")
            )
        token, _ = Token.objects.get_or_create(user=user)
    return token.key
