"""The box office's admin: pages load in a bounded number of queries, actions go
through the services (rules, audit rows, live push), seating blocks are validated
and all or nothing, audit rows are read-only, and only staff get in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token

from booking import services
from booking.models import Booking, Event, Seat, SeatAction, SeatEvent, SeatStatus
from booking.services import pipeline

SEATS_URL = "/admin/booking/seat/"
EVENTS_URL = "/admin/booking/event/"
AUDIT_URL = "/admin/booking/seatevent/"

#: Generous for what the admin needs (session, user, counts, rows, filters), far
#: below what one query per row would take on a page of 100 seats.
MAX_PAGE_QUERIES = 10


@pytest.fixture
def big_event(make_event):
    """1 000 seats: rows A-J × 100."""
    return make_event(name="Big night", rows="ABCDEFGHIJ", seats_per_row=100)


def seat(event, label) -> Seat:
    return Seat.objects.get(event=event, label=label)


def expire_hold(seat_obj: Seat) -> None:
    Seat.objects.filter(pk=seat_obj.pk).update(lock_expires_at=timezone.now() - timedelta(minutes=5))


def lock_via_api(api_client, seat_obj: Seat) -> None:
    response = api_client.post("/api/lock", {"seatId": seat_obj.pk}, format="json")
    assert response.status_code == 200, response.content


def run_action(client, action, seats, *, url=SEATS_URL, extra=None, select_across=False):
    """Pick the action on the changelist (gets the confirmation page), then confirm it."""
    ids = [s.pk for s in seats]
    first = client.post(
        url, {"action": action, "_selected_action": ids, "index": 0, "select_across": int(select_across)}
    )
    assert first.status_code == 200, "an action first asks for confirmation"
    confirm = {"action": action, "_selected_action": ids, "select_across": int(select_across), "confirm": "yes"}
    return first, client.post(url, {**confirm, **(extra or {})}, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def audit(seat_obj: Seat) -> list[tuple[str, str]]:
    return list(seat_obj.audit_events.order_by("created_at", "id").values_list("action", "holder"))


# --- Pages load, with no query per row ---------------------------------------------


def test_event_list_shows_live_counts_in_a_bounded_number_of_queries(
    staff_client, big_event, make_event, alice, bob, django_assert_max_num_queries
):
    for n in range(5):
        make_event(name=f"Matinee {n}", rows="AB", seats_per_row=5)
    lock_via_api(alice, seat(big_event, "A1"))
    lock_via_api(alice, seat(big_event, "A2"))
    lock_via_api(bob, seat(big_event, "B1"))
    expire_hold(seat(big_event, "B1"))  # an expired hold counts as available
    services.seats_admin_book(seat_ids=[seat(big_event, "C1").pk], holder="carol")

    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = staff_client.get(EVENTS_URL)
    assert response.status_code == 200
    row = next(r for r in response.context["cl"].result_list if r.pk == big_event.pk)
    assert (row.seat_n, row.available_n, row.locked_n, row.booked_n) == (1000, 997, 2, 1)
    assert "Big night" in response.text and "Add seating block" in response.text


def test_event_change_page_loads_with_its_counts(staff_client, big_event, django_assert_max_num_queries):
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = staff_client.get(f"{EVENTS_URL}{big_event.pk}/change/")
    assert response.status_code == 200
    assert "1000 seats: 1000 available, 0 held, 0 booked" in response.text


def test_seat_list_of_a_1000_seat_event_is_paginated_with_no_query_per_row(
    staff_client, big_event, alice, django_assert_max_num_queries
):
    lock_via_api(alice, seat(big_event, "A1"))
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = staff_client.get(SEATS_URL, {"event__id__exact": big_event.pk})
    assert response.status_code == 200
    page = response.context["cl"].result_list
    assert len(page) == 100
    assert "held" in response.text and "alice" in response.text
    assert " s</td>" in response.text  # the hold's time left


def test_seat_change_page_loads_with_its_audit_rows_read_only(
    staff_client, big_event, alice, django_assert_max_num_queries
):
    a1 = seat(big_event, "A1")
    for _ in range(20):  # twenty audit rows: no query per inline row either
        lock_via_api(alice, a1)
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = staff_client.get(f"{SEATS_URL}{a1.pk}/change/")
    assert response.status_code == 200
    assert response.text.count(">extended<") == 19
    assert 'name="status"' not in response.text and 'name="locked_by"' not in response.text
    assert 'name="audit_events-0-action"' not in response.text
    assert "Release hold" in response.text and "Cancel booking" not in response.text


def test_seat_page_buttons_lead_to_the_action_and_to_the_seats_audit_trail(staff_client, admin_client, event, alice):
    a1, a2 = seat(event, "A1"), seat(event, "A2")
    lock_via_api(alice, a1)
    lock_via_api(alice, a2)
    page = staff_client.get(f"{SEATS_URL}{a1.pk}/change/").text
    assert 'name="action" value="release_holds"' in page and f'value="{a1.pk}"' in page
    _, done = run_action(staff_client, "release_holds", [a1])
    assert "1 seat released." in messages_of(done)
    trail = admin_client.get(AUDIT_URL, {"seat__id__exact": a1.pk})
    assert trail.status_code == 200
    assert [(r.action, r.holder) for r in trail.context["cl"].result_list] == [
        ("admin_released", "alice"),
        ("locked", "alice"),
    ]


def test_the_seat_form_cannot_change_a_status(staff_client, event):
    a1 = seat(event, "A1")
    response = staff_client.post(
        f"{SEATS_URL}{a1.pk}/change/",
        {
            "status": "booked",
            "booked_by": "mallory",
            "label": "Z9",
            "audit_events-TOTAL_FORMS": 0,
            "audit_events-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code in (200, 302)
    a1.refresh_from_db()
    assert (a1.status, a1.booked_by, a1.label) == (SeatStatus.AVAILABLE, "", "A1")
    assert not SeatEvent.objects.filter(seat=a1).exists()


# --- Filters and search -------------------------------------------------------------


def test_status_filter_counts_an_expired_hold_as_available(staff_client, event, alice, bob):
    a1, a2 = seat(event, "A1"), seat(event, "A2")
    lock_via_api(alice, a1)
    lock_via_api(bob, a2)
    expire_hold(a2)

    def labels(**params):
        response = staff_client.get(SEATS_URL, {"event__id__exact": event.pk, **params})
        assert response.status_code == 200
        return {s.label for s in response.context["cl"].result_list}

    assert labels(status_now="locked") == {"A1"}
    available = labels(status_now="available")
    assert "A2" in available and "A1" not in available and len(available) == 29
    assert labels(status_now="expired") == {"A2"}
    assert labels(status_now="booked") == set()


def test_search_by_label_and_by_holder(staff_client, event, alice):
    lock_via_api(alice, seat(event, "B3"))
    services.seats_admin_book(seat_ids=[seat(event, "C7").pk], holder="alice-friend")

    def labels(q):
        return {s.label for s in staff_client.get(SEATS_URL, {"q": q}).context["cl"].result_list}

    assert labels("b3") == {"B3"}
    assert labels("alice") == {"B3", "C7"}
    assert labels("alice-f") == {"C7"}


# --- Actions --------------------------------------------------------------------------


def test_release_holds_changes_only_live_holds_and_audits_them(
    staff_client, staff, event, alice, bob, django_capture_on_commit_callbacks, monkeypatch
):
    pushed = []
    monkeypatch.setattr(pipeline, "publish_seat_changes", lambda seats, **kwargs: pushed.extend(seats))
    held, free, booked, expired = (seat(event, label) for label in ("A1", "A2", "A3", "A4"))
    lock_via_api(alice, held)
    services.seats_admin_book(seat_ids=[booked.pk], holder="bob")
    lock_via_api(bob, expired)
    expire_hold(expired)

    with django_capture_on_commit_callbacks(execute=True):
        first, response = run_action(staff_client, "release_holds", [held, free, booked, expired])

    assert "Release holds" in first.text and "4 seats selected" in first.text
    held.refresh_from_db()
    assert held.status == SeatStatus.AVAILABLE and held.locked_by == ""
    assert audit(held)[-1] == (SeatAction.ADMIN_RELEASED, "alice")
    assert SeatEvent.objects.get(seat=held, action=SeatAction.ADMIN_RELEASED).actor == staff
    for other, status in ((free, "available"), (booked, "booked"), (expired, "locked")):
        other.refresh_from_db()
        assert other.status == status
    assert not SeatEvent.objects.filter(action=SeatAction.ADMIN_RELEASED).exclude(seat=held).exists()
    text = " ".join(messages_of(response))
    assert "1 seat released." in text
    assert "3 seats skipped" in text
    assert "A3: not held: booked by bob" in text
    assert "A2: not held: available" in text
    assert "A4: not held: available (the hold by bob expired at" in text
    assert [p["label"] for p in pushed] == ["A1"] and pushed[0]["status"] == "available"


def test_book_for_holder_skips_a_live_api_hold_by_someone_else_and_reports_it(staff_client, staff, event, alice, bob):
    free, alices, bobs_expired, already = (seat(event, label) for label in ("B1", "B2", "B3", "B4"))
    lock_via_api(alice, alices)
    lock_via_api(bob, bobs_expired)
    expire_hold(bobs_expired)
    services.seats_admin_book(seat_ids=[already.pk], holder="dave")

    first, response = run_action(
        staff_client, "book_for_holder", [free, alices, bobs_expired, already], extra={"holder": "carol"}
    )
    assert 'name="holder"' in first.text

    for s in (free, bobs_expired):
        s.refresh_from_db()
        assert (s.status, s.booked_by) == (SeatStatus.BOOKED, "carol")
    # The expired hold's expiry is recorded first, then the admin booking.
    assert audit(bobs_expired)[-2:] == [(SeatAction.EXPIRED, "bob"), (SeatAction.ADMIN_BOOKED, "carol")]
    assert audit(free) == [(SeatAction.ADMIN_BOOKED, "carol")]
    assert SeatEvent.objects.get(seat=free).actor == staff

    alices.refresh_from_db()
    assert (alices.status, alices.locked_by) == (SeatStatus.LOCKED, "alice")
    already.refresh_from_db()
    assert already.booked_by == "dave"
    text = " ".join(messages_of(response))
    carols = Booking.objects.get(holder="carol")  # one booking for the action's seats of one event
    assert f'2 seats booked for carol, booking <a href="/admin/booking/booking/{carols.pk}/change/">' in text
    assert f"<code>{carols.reference}</code></a>." in text
    assert "B2: held by alice until" in text
    assert "B4: already booked by dave" in text

    # Alice's hold was respected: she can still book her seat through the API.
    confirm = alice.post("/api/confirm", {"seatId": alices.pk}, format="json")
    assert confirm.status_code == 200 and confirm.json()["seats"][0]["status"] == "booked"


def test_book_for_holder_books_the_holders_own_hold(staff_client, event, alice):
    a5 = seat(event, "A5")
    lock_via_api(alice, a5)
    _, response = run_action(staff_client, "book_for_holder", [a5], extra={"holder": "alice"})
    a5.refresh_from_db()
    assert (a5.status, a5.booked_by) == (SeatStatus.BOOKED, "alice")
    assert audit(a5)[-1] == (SeatAction.ADMIN_BOOKED, "alice")
    (message,) = messages_of(response)
    assert message.startswith("1 seat booked for alice, booking ") and a5.booking.reference in message


def test_book_for_holder_asks_for_a_holder_and_changes_nothing_without_one(staff_client, event):
    a1 = seat(event, "A1")
    _, response = run_action(staff_client, "book_for_holder", [a1], extra={"holder": "   "})
    assert response.status_code == 200
    assert "This field is required." in response.text or "Give the holder" in response.text
    a1.refresh_from_db()
    assert a1.status == SeatStatus.AVAILABLE and not SeatEvent.objects.exists()


def test_cancel_bookings_frees_only_booked_seats(staff_client, staff, event, alice):
    booked, held = seat(event, "C1"), seat(event, "C2")
    services.seats_admin_book(seat_ids=[booked.pk], holder="erin")
    lock_via_api(alice, held)

    _, response = run_action(staff_client, "cancel_bookings", [booked, held])

    booked.refresh_from_db()
    held.refresh_from_db()
    assert booked.status == SeatStatus.AVAILABLE and booked.booked_by == "" and booked.booked_at is None
    assert audit(booked)[-1] == (SeatAction.ADMIN_CANCELLED, "erin")
    assert SeatEvent.objects.get(seat=booked, action=SeatAction.ADMIN_CANCELLED).actor == staff
    assert held.status == SeatStatus.LOCKED
    text = " ".join(messages_of(response))
    assert "1 seat cancelled (available again)." in text
    assert "C2: not booked: held by alice until" in text
    # The seat is for sale again.
    assert alice.post("/api/lock", {"seatId": booked.pk}, format="json").status_code == 200


def test_an_action_over_all_filtered_seats_changes_exactly_those(staff_client, big_event, make_user):
    holders = [make_user(f"fan{n}") for n in range(3)]
    held = [seat(big_event, f"D{n}") for n in range(1, 7)]
    for n, s in enumerate(held):
        services.seats_lock(seat_ids=[s.pk], holder=holders[n % 3].username)
    url = f"{SEATS_URL}?event__id__exact={big_event.pk}&status_now=locked"
    ids = [held[0].pk]  # the page's ticked box; "select all" covers the rest
    staff_client.post(url, {"action": "release_holds", "_selected_action": ids, "index": 0, "select_across": 1})
    response = staff_client.post(
        url,
        {"action": "release_holds", "_selected_action": ids, "select_across": 1, "confirm": "yes"},
        follow=True,
    )
    assert "6 seats released." in messages_of(response)
    assert not Seat.objects.filter(event=big_event).exclude(status=SeatStatus.AVAILABLE).exists()
    assert SeatEvent.objects.filter(action=SeatAction.ADMIN_RELEASED).count() == 6


def test_going_back_from_the_confirmation_changes_nothing(staff_client, event, alice):
    a1 = seat(event, "A1")
    lock_via_api(alice, a1)
    response = staff_client.post(SEATS_URL, {"action": "release_holds", "_selected_action": [a1.pk], "index": 0})
    assert response.status_code == 200 and "No, take me back" in response.text
    a1.refresh_from_db()
    assert a1.status == SeatStatus.LOCKED
    assert not SeatEvent.objects.filter(action=SeatAction.ADMIN_RELEASED).exists()


def test_staff_without_hold_for_others_cannot_run_the_actions(client, make_user, event, alice):
    viewer = make_user("usher", staff=True, password="pw")
    viewer.user_permissions.remove(*viewer.user_permissions.filter(codename="hold_for_others"))
    viewer = get_user_model().objects.get(pk=viewer.pk)
    client.force_login(viewer)
    a1 = seat(event, "A1")
    lock_via_api(alice, a1)
    listing = client.get(SEATS_URL)
    assert listing.status_code == 200 and "release_holds" not in listing.text
    client.post(
        SEATS_URL, {"action": "release_holds", "_selected_action": [a1.pk], "select_across": 0, "confirm": "yes"}
    )
    a1.refresh_from_db()
    assert a1.status == SeatStatus.LOCKED


# --- Seating blocks ---------------------------------------------------------------


def test_new_event_with_a_seating_block(staff_client):
    response = staff_client.post(
        f"{EVENTS_URL}add/",
        {
            "name": "Opening night",
            "starts_at_0": "2027-01-15",
            "starts_at_1": "19:30:00",
            "hold_seconds": 90,
            "rows": "a–c",
            "seats_per_row": 5,
            "first_number": 1,
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    event = Event.objects.get(name="Opening night")
    assert event.hold_seconds == 90
    assert sorted(event.seats.values_list("label", flat=True)) == sorted(f"{r}{n}" for r in "ABC" for n in range(1, 6))


@pytest.mark.parametrize(
    "rows, per_row, message",
    [
        ("J-A", 10, "runs backwards"),
        ("A-!", 10, "is not a row range"),
        ("A-J", 0, "greater than or equal to 1"),
        ("A-ZZ", 200, "one block may have at most"),
        ("A-ZZ", 2000, "at most 100,000"),
    ],
)
def test_new_event_with_a_bad_block_is_rejected_and_not_created(staff_client, rows, per_row, message):
    response = staff_client.post(
        f"{EVENTS_URL}add/",
        {
            "name": "Bad block",
            "starts_at_0": "2027-01-15",
            "starts_at_1": "19:30:00",
            "hold_seconds": 60,
            "rows": rows,
            "seats_per_row": per_row,
            "first_number": 1,
        },
    )
    assert response.status_code == 200
    assert message in response.text
    assert not Event.objects.filter(name="Bad block").exists()
    assert not Seat.objects.exists()


def test_seating_block_added_to_an_existing_event(staff_client, event):
    url = f"{EVENTS_URL}{event.pk}/seating-block/"
    page = staff_client.get(url)
    assert page.status_code == 200 and "Add a seating block" in page.text
    response = staff_client.post(url, {"rows": "D-E", "seats_per_row": 12, "first_number": 1}, follow=True)
    assert "24 seats added to Concert." in messages_of(response)
    assert event.seats.count() == 30 + 24
    assert event.seats.filter(row="E", number=12).exists()


@pytest.mark.parametrize(
    "rows, per_row, first, message",
    [
        ("C-D", 10, 1, "10 of these seats already exist for this event (C1, C2"),
        ("A", 5, 8, "3 of these seats already exist"),
        ("Q-P", 5, 1, "runs backwards"),
        ("", 5, 1, "This field is required."),
    ],
)
def test_seating_block_overlapping_or_malformed_adds_nothing(staff_client, event, rows, per_row, first, message):
    response = staff_client.post(
        f"{EVENTS_URL}{event.pk}/seating-block/", {"rows": rows, "seats_per_row": per_row, "first_number": first}
    )
    assert response.status_code == 200
    assert message in response.text
    assert event.seats.count() == 30  # not even row D of "C-D"


def test_seating_block_is_all_or_nothing_when_a_seat_appears_meanwhile(staff_client, event, monkeypatch):
    """The form's check passed, then a clashing seat appeared: the service adds nothing."""
    from booking.forms import SeatingBlockForm

    real_clean = SeatingBlockForm.clean

    def clean_then_race(form):
        cleaned = real_clean(form)
        Seat.objects.create(event=event, label="F7", row="F", number=7)
        return cleaned

    monkeypatch.setattr(SeatingBlockForm, "clean", clean_then_race)
    response = staff_client.post(
        f"{EVENTS_URL}{event.pk}/seating-block/", {"rows": "E-F", "seats_per_row": 10, "first_number": 1}
    )
    assert response.status_code == 200
    assert "already exist" in response.text
    assert list(event.seats.filter(row__in=["E", "F"]).values_list("label", flat=True)) == ["F7"]


# --- Who gets in --------------------------------------------------------------------


@pytest.mark.parametrize("url", [EVENTS_URL, SEATS_URL, AUDIT_URL, "/admin/auth/user/"])
def test_a_signed_in_user_who_is_not_staff_is_refused(client, make_user, url):
    client.force_login(make_user("punter", password="pw"))
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_non_staff_user_cannot_run_an_action(client, make_user, event, alice):
    client.force_login(make_user("punter", hold_for_others=True, password="pw"))
    a1 = seat(event, "A1")
    lock_via_api(alice, a1)
    response = client.post(
        SEATS_URL, {"action": "release_holds", "_selected_action": [a1.pk], "select_across": 0, "confirm": "yes"}
    )
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    a1.refresh_from_db()
    assert a1.status == SeatStatus.LOCKED


# --- The audit trail ---------------------------------------------------------------


@pytest.fixture
def some_audit(event, alice, bob):
    lock_via_api(alice, seat(event, "A1"))
    lock_via_api(bob, seat(event, "A2"))
    services.seats_admin_book(seat_ids=[seat(event, "A3").pk], holder="carol")
    return SeatEvent.objects.order_by("id")


def test_audit_trail_lists_and_filters_by_action_event_and_holder(
    admin_client, some_audit, event, make_event, django_assert_max_num_queries
):
    other = make_event(name="Other show", rows="A", seats_per_row=3)
    services.seats_admin_book(seat_ids=[other.seats.first().pk], holder="alice")

    def holders(**params):
        response = admin_client.get(AUDIT_URL, params)
        assert response.status_code == 200
        return sorted((row.action, row.holder) for row in response.context["cl"].result_list)

    assert len(holders()) == 4
    assert holders(holder="alice") == [("admin_booked", "alice"), ("locked", "alice")]
    assert holders(action__exact="locked") == [("locked", "alice"), ("locked", "bob")]
    assert holders(event__id__exact=other.pk) == [("admin_booked", "alice")]
    assert holders(event__id__exact=event.pk, holder="alice") == [("locked", "alice")]


def test_audit_trail_page_has_no_query_per_row(admin_client, event, alice, django_assert_max_num_queries):
    a1 = seat(event, "A1")
    for _ in range(15):
        lock_via_api(alice, a1)
        alice.post("/api/unlock", {"seatId": a1.pk}, format="json")
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = admin_client.get(AUDIT_URL)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 30
    assert response.text.count(">alice</a>") >= 30  # the holder, and the actor


def test_nobody_can_add_change_or_delete_audit_rows(admin_client, some_audit):
    row = some_audit.first()
    before = list(SeatEvent.objects.values_list("id", "action", "holder"))
    assert admin_client.get(f"{AUDIT_URL}add/").status_code == 403
    assert admin_client.post(f"{AUDIT_URL}add/", {"action": "booked", "holder": "x"}).status_code == 403
    view = admin_client.get(f"{AUDIT_URL}{row.pk}/change/")
    assert view.status_code == 200 and 'name="holder"' not in view.text  # a read-only view
    assert admin_client.post(f"{AUDIT_URL}{row.pk}/change/", {"holder": "mallory"}).status_code == 403
    assert admin_client.post(f"{AUDIT_URL}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    admin_client.post(AUDIT_URL, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"})
    assert list(SeatEvent.objects.values_list("id", "action", "holder")) == before


def test_an_event_with_history_cannot_be_deleted_from_the_admin(admin_client, some_audit, event):
    response = admin_client.post(f"{EVENTS_URL}{event.pk}/delete/", {"post": "yes"})
    assert response.status_code in (200, 403)
    assert Event.objects.filter(pk=event.pk).exists()
    assert SeatEvent.objects.count() == some_audit.count()


# --- Users and API tokens ------------------------------------------------------------


def test_user_list_shows_rights_and_tokens_without_a_query_per_row(
    admin_client, make_user, django_assert_max_num_queries
):
    for n in range(30):
        make_user(f"fan{n}", hold_for_others=(n % 3 == 0))
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = admin_client.get("/admin/auth/user/", {"hold_for_others": "yes"})
    assert response.status_code == 200
    names = {u.username for u in response.context["cl"].result_list}
    assert names == {f"fan{n}" for n in range(0, 30, 3)} | {"admin"}


def test_grant_and_revoke_hold_for_others_from_the_user_list(admin_client, make_user):
    fan = make_user("fan")
    response = admin_client.post(
        "/admin/auth/user/", {"action": "grant_hold_for_others", "_selected_action": [fan.pk], "index": 0}, follow=True
    )
    assert "1 user may now act for any holder." in messages_of(response)
    assert get_user_model().objects.get(pk=fan.pk).has_perm("booking.hold_for_others")
    admin_client.post(
        "/admin/auth/user/", {"action": "revoke_hold_for_others", "_selected_action": [fan.pk], "index": 0}
    )
    assert not get_user_model().objects.get(pk=fan.pk).has_perm("booking.hold_for_others")


def test_user_page_shows_the_token_and_a_new_one_can_be_issued(admin_client, make_user, anonymous):
    fan = make_user("fan")
    old_key = fan.auth_token.key
    page = admin_client.get(f"/admin/auth/user/{fan.pk}/change/")
    assert page.status_code == 200 and old_key in page.text
    assert "booking | seat | Can hold, book and release seats for any holder" in page.text

    response = admin_client.post(
        "/admin/auth/user/", {"action": "issue_api_token", "_selected_action": [fan.pk], "index": 0}
    )
    new_key = Token.objects.get(user=fan).key
    assert response.status_code == 200 and new_key != old_key
    assert f'<code class="api-token" style="font-size:1.1em;user-select:all">{new_key}</code>' in response.text
    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {old_key}")
    assert anonymous.post("/api/lock", {"seatId": 1}, format="json").status_code == 401


def test_a_new_api_token_travels_in_no_cookie_and_no_session(admin_client, make_user):
    """It was in a success message: the messages framework kept it in its cookie (signed, readable)."""
    from django.contrib.messages.storage.cookie import CookieStorage
    from django.http import HttpRequest

    fans = [make_user("fan"), make_user("fan2")]
    response = admin_client.post(
        "/admin/auth/user/", {"action": "issue_api_token", "_selected_action": [f.pk for f in fans], "index": 0}
    )
    keys = list(Token.objects.filter(user__in=fans).values_list("key", flat=True))
    later = admin_client.get("/admin/auth/user/")  # where a message would have been shown
    for answer in (response, later):
        for name, cookie in answer.cookies.items():
            decoded = CookieStorage(HttpRequest())._decode(cookie.value) if name == "messages" else None
            shown = cookie.value + " ".join(str(m) for m in decoded or [])
            assert not any(key in shown for key in keys), f"a new token in the {name} cookie"
    assert not any(key in later.text for key in keys)
    # Shown once, on the answer to the action, never cached.
    assert len(keys) == 2 and all(key in response.text for key in keys)
    assert "no-store" in response["Cache-Control"]
    assert not any(key in str(value) for key in keys for value in admin_client.session.values())


def test_tokens_have_their_own_admin(admin_client, make_user):
    make_user("fan")
    get_user_model().objects.create_user("newbie")
    listing = admin_client.get("/admin/authtoken/tokenproxy/")
    assert listing.status_code == 200 and "fan" in listing.text
    newbie = get_user_model().objects.get(username="newbie")
    response = admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": newbie.pk})
    assert response.status_code == 302
    assert Token.objects.filter(user=newbie).exists()


def test_admin_pages_are_branded_for_the_box_office(staff_client):
    response = staff_client.get("/admin/")
    assert response.status_code == 200
    assert "Box office" in response.text


# --- The admin services underneath ----------------------------------------------------


def test_admin_booking_of_more_seats_than_one_chunk_books_them_all(big_event):
    ids = list(big_event.seats.order_by("pk").values_list("pk", flat=True))[: services.ADMIN_CHUNK * 2 + 7]
    result = services.seats_admin_book(seat_ids=ids, holder="school-trip")
    assert sorted(result.changed) == ids and result.skipped == {}
    assert Seat.objects.filter(status=SeatStatus.BOOKED, booked_by="school-trip").count() == len(ids)
    assert SeatEvent.objects.filter(action=SeatAction.ADMIN_BOOKED, holder="school-trip").count() == len(ids)


def test_a_seat_deleted_since_it_was_selected_is_skipped_and_the_rest_change(event):
    a1, a2 = seat(event, "A1"), seat(event, "A2")
    gone = a2.pk
    a2.delete()
    result = services.seats_admin_book(seat_ids=[a1.pk, gone], holder="carol")
    assert result.changed == [a1.pk]
    assert result.skipped == {gone: "no longer exists"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_admin_booking_racing_api_locks_never_gives_a_seat_to_two(make_event):
    """One admin booking of ten seats against ten API holders each locking one of them."""
    import threading

    from django.db import connection

    from booking.errors import BookingError

    event = make_event(rows="A", seats_per_row=10)
    ids = list(event.seats.order_by("pk").values_list("pk", flat=True))
    start = threading.Barrier(len(ids) + 1, timeout=10)
    api_winners: set[int] = set()
    admin_result: list[services.AdminResult] = []

    def api_lock(seat_id: int) -> None:
        try:
            start.wait()
            services.seats_lock(seat_ids=[seat_id], holder=f"fan{seat_id}")
            api_winners.add(seat_id)
        except BookingError:
            pass
        finally:
            connection.close()

    def admin_book() -> None:
        try:
            start.wait()
            admin_result.append(services.seats_admin_book(seat_ids=ids, holder="carol"))
        finally:
            connection.close()

    threads = [threading.Thread(target=api_lock, args=(i,)) for i in ids] + [threading.Thread(target=admin_book)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    (result,) = admin_result
    assert set(result.changed).isdisjoint(api_winners)
    assert set(result.changed) | api_winners == set(ids)
    assert set(result.skipped) == api_winners
    for s in Seat.objects.filter(pk__in=ids):
        if s.pk in api_winners:
            assert (s.status, s.locked_by) == (SeatStatus.LOCKED, f"fan{s.pk}")
        else:
            assert (s.status, s.booked_by) == (SeatStatus.BOOKED, "carol")
        assert s.audit_events.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_seats_another_request_keeps_locked_are_skipped_as_busy_not_an_error(make_event):
    import threading

    from django.db import connection, transaction

    event = make_event(rows="A", seats_per_row=3)
    a1, a2 = seat(event, "A1"), seat(event, "A2")
    services.seats_lock(seat_ids=[a1.pk, a2.pk], holder="alice")
    row_locked, release = threading.Event(), threading.Event()

    def hold_row_lock() -> None:
        try:
            with transaction.atomic():
                list(Seat.objects.select_for_update().filter(pk=a1.pk))
                row_locked.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_row_lock)
    holder.start()
    try:
        assert row_locked.wait(timeout=10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 300")
        result = services.seats_admin_release(seat_ids=[a1.pk, a2.pk])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        release.set()
        holder.join(timeout=10)
    assert result.changed == []
    assert set(result.skipped) == {a1.pk, a2.pk} and "busy" in result.skipped[a1.pk]
    assert Seat.objects.filter(pk__in=[a1.pk, a2.pk], status=SeatStatus.LOCKED).count() == 2

    retry = services.seats_admin_release(seat_ids=[a1.pk, a2.pk])
    assert sorted(retry.changed) == sorted([a1.pk, a2.pk])


@pytest.mark.parametrize("url", [f"{EVENTS_URL}add/", f"{SEATS_URL}add/", "/admin/booking/", "/admin/"])
def test_add_pages_and_index_load_for_staff(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 200
    if url == f"{EVENTS_URL}add/":
        assert 'name="rows"' in response.text and 'value="A-J"' in response.text
    if url == f"{SEATS_URL}add/":
        assert 'name="label"' in response.text and 'name="status"' not in response.text


def test_a_single_seat_can_be_added_and_a_duplicate_label_is_refused(staff_client, event):
    data = {"event": event.pk, "label": "Z1", "row": "Z", "number": 1}
    assert staff_client.post(f"{SEATS_URL}add/", data).status_code == 302
    added = seat(event, "Z1")
    assert added.status == SeatStatus.AVAILABLE
    again = staff_client.post(f"{SEATS_URL}add/", data)
    assert again.status_code == 200 and "already exists" in again.text
    assert event.seats.filter(label="Z1").count() == 1
