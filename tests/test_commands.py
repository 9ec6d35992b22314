"""The scripting commands: create_event and create_api_user print their result last."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from booking.models import Event, Seat

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


def test_create_event_with_a_block_of_seats():
    event_id = int(run("create_event", "Gala", "--rows", "A-J", "--seats-per-row", "20", "--hold-seconds", "90"))
    event = Event.objects.get(pk=event_id)
    assert (event.name, event.hold_seconds) == ("Gala", 90)
    assert event.seats.count() == 200
    assert Seat.objects.filter(event=event, label="J20", row="J", number=20).exists()


def test_create_event_double_letter_rows_and_one_row():
    event_id = int(
        run("create_event", "Big", "--rows", "AA-AZ", "--seats-per-row", "2", "--starts-at", "2027-01-02T20:00")
    )
    event = Event.objects.get(pk=event_id)
    assert event.seats.count() == 52
    assert event.starts_at.isoformat().startswith("2027-01-02T20:00")
    assert set(event.seats.values_list("row", flat=True)) == {f"A{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    one = Event.objects.get(pk=int(run("create_event", "Small", "--rows", "A", "--seats-per-row", "3")))
    assert list(one.seats.values_list("label", flat=True)) == ["A1", "A2", "A3"]


@pytest.mark.parametrize(
    "args",
    [
        ["--rows", "J-A"],
        ["--rows", "A-"],
        ["--rows", "A-3"],
        ["--rows", "!"],
        ["--seats-per-row", "0"],
        ["--hold-seconds", "0"],
        ["--starts-at", "tomorrow"],
        ["--starts-at", "2027-13-45T20:00"],  # was a ValueError's traceback
        ["--starts-at", "9999-12-31T23:59:59-05:00"],  # after the last day in UTC: an OverflowError
        ["--starts-at", "0001-01-01T00:00:00+05:00"],
    ],
)
def test_create_event_rejects_bad_arguments(args):
    with pytest.raises(CommandError):
        run("create_event", "Bad", *args)
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("name", "args", "said"),
    [
        ("N" * 201, [], "name: Ensure this value has at most 200 characters (it has 201)."),
        ("N" * 300, ["--rows", "A"], "name: Ensure this value has at most 200 characters (it has 300)."),
        ("", [], "name: This field cannot be blank."),
    ],
)
def test_create_event_explains_what_the_model_refuses(name, args, said):
    """A name too long was a DataError's traceback on PostgreSQL and was kept whole on SQLite."""
    with pytest.raises(CommandError) as refused:
        run("create_event", name, *args)
    assert said in str(refused.value)
    assert not Event.objects.exists()


@pytest.mark.postgres  # SQLite's integers have no 32-bit ceiling: there the hold is kept
def test_create_event_explains_a_hold_beyond_the_column():
    with pytest.raises(CommandError) as refused:
        run("create_event", "Big hold", "--hold-seconds", str(2**31))
    assert "hold seconds: Ensure this value is less than or equal to 2147483647." in str(refused.value)
    assert not Event.objects.exists()


def test_create_event_keeps_a_name_of_200_characters():
    event = Event.objects.get(pk=int(run("create_event", "N" * 200)))
    assert event.name == "N" * 200


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["u" * 151], "Ensure this value has at most 150 characters"),
        (["two words"], "Enter a valid username"),
        (["line\nbreak"], "Enter a valid username"),
        ([""], "This field cannot be blank."),
        (["dora", "--password", "short"], "--password: This password is too short."),
        (["dorothea", "--password", "dorothea1"], "--password: The password is too similar to the username."),
    ],
)
def test_create_api_user_explains_a_bad_username_or_password(args, said):
    from django.contrib.auth import get_user_model

    with pytest.raises(CommandError) as refused:
        run("create_api_user", *args)
    assert said in str(refused.value)
    assert not get_user_model().objects.exists()


def test_create_api_user_prints_the_same_token_again():
    first = run("create_api_user", "dora")
    assert Token.objects.get(user__username="dora").key == first
    assert run("create_api_user", "dora") == first


def test_create_api_user_rights():
    run("create_api_user", "office", "--staff", "--hold-for-others")
    user = Token.objects.get(user__username="office").user
    assert user.is_staff
    assert user.has_perm("booking.hold_for_others")
    run("create_api_user", "plain")
    assert not Token.objects.get(user__username="plain").user.has_perm("booking.hold_for_others")


def test_create_api_user_staff_alone_runs_the_box_office_but_may_not_act_for_others():
    run("create_api_user", "clerk", "--staff")
    user = Token.objects.get(user__username="clerk").user
    assert user.is_staff
    for permission in ("view_event", "add_event", "change_event", "view_seat", "add_seat", "change_seat"):
        assert user.has_perm(f"booking.{permission}"), permission
    assert user.has_perm("booking.view_seatevent")
    assert not user.has_perm("booking.change_seatevent")
    assert not user.has_perm("booking.delete_seat")
    assert not user.has_perm("booking.hold_for_others")
    run("create_api_user", "clerk", "--hold-for-others")
    user = Token.objects.get(user__username="clerk").user
    assert user.has_perm("booking.hold_for_others")


def test_numbered_rows_get_distinct_labels():
    event = Event.objects.get(pk=int(run("create_event", "Numbered", "--rows", "1-12", "--seats-per-row", "20")))
    assert event.seats.count() == 240
    assert Seat.objects.get(event=event, row="1", number=11).label == "1-11"
    assert Seat.objects.get(event=event, row="11", number=1).label == "11-1"
