"""What a new user meets first: the demo box office signs in to the admin, the pages show dates
a person reads (in the venue's time zone), the sign-in page looks like the rest, and there is
a favicon."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from booking.models import Event, Seat

pytestmark = pytest.mark.django_db

STARTS = datetime(2027, 1, 1, 4, 31, 14, 767794, tzinfo=UTC)


@pytest.fixture
def demo():
    call_command("load_demo", stdout=StringIO())
    return Event.objects.get(name="Demo concert")


# --- The demo's box office in the admin ---------------------------------------------------


def test_the_demo_box_office_signs_in_to_the_admin_and_sees_the_seats(demo):
    """It was no staff user: the admin's sign-in said "enter the correct username and password"."""
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/booking/seat/",
        {"username": "boxoffice", "password": "demo-boxoffice", "next": "/admin/booking/seat/"},
    )
    assert response.status_code == 302 and response["Location"] == "/admin/booking/seat/", response.content[:300]
    seats = client.get("/admin/booking/seat/")
    assert seats.status_code == 200 and "Box office" in seats.text
    assert seats.context["cl"].result_count == Seat.objects.count() > 0  # the demo theatre's
    for page in ("/admin/booking/booking/", "/admin/booking/event/", "/admin/booking/seatevent/"):
        assert client.get(page).status_code == 200, page
    # Its actions are offered: it may act for any holder.
    assert "book_for_holder" in seats.text and "release_holds" in seats.text


def test_the_demo_box_office_is_staff_but_not_a_superuser(demo):
    users = {user.username: user for user in get_user_model().objects.all()}
    box_office = users["boxoffice"]
    assert box_office.is_staff and not box_office.is_superuser
    for right in ("view_seat", "change_seat", "view_event", "change_event", "view_booking", "view_seatevent"):
        assert box_office.has_perm(f"booking.{right}"), right
    assert box_office.has_perm("booking.hold_for_others")
    assert not box_office.has_perm("auth.change_user")  # it hands out no rights or tokens
    assert not users["alice"].is_staff and not users["bob"].is_staff


def test_load_demo_says_where_the_box_office_signs_in(capsys):
    call_command("load_demo")
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("boxoffice"))
    assert "/admin/" in line


def test_a_demo_user_is_not_let_into_the_admin(demo):
    client = Client()
    client.post("/admin/login/", {"username": "alice", "password": "demo-alice", "next": "/admin/"})
    assert client.get("/admin/").status_code == 302  # back to the sign-in


# --- Dates a person reads -------------------------------------------------------------------


@pytest.fixture
def new_year(make_event):
    event = make_event(name="New Year concert")
    Event.objects.filter(pk=event.pk).update(starts_at=STARTS)
    return event


def test_the_events_page_shows_the_start_readably(new_year):
    html = Client().get("/").text
    assert html.count("2027-01-01T04:31:14") == 1  # only in the machine-readable attribute
    assert "Fri 1 Jan 2027, 04:31 UTC" in html
    assert '<time datetime="2027-01-01T04:31:14.767794Z">' in html  # the machine-readable instant stays


def test_the_dates_are_in_the_venues_time_zone(new_year, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    assert "Fri 1 Jan 2027, 05:31 CET" in Client().get("/").text
    assert "Friday 1 January 2027, 05:31 CET" in Client().get(f"/events/{new_year.pk}/").text
    new_year.refresh_from_db()
    assert str(new_year) == "New Year concert (2027-01-01 05:31)"  # as the admin names it


def test_the_seat_map_page_says_when_the_event_starts(new_year):
    html = Client().get(f"/events/{new_year.pk}/").text
    assert "Friday 1 January 2027, 04:31 UTC" in html


# --- The sign-in page and the favicon ---------------------------------------------------------


def test_the_sign_in_page_is_the_sites_page(db):
    html = Client().get("/accounts/login/").text
    assert 'class="topbar"' in html and "/static/booking/seatmap.css" in html  # booking/base.html
    assert 'class="panel sign-in"' in html
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


def test_a_failed_sign_in_says_so_on_the_same_page(make_user):
    make_user("alice", password="right-password-1")
    response = Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "did not match" in response.text and 'class="panel sign-in"' in response.text


def test_the_pages_name_a_favicon_and_favicon_ico_finds_it(live_server):
    import requests

    page = requests.get(live_server.url + "/accounts/login/", timeout=5).text
    assert '<link rel="icon" href="/static/booking/favicon.svg" type="image/svg+xml">' in page
    icon = requests.get(live_server.url + "/favicon.ico", timeout=5)
    assert icon.status_code == 200, icon.status_code
    assert icon.history and icon.history[0].status_code == 302
    assert icon.headers["Content-Type"].startswith("image/svg+xml") and b"<svg" in icon.content
