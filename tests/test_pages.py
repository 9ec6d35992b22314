"""The HTML pages: the list of events, the seat map's frame, sign-in; static files served offline."""

import json

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def page_config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="seat-map-config" type="application/json">') + len(
        '<script id="seat-map-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_index_lists_events_with_links_to_their_maps(make_event):
    first, second = make_event(name="Gala"), make_event(name="Matinee")
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/events/{first.id}/">Gala</a>' in html
    assert f'href="/events/{second.id}/">Matinee</a>' in html


def test_seat_map_for_an_anonymous_visitor_offers_sign_in(event):
    response = Client().get(f"/events/{event.id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"/accounts/login/?next=/events/{event.id}/" in html
    assert 'id="confirm"' not in html and 'id="my-bookings"' not in html
    assert 'id="best-form"' not in html and 'id="box-office"' not in html
    config = page_config(response)
    assert config["user"] is None
    assert config["socketPath"] == f"/ws/events/{event.id}/"
    assert config["event"]["id"] == event.id and config["event"]["holdSeconds"] == 60
    assert "/static/booking/seatmap.js" in html
    assert "csrftoken" in response.cookies  # the script's writes need it


def test_seat_map_for_a_signed_in_person_has_the_hold_controls(event, make_user):
    make_user("alice", password="secret-alice-1")
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "secret-alice-1", "next": f"/events/{event.id}/"}
    )
    assert response.status_code == 302 and response["Location"] == f"/events/{event.id}/"
    response = client.get(f"/events/{event.id}/")
    html = response.content.decode()
    assert 'id="confirm"' in html and 'id="release"' in html and 'id="countdown"' in html
    assert 'id="my-bookings"' in html and 'id="booking-list"' in html  # filled from /api/me/bookings
    assert 'id="best-form"' in html and 'id="best-quantity"' in html  # best available, for anyone signed in
    assert 'id="box-office"' not in html and 'id="customer"' not in html  # a buyer never sees the box office
    config = page_config(response)
    assert config["user"] == "alice" and config["boxOffice"] is False
    assert config["maxHolds"] == 10  # the quantity select's 1 … BOOKING_MAX_HOLDS
    assert client.post("/accounts/logout/").status_code == 302
    assert page_config(client.get(f"/events/{event.id}/"))["user"] is None


def test_seat_map_for_the_box_office_has_the_walk_in_and_block_controls(event, make_user, settings):
    make_user("boxoffice", hold_for_others=True, password="secret-box-1")
    settings.BOOKING_MAX_HOLDS = 6
    client = Client()
    assert client.login(username="boxoffice", password="secret-box-1")
    response = client.get(f"/events/{event.id}/")
    html = response.content.decode()
    for control in ("box-office", "box-office-mode", "customer", "block-reason", "best-form"):
        assert f'id="{control}"' in html, control
    assert 'name="click-mode" value="block"' in html
    config = page_config(response)
    assert config["boxOffice"] is True and config["user"] == "boxoffice" and config["maxHolds"] == 6


def test_unknown_event_page_is_an_html_404(db):
    response = Client().get("/events/999999/")
    assert response.status_code == 404
    assert "No such event" in response.content.decode()


@pytest.mark.parametrize("path", ["/events/99999999999999999999999/", "/events/-1/", "/events/abc/"])
def test_an_event_id_no_database_id_can_be_is_a_404(db, path):
    assert Client().get(path).status_code == 404


def test_the_login_page_renders(db):
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


@pytest.mark.parametrize("path", ["/static/booking/seatmap.js", "/static/booking/seatmap.css"])
def test_the_page_assets_are_served_by_the_app(live_server, path):
    import requests

    response = requests.get(live_server.url + path, timeout=5)
    assert response.status_code == 200 and len(response.content) > 500
