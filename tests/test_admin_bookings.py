"""The box office's bookings in the admin: listed with their seats now and status, found by
reference as a customer reads it out, filtered, shown read-only with their seats, cancelled
seats and audit rows, and cancelled through the service (audit rows, seats for sale again),
never edited; seats and the audit trail link to their booking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from booking import services
from booking.errors import Busy
from booking.models import Booking, Event, Seat, SeatAction, SeatEvent, SeatStatus

BOOKINGS_URL = "/admin/booking/booking/"
SEATS_URL = "/admin/booking/seat/"
AUDIT_URL = "/admin/booking/seatevent/"
FIND_URL = f"{BOOKINGS_URL}find/"
MAX_PAGE_QUERIES = 10


@pytest.fixture
def clerk_client(client, make_user):
    """Staff as `create_api_user --staff` makes them: may look, may not act for holders."""
    client.force_login(make_user("clerk", staff=True, password="pw"))
    return client


def seat(event, label) -> Seat:
    return Seat.objects.get(event=event, label=label)


def book(api_client, event, labels, order_id=None) -> dict:
    """Lock and confirm through the API; the confirm's booking."""
    ids = [seat(event, label).pk for label in labels]
    assert api_client.post("/api/lock", {"seatIds": ids}, format="json").status_code == 200
    body = {"seatIds": ids, **({"orderId": order_id} if order_id else {})}
    response = api_client.post("/api/confirm", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["booking"]


def listed(client, **params) -> list[str]:
    response = client.get(BOOKINGS_URL, params)
    assert response.status_code == 200
    return [b.reference for b in response.context["cl"].result_list]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def run_cancel(client, references, *, url=BOOKINGS_URL):
    """Pick the cancel action on the bookings list (its confirmation page), then confirm it."""
    ids = list(Booking.objects.filter(reference__in=references).values_list("pk", flat=True))
    first = client.post(url, {"action": "cancel_bookings", "_selected_action": ids, "index": 0, "select_across": 0})
    assert first.status_code == 200
    done = client.post(
        url,
        {"action": "cancel_bookings", "_selected_action": ids, "select_across": 0, "confirm": "yes"},
        follow=True,
    )
    assert done.status_code == 200
    return first, done


def hyphenated_lower(reference: str) -> str:
    return f"{reference[:4]}-{reference[4:]}".lower()


# --- The list ------------------------------------------------------------------------


def test_list_shows_reference_event_holder_order_seats_now_status_and_time(
    staff_client, event, alice, django_assert_max_num_queries
):
    shop = book(alice, event, ["A1", "A2"], order_id="shop-4711")
    walk_in = services.seats_admin_book(seat_ids=[seat(event, "B1").pk], holder="walk-in").references[0]
    gone = book(alice, event, ["C1"])
    services.booking_cancel(reference=gone["reference"], holder=None)
    for n in range(20):  # a full page: no query per row
        services.seats_admin_book(seat_ids=[seat(event, f"C{n % 9 + 2}").pk], holder=f"fan{n}")
        services.seats_admin_cancel(seat_ids=[seat(event, f"C{n % 9 + 2}").pk])

    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = staff_client.get(BOOKINGS_URL)
    assert response.status_code == 200
    rows = {b.reference: b for b in response.context["cl"].result_list}
    assert len(rows) == 23
    assert rows[shop["reference"]].seat_n == 2 and rows[walk_in].seat_n == 1 and rows[gone["reference"]].seat_n == 0
    html = response.text
    assert f">{shop['reference']}</a>" in html and "shop-4711" in html and "walk-in" in html
    for header in ("Reference", "Event", "Holder", "Order id", "Seats now", "Status", "Created at"):
        assert header in html
    assert html.count(">confirmed</span>") == 2 and html.count(">cancelled</span>") == 21
    # Newest first, as the API lists them.
    assert list(rows)[-1] == shop["reference"]


def test_no_add_edit_or_delete_of_bookings(staff_client, admin_client, event, alice):
    made = book(alice, event, ["A1"], order_id="o-1")
    booking = Booking.objects.get(reference=made["reference"])
    for client in (staff_client, admin_client):  # not even a superuser
        assert client.get(f"{BOOKINGS_URL}add/").status_code == 403
        assert client.post(f"{BOOKINGS_URL}add/", {"holder": "x", "event": event.pk}).status_code == 403
        assert client.post(f"{BOOKINGS_URL}{booking.pk}/change/", {"holder": "mallory"}).status_code == 403
        assert client.post(f"{BOOKINGS_URL}{booking.pk}/delete/", {"post": "yes"}).status_code == 403
        listing = client.get(BOOKINGS_URL)
        assert "delete_selected" not in listing.text and "Add booking" not in listing.text
    booking.refresh_from_db()
    assert (booking.holder, booking.order_id) == ("alice", "o-1")
    assert seat(event, "A1").booking_id == booking.pk


# --- Search: one box finds a booking by reference, order id or holder ---------------------


def test_search_by_reference_in_any_case_with_a_hyphen_by_order_id_and_by_holder(staff_client, event, alice, bob):
    mine = book(alice, event, ["A1"], order_id="ORD-77")["reference"]
    other = book(bob, event, ["A2"], order_id="ORD-78")["reference"]

    assert listed(staff_client, q=mine) == [mine]
    assert listed(staff_client, q=mine.lower()) == [mine]
    assert listed(staff_client, q=hyphenated_lower(mine)) == [mine]
    assert listed(staff_client, q=f"  {mine[:4]} {mine[4:]} ") == [mine]
    # Read aloud: "O" for zero, "I" or "L" for one.
    misread = mine.replace("0", "o").replace("1", "l")
    assert listed(staff_client, q=misread) == [mine]
    assert listed(staff_client, q="ORD-78") == [other]
    assert listed(staff_client, q="ORD-7") == []  # order ids are exact
    assert listed(staff_client, q="ali") == [mine]  # a holder's name from its beginning
    assert listed(staff_client, q="ZZZZZZZZ") == []
    assert "7kq2-m9xd" in staff_client.get(BOOKINGS_URL).text  # the help says how to type it


def test_the_index_finds_a_booking_in_one_search(staff_client, event, alice):
    ref = book(alice, event, ["A1"])["reference"]
    booking = Booking.objects.get(reference=ref)
    index = staff_client.get("/admin/")
    assert index.status_code == 200
    assert 'id="find-booking"' in index.text and f'action="{FIND_URL}"' in index.text

    found = staff_client.get(FIND_URL, {"q": hyphenated_lower(ref)})
    assert found.status_code == 302 and found["Location"] == f"{BOOKINGS_URL}{booking.pk}/change/"
    page = staff_client.get(found["Location"])
    assert page.status_code == 200 and ref in page.text

    # No match, or several: the list's search, where the box office sees what there is.
    nothing = staff_client.get(FIND_URL, {"q": "NOPE0000"}, follow=True)
    assert nothing.redirect_chain[-1][0] == f"{BOOKINGS_URL}?q=NOPE0000"
    assert list(nothing.context["cl"].result_list) == []
    book(alice, event, ["A2"])
    several = staff_client.get(FIND_URL, {"q": "alice"})
    assert several["Location"] == f"{BOOKINGS_URL}?q=alice"
    assert staff_client.get(FIND_URL)["Location"] == BOOKINGS_URL


# --- Filters -----------------------------------------------------------------------------


def test_filters_by_event_and_by_status_now(staff_client, event, make_event, alice):
    other = make_event(name="Matinee", rows="A", seats_per_row=4)
    whole = book(alice, event, ["A1", "A2"])["reference"]
    partly = book(alice, event, ["B1", "B2"])["reference"]
    elsewhere = book(alice, other, ["A1"])["reference"]
    gone = book(alice, other, ["A2"])["reference"]
    services.booking_cancel(reference=gone, holder=None)
    services.booking_cancel(reference=partly, holder=None, seat_ids=[seat(event, "B1").pk])

    assert set(listed(staff_client, event__id__exact=event.pk)) == {whole, partly}
    assert set(listed(staff_client, event__id__exact=other.pk)) == {elsewhere, gone}
    # Confirmed while a seat is booked in it (a partly cancelled booking too), cancelled once none is.
    assert set(listed(staff_client, status="confirmed")) == {whole, partly, elsewhere}
    assert listed(staff_client, status="cancelled") == [gone]
    assert listed(staff_client, status="cancelled", event__id__exact=event.pk) == []
    page = staff_client.get(BOOKINGS_URL).text
    assert "Confirmed (a seat booked now)" in page and "Cancelled (no seat left)" in page


# --- The booking's page --------------------------------------------------------------------


def test_booking_page_is_read_only_with_seats_now_cancelled_seats_and_audit_rows(
    staff_client, staff, event, alice, django_assert_max_num_queries
):
    made = book(alice, event, ["A1", "A2", "A3"], order_id="shop-9")
    booking = Booking.objects.get(reference=made["reference"])
    services.booking_cancel(reference=booking.reference, holder=None, seat_ids=[seat(event, "A2").pk], actor=staff)

    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = staff_client.get(f"{BOOKINGS_URL}{booking.pk}/change/")
    assert response.status_code == 200
    html = response.text
    assert booking.reference in html and "shop-9" in html and "alice" in html and ">confirmed</span>" in html
    fields = response.context["adminform"]
    assert not fields.form.fields  # nothing to edit
    a1, a2, a3 = (seat(event, label) for label in ("A1", "A2", "A3"))
    seats_now = html[html.index("Seats now") : html.index("Cancelled seats")]
    assert f'href="{SEATS_URL}{a1.pk}/change/">A1</a>' in seats_now and ">A3</a>" in seats_now
    assert ">A2</a>" not in seats_now
    assert f"booking__id__exact={booking.pk}" in seats_now  # the seats, in the seat list
    cancelled = html[html.index("Cancelled seats") : html.index("Audit trail (newest first)")]
    assert f'href="{SEATS_URL}{a2.pk}/change/">A2</a>' in cancelled and ">A1</a>" not in cancelled
    # The audit rows: booked three times, one cancelled by the box office; read-only.
    inline = response.context["inline_admin_formsets"][0]
    rows = [(form.original.action, form.original.seat.label) for form in inline]
    assert sorted(rows) == [("booked", "A1"), ("booked", "A2"), ("booked", "A3"), ("cancelled", "A2")]
    assert 'name="audit_events-0-action"' not in html
    assert "Cancel this booking" in html and f"{AUDIT_URL}?booking__id__exact={booking.pk}" in html

    trail = staff_client.get(AUDIT_URL, {"booking__id__exact": booking.pk})
    assert trail.status_code == 200 and len(trail.context["cl"].result_list) == 4
    seats = staff_client.get(SEATS_URL, {"booking__id__exact": booking.pk})
    assert {s.label for s in seats.context["cl"].result_list} == {"A1", "A3"}


def test_a_cancelled_booking_shows_no_cancel_button(staff_client, event, alice):
    ref = book(alice, event, ["A1"])["reference"]
    services.booking_cancel(reference=ref, holder=None)
    booking = Booking.objects.get(reference=ref)
    html = staff_client.get(f"{BOOKINGS_URL}{booking.pk}/change/").text
    assert ">cancelled</span>" in html and "Cancel this booking" not in html


# --- The cancel action ---------------------------------------------------------------------


def test_cancel_action_goes_through_the_service_and_frees_the_seats(
    staff_client, staff, event, alice, bob, monkeypatch
):
    first_ref = book(alice, event, ["A1", "A2"])["reference"]
    second_ref = book(bob, event, ["B1"])["reference"]
    kept_ref = book(bob, event, ["C1"])["reference"]
    calls = []
    real = services.booking_cancel

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(services, "booking_cancel", spy)

    first, done = run_cancel(staff_client, [first_ref, second_ref])

    assert "Cancel bookings" in first.text and "2 bookings selected" in first.text
    assert first_ref in first.text and ">A1</a>, <a" in first.text and "No, take me back" in first.text
    assert sorted(call["reference"] for call in calls) == sorted([first_ref, second_ref])
    assert all(call["holder"] is None and call["actor"] == staff for call in calls)
    for label in ("A1", "A2", "B1"):
        s = seat(event, label)
        assert (s.status, s.booked_by, s.booking_id) == (SeatStatus.AVAILABLE, "", None)
        row = SeatEvent.objects.filter(seat=s).latest("id")
        assert (row.action, row.actor, row.booking.reference) == (
            SeatAction.CANCELLED,
            staff,
            first_ref if label != "B1" else second_ref,
        )
    assert seat(event, "C1").status == SeatStatus.BOOKED and Booking.objects.get(reference=kept_ref)
    (message,) = messages_of(done)
    assert message.startswith("2 bookings cancelled, 3 seats available again: ")
    assert f"{first_ref} (A1, A2)" in message and f"{second_ref} (B1)" in message
    assert set(listed(staff_client, status="cancelled")) == {first_ref, second_ref}
    # The seats are for sale again.
    assert bob.post("/api/lock", {"seatId": seat(event, "A1").pk}, format="json").status_code == 200


def test_the_confirmation_page_changes_nothing(staff_client, event, alice):
    ref = book(alice, event, ["A1"])["reference"]
    booking = Booking.objects.get(reference=ref)
    response = staff_client.post(
        BOOKINGS_URL, {"action": "cancel_bookings", "_selected_action": [booking.pk], "index": 0}
    )
    assert response.status_code == 200 and "No, take me back" in response.text
    assert seat(event, "A1").status == SeatStatus.BOOKED
    assert not SeatEvent.objects.filter(action=SeatAction.CANCELLED).exists()


def test_cancelling_an_already_cancelled_booking_is_a_message_not_an_error(staff_client, event, alice):
    gone = book(alice, event, ["A1"])["reference"]
    live = book(alice, event, ["A2"])["reference"]
    services.booking_cancel(reference=gone, holder=None)

    first, done = run_cancel(staff_client, [gone, live])
    assert "1 confirmed (with seats booked now), 1 already cancelled" in first.text
    texts = messages_of(done)
    assert texts[0] == f"1 booking cancelled, 1 seat available again: {live} (A2)."
    assert texts[1] == f"{gone} not cancelled: Nothing is left to cancel in booking {gone}."
    levels = [m.level_tag for m in done.context["messages"]]
    assert levels == ["success", "warning"]

    _, again = run_cancel(staff_client, [gone])
    assert messages_of(again) == [f"{gone} not cancelled: Nothing is left to cancel in booking {gone}."]


def test_a_busy_booking_is_reported_and_the_others_are_cancelled(staff_client, event, alice, monkeypatch):
    busy = book(alice, event, ["A1"])["reference"]
    fine = book(alice, event, ["A2"])["reference"]
    real = services.booking_cancel

    def sometimes_busy(**kwargs):
        if kwargs["reference"] == busy:
            raise Busy()
        return real(**kwargs)

    monkeypatch.setattr(services, "booking_cancel", sometimes_busy)
    _, done = run_cancel(staff_client, [busy, fine])
    assert messages_of(done)[1] == f"{busy} not cancelled: The seats are busy; retry shortly."
    assert [m.level_tag for m in done.context["messages"]] == ["success", "error"]
    assert seat(event, "A1").status == SeatStatus.BOOKED and seat(event, "A2").status == SeatStatus.AVAILABLE


def test_the_box_office_cancels_after_the_holders_window_closed(staff_client, event, alice, settings):
    ref = book(alice, event, ["A1"])["reference"]
    Event.objects.filter(pk=event.pk).update(starts_at=timezone.now() - timedelta(hours=1))
    refused = alice.post(f"/api/bookings/{ref}/cancel", {}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "cancel_window_closed"
    _, done = run_cancel(staff_client, [ref])
    assert messages_of(done) == [f"1 booking cancelled, 1 seat available again: {ref} (A1)."]
    assert seat(event, "A1").status == SeatStatus.AVAILABLE


def test_the_booking_pages_cancel_button_runs_the_action_on_that_booking(staff_client, event, alice):
    ref = book(alice, event, ["A1"])["reference"]
    other = book(alice, event, ["A2"])["reference"]
    booking = Booking.objects.get(reference=ref)
    page = staff_client.get(f"{BOOKINGS_URL}{booking.pk}/change/").text
    assert f'action="{BOOKINGS_URL}"' in page and 'value="cancel_bookings"' in page
    assert f'name="_selected_action" value="{booking.pk}"' in page
    confirm = staff_client.post(
        BOOKINGS_URL, {"action": "cancel_bookings", "_selected_action": [booking.pk], "index": 0, "select_across": 0}
    )
    assert "1 booking selected" in confirm.text and other not in confirm.text


# --- Who may do what ---------------------------------------------------------------------


def test_staff_without_hold_for_others_see_bookings_but_cannot_cancel(clerk_client, event, alice):
    ref = book(alice, event, ["A1"])["reference"]
    booking = Booking.objects.get(reference=ref)
    listing = clerk_client.get(BOOKINGS_URL)
    assert listing.status_code == 200 and ref in listing.text
    assert "cancel_bookings" not in listing.text
    page = clerk_client.get(f"{BOOKINGS_URL}{booking.pk}/change/")
    assert page.status_code == 200 and "Cancel this booking" not in page.text
    assert 'id="find-booking"' in clerk_client.get("/admin/").text
    clerk_client.post(
        BOOKINGS_URL,
        {"action": "cancel_bookings", "_selected_action": [booking.pk], "select_across": 0, "confirm": "yes"},
    )
    assert seat(event, "A1").status == SeatStatus.BOOKED
    assert not SeatEvent.objects.filter(action=SeatAction.CANCELLED).exists()


def test_create_api_user_staff_may_view_bookings_and_nothing_more(make_user):
    clerk = make_user("clerk", staff=True)
    assert clerk.has_perm("booking.view_booking")
    for permission in ("add_booking", "change_booking", "delete_booking", "hold_for_others"):
        assert not clerk.has_perm(f"booking.{permission}"), permission


def test_staff_without_the_view_permission_get_no_bookings(client, make_user, event, alice):
    usher = make_user("usher", staff=True, password="pw")
    usher.user_permissions.remove(*usher.user_permissions.filter(codename="view_booking"))
    client.force_login(get_user_model().objects.get(pk=usher.pk))
    assert client.get(BOOKINGS_URL).status_code == 403
    assert client.get(FIND_URL, {"q": "alice"}).status_code == 403
    assert 'id="find-booking"' not in client.get("/admin/").text


@pytest.mark.parametrize("url", [BOOKINGS_URL, FIND_URL])
def test_a_user_who_is_not_staff_is_refused(client, make_user, url):
    client.force_login(make_user("punter", hold_for_others=True, password="pw"))
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- Seats, the audit trail and events link to bookings ------------------------------------


def test_seat_page_and_seat_list_link_to_the_booking(staff_client, event, alice, django_assert_max_num_queries):
    ref = book(alice, event, ["A1"])["reference"]
    booking = Booking.objects.get(reference=ref)
    link = f'<a href="{BOOKINGS_URL}{booking.pk}/change/"><code>{ref}</code></a>'
    a1 = seat(event, "A1")
    page = staff_client.get(f"{SEATS_URL}{a1.pk}/change/")
    assert page.status_code == 200 and link in page.text
    # The seat's audit rows name the booking too.
    assert page.text.count(link) == 2

    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        listing = staff_client.get(SEATS_URL, {"event__id__exact": event.pk})
    assert listing.text.count(link) == 1 and ">Booking</a>" in listing.text

    services.booking_cancel(reference=ref, holder=None)
    page = staff_client.get(f"{SEATS_URL}{a1.pk}/change/").text
    state_now = page[page.index("State now") : page.index("Stored state")]
    assert ref not in state_now  # no booking now; its history still names it
    assert page.count(link) == 2


def test_book_action_names_the_booking_of_each_event(staff_client, event, make_event):
    other = make_event(name="Matinee", rows="A", seats_per_row=4)
    chosen = [seat(event, "A1"), seat(event, "A2"), seat(other, "A1")]
    ids = [s.pk for s in chosen]
    staff_client.post(SEATS_URL, {"action": "book_for_holder", "_selected_action": ids, "index": 0})
    done = staff_client.post(
        SEATS_URL,
        {"action": "book_for_holder", "_selected_action": ids, "select_across": 0, "confirm": "yes", "holder": "carol"},
        follow=True,
    )
    bookings = {b.event_id: b for b in Booking.objects.filter(holder="carol")}
    assert set(bookings) == {event.pk, other.pk}
    (message,) = messages_of(done)
    assert message.startswith("3 seats booked for carol, bookings ")
    for booking in bookings.values():
        assert f'<a href="{BOOKINGS_URL}{booking.pk}/change/"><code>{booking.reference}</code></a>' in message
    assert bookings[event.pk].seats.count() == 2


def test_audit_trail_shows_and_finds_the_booking(admin_client, event, alice, django_assert_max_num_queries):
    ref = book(alice, event, ["A1", "A2"])["reference"]
    booking = Booking.objects.get(reference=ref)
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = admin_client.get(AUDIT_URL)
    rows = {(r.action, r.seat.label): r for r in response.context["cl"].result_list}
    assert rows[("booked", "A1")].booking_id == booking.pk and rows[("locked", "A1")].booking_id is None
    link = f'<a href="{BOOKINGS_URL}{booking.pk}/change/"><code>{ref}</code></a>'
    assert response.text.count(link) == 2
    found = admin_client.get(AUDIT_URL, {"q": hyphenated_lower(ref)})
    assert sorted((r.action, r.seat.label) for r in found.context["cl"].result_list) == [
        ("booked", "A1"),
        ("booked", "A2"),
    ]
    assert len(admin_client.get(AUDIT_URL, {"q": "alice"}).context["cl"].result_list) == 4  # holders still


def test_event_list_links_to_its_bookings(staff_client, event, alice):
    ref = book(alice, event, ["A1"])["reference"]
    html = staff_client.get("/admin/booking/event/").text
    assert f'href="{BOOKINGS_URL}?event__id__exact={event.pk}">Bookings</a>' in html
    assert listed(staff_client, event__id__exact=event.pk) == [ref]
