"""The seat-map page in a real browser (Playwright driving Debian's chromium)
against a daphne process: two signed-in people see each other's holds and
bookings live, a conflict is explained, and an unconfirmed hold turns free on
both screens at its expiry; a confirm shows its booking's reference, "My
bookings" lists it and cancels it (its seats free on every screen), or shows
why the API refused; the box office finds the booking in the admin."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import require
from .processes import REPO, child_env, free_port, start_live_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESULTS = REPO / "test-results"
SHORT_HOLD = 3  # seconds
#: The two browsers' clocks are this far off the server's, one ahead and one behind: the page
#: must count on the server's time (uncorrected, alice would never see her hold, bob would see
#: an expired hold for 20 s more).
SKEW_MS = 20_000
#: A booking reference: 8 characters of Crockford base32.
REFERENCE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")


@pytest.fixture
def scene(make_event, make_user) -> dict[str, int]:
    """Two people and two events, one with a few booked seats and one with short holds; their ids."""
    from booking.services import seats_admin_book

    alice = make_user("alice", password="alice-browser-pw")
    make_user("bob", password="bob-browser-pw")
    gala = make_event(name="Gala", rows=("A", "B", "C", "D"), seats_per_row=10, hold_seconds=60)
    short = make_event(name="Short holds", rows=("A",), seats_per_row=6, hold_seconds=SHORT_HOLD)
    by_label = dict(gala.seats.values_list("label", "pk"))
    seats_admin_book(seat_ids=[by_label[label] for label in ("A4", "A5", "A6", "D1", "D2")], holder="walk-in")
    return {"gala": gala.id, "short": short.id, "seats": by_label, "alice_token": alice.auth_token.key}


@pytest.fixture
def past_booking(scene, make_event) -> dict[str, int | str]:
    """Alice's booking for an event that started an hour ago: too late for her to cancel."""
    from datetime import timedelta

    from django.utils import timezone

    from booking.models import Event
    from booking.services import seats_admin_book

    last_night = make_event(name="Last night", rows=("A",), seats_per_row=4)
    result = seats_admin_book(seat_ids=list(last_night.seats.values_list("pk", flat=True)[:2]), holder="alice")
    Event.objects.filter(pk=last_night.pk).update(starts_at=timezone.now() - timedelta(hours=1))
    return {"event": last_night.id, "reference": result.references[0]}


@pytest.fixture
def browser(scene):
    """Chromium, started after the data is written: under Playwright's sync API this
    thread runs an event loop, where Django refuses (rightly) to use the database."""
    require(shutil.which(CHROMIUM) is not None, f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def server_url(transactional_db) -> Iterator[str]:
    server, base = start_live_server(env=child_env())
    try:
        yield base
    finally:
        server.stop()


def signed_in_page(browser, base: str, username: str, password: str, path: str, *, clock_skew_ms: int = 0):
    context = browser.new_context(viewport={"width": 760, "height": 620}, device_scale_factor=1)
    if clock_skew_ms:
        context.add_init_script(f"{{ const real = Date.now.bind(Date); Date.now = () => real() + ({clock_skew_ms}); }}")
    page = context.new_page()
    page.goto(f"{base}/accounts/login/?next={path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{path}")
    wait_live(page)
    page.evaluate("window.__notReloaded = true")
    return page


def wait_live(page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=10_000)


def seat(page, label: str):
    return page.locator(f'.seat[data-label="{label}"]')


def screenshot(page, name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_two_people_see_holds_bookings_conflicts_and_expiry_live(scene, server_url, browser):
    from playwright.sync_api import expect

    path = f"/events/{scene['gala']}/"
    alice = signed_in_page(browser, server_url, "alice", "alice-browser-pw", path, clock_skew_ms=SKEW_MS)
    bob = signed_in_page(browser, server_url, "bob", "bob-browser-pw", path, clock_skew_ms=-SKEW_MS)
    assert alice.evaluate("Date.now()") - bob.evaluate("Date.now()") > 1.5 * SKEW_MS
    for page in (alice, bob):
        expect(seat(page, "A4")).to_have_attribute("data-state", "booked")
        expect(seat(page, "B5")).to_have_attribute("data-state", "available")

    # Alice holds B5: Bob sees it held, without reloading.
    seat(alice, "B5").click()
    expect(seat(alice, "B5")).to_have_attribute("data-state", "mine")
    expect(alice.locator("#countdown")).to_be_visible()
    assert 55 <= int(alice.locator("#countdown").get_attribute("data-seconds")) <= 60
    expect(seat(bob, "B5")).to_have_attribute("data-state", "locked", timeout=3_000)
    expect(seat(bob, "B5")).to_have_attribute("aria-label", "Seat B5, held by someone")

    # Bob holds a seat of his own, then clicks Alice's: the conflict is explained.
    seat(bob, "C7").click()
    expect(seat(bob, "C7")).to_have_attribute("data-state", "mine")
    expect(seat(alice, "C7")).to_have_attribute("data-state", "locked", timeout=3_000)
    seat(bob, "B5").click()
    message = bob.locator("#message")
    expect(message).to_have_attribute("data-code", "seat_locked")
    expect(message).to_contain_text("B5 is held by someone else")
    expect(seat(bob, "B5")).to_have_attribute("data-state", "locked")
    screenshot(bob, "seat-map-conflict.png")

    # Alice confirms: both see B5 booked.
    alice.click("#confirm")
    expect(seat(alice, "B5")).to_have_attribute("data-state", "booked-mine")
    expect(alice.locator("#message")).to_contain_text("Booked B5")
    expect(seat(bob, "B5")).to_have_attribute("data-state", "booked", timeout=3_000)
    screenshot(alice, "seat-map-booked.png")

    # Bob releases his hold: Alice sees C7 free again.
    bob.click("#release")
    expect(seat(alice, "C7")).to_have_attribute("data-state", "available", timeout=3_000)

    # A hold left to expire turns free on both screens at its expiry (no sweep runs here).
    short_path = f"/events/{scene['short']}/"
    for page in (alice, bob):
        page.goto(server_url + short_path)
        wait_live(page)
        page.evaluate("window.__notReloaded = true")
    seat(alice, "A3").click()
    expect(seat(alice, "A3")).to_have_attribute("data-state", "mine")
    held_at = time.monotonic()
    expect(seat(bob, "A3")).to_have_attribute("data-state", "locked", timeout=2_000)
    for page in (alice, bob):
        expect(seat(page, "A3")).to_have_attribute("data-state", "available", timeout=(SHORT_HOLD + 2) * 1000)
    freed_after = time.monotonic() - held_at
    assert freed_after >= SHORT_HOLD - 1, f"freed after {freed_after:.1f}s, before the hold's end"
    expect(alice.locator("#message")).to_have_attribute("data-code", "hold_expired")
    expect(alice.locator("#countdown")).to_be_hidden()

    for page in (alice, bob):
        assert page.evaluate("window.__notReloaded") is True, "the page was reloaded"


def in_a_thread(function) -> None:
    """Run a database write from a thread of its own: this one runs Playwright's event loop."""
    from django.db import connections

    def run():
        try:
            function()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)


def test_an_anonymous_page_reconnects_after_a_server_restart_and_catches_up(scene, browser):
    from playwright.sync_api import expect

    from booking.services import seats_lock

    port = free_port()
    server, base = start_live_server(port=port)
    try:
        page = browser.new_page()
        page.goto(f"{base}/events/{scene['gala']}/")
        wait_live(page)
        expect(page.get_by_role("link", name="Sign in").first).to_be_visible()
        expect(page.locator("#confirm")).to_have_count(0)
        page.evaluate("window.__notReloaded = true")

        server.stop()
        expect(page.locator("#connection")).to_have_attribute("data-state", "offline", timeout=5_000)
        # A change while the page is cut off: no push reaches it, the next snapshot must.
        in_a_thread(lambda: seats_lock(seat_ids=[scene["seats"]["B2"]], holder="carol"))
        server, _ = start_live_server(port=port)
        wait_live(page)  # within the backoff (0.5 s, 1 s, 2 s, 4 s … with jitter)
        expect(seat(page, "B2")).to_have_attribute("data-state", "locked")

        # And pushes flow again on the new socket.
        locked = requests.post(
            f"{base}/api/lock",
            json={"seatId": scene["seats"]["B3"]},
            headers={"Authorization": f"Token {scene['alice_token']}"},
            timeout=10,
        )
        assert locked.status_code == 200, locked.text
        expect(seat(page, "B3")).to_have_attribute("data-state", "locked", timeout=3_000)
        seat(page, "B4").click()
        expect(page.locator("#message")).to_have_attribute("data-code", "sign_in")
        assert page.evaluate("window.__notReloaded") is True, "the page was reloaded"
    finally:
        server.stop()


def test_a_booking_shows_its_reference_is_listed_and_cancelled_from_my_bookings(
    scene, past_booking, server_url, browser
):
    from playwright.sync_api import expect

    path = f"/events/{scene['gala']}/"
    alice = signed_in_page(browser, server_url, "alice", "alice-browser-pw", path)
    bob = signed_in_page(browser, server_url, "bob", "bob-browser-pw", path)
    expect(bob.locator("#bookings-status")).to_have_text(
        "You have no bookings yet. Hold seats and confirm them to book."
    )
    # Alice's booking for another event is listed, named, with no Cancel button here.
    earlier = alice.locator(f'.booking[data-reference="{past_booking["reference"]}"]')
    expect(earlier.get_by_role("link", name="Last night")).to_have_attribute(
        "href", f"/events/{past_booking['event']}/"
    )
    expect(earlier.locator("button")).to_have_count(0)

    # A confirm shows the booking's reference, the one the API knows.
    for label in ("C3", "C4"):
        seat(alice, label).click()
        expect(seat(alice, label)).to_have_attribute("data-state", "mine")
    alice.click("#confirm")
    shown = alice.locator("#message #booking-reference")
    expect(shown).to_have_text(REFERENCE)
    reference = shown.text_content()
    expect(alice.locator("#message")).to_contain_text(f"Booked C3, C4. Your booking reference is {reference}.")
    api = requests.get(
        f"{server_url}/api/bookings/{reference.lower()}",
        headers={"Authorization": f"Token {scene['alice_token']}"},
        timeout=10,
    )
    assert api.status_code == 200 and [s["label"] for s in api.json()["seats"]] == ["C3", "C4"]

    # My bookings lists it first (newest first), confirmed, with its seats.
    item = alice.locator(f'.booking[data-reference="{reference}"]')
    expect(alice.locator(".booking").first).to_have_attribute("data-reference", reference)
    expect(item).to_have_attribute("data-status", "confirmed")
    expect(item.locator(".seat-labels")).to_have_text("Seats C3, C4")
    expect(seat(bob, "C3")).to_have_attribute("data-state", "booked", timeout=3_000)
    expect(seat(alice, "C3")).to_have_attribute("data-state", "booked-mine")
    seat(bob, "D5").click()  # for the screenshot: someone else's hold too
    expect(seat(alice, "D5")).to_have_attribute("data-state", "locked", timeout=3_000)
    screenshot(alice, "seat-map-bookings.png")

    # "Cancel" asks first; "Keep it" changes nothing.
    item.get_by_role("button", name=f"Cancel booking {reference}").click()
    item.get_by_role("button", name="Keep it").click()
    expect(item).to_have_attribute("data-status", "confirmed")
    item.get_by_role("button", name=f"Cancel booking {reference}").click()
    item.get_by_role("button", name="Yes, cancel it").click()

    # Its seats are free on both maps, and the list says it is cancelled.
    for page in (alice, bob):
        for label in ("C3", "C4"):
            expect(seat(page, label)).to_have_attribute("data-state", "available", timeout=3_000)
    expect(alice.locator("#message")).to_have_text(f"Cancelled booking {reference}: C3, C4 are free again.")
    expect(item).to_have_attribute("data-status", "cancelled")
    expect(item.locator(".seat-labels")).to_have_text("No seats left")
    expect(item.locator(".cancelled-labels")).to_have_text("(cancelled: C3, C4)")
    expect(item.locator("button")).to_have_count(0)
    # Bob can have them now.
    seat(bob, "C3").click()
    expect(seat(bob, "C3")).to_have_attribute("data-state", "mine")

    # Too late to cancel: the page shows why the API refused, and nothing changes.
    alice.goto(f"{server_url}/events/{past_booking['event']}/")
    wait_live(alice)
    late = alice.locator(f'.booking[data-reference="{past_booking["reference"]}"]')
    late.get_by_role("button", name=f"Cancel booking {past_booking['reference']}").click()
    late.get_by_role("button", name="Yes, cancel it").click()
    refusal = late.locator(".booking-error")
    expect(refusal).to_have_attribute("data-code", "cancel_window_closed")
    expect(refusal).to_contain_text("the box office can still cancel it")
    expect(late).to_have_attribute("data-status", "confirmed")
    screenshot(alice, "seat-map-cancel-refused.png")
    expect(seat(alice, "A1")).to_have_attribute("data-state", "booked-mine")

    assert bob.evaluate("window.__notReloaded") is True, "bob's page was reloaded"


@pytest.fixture
def shop_booking(scene, make_user) -> str:
    """A box office user, and alice's booking of B7 and B8 with the shop's order id; its reference."""
    from booking.services import booking_cancel, seats_admin_book, seats_confirm, seats_lock

    make_user("boxoffice", staff=True, hold_for_others=True, password="box-office-browser-pw")
    ids = [scene["seats"][label] for label in ("B7", "B8")]
    seats_lock(seat_ids=ids, holder="alice")
    booking = seats_confirm(seat_ids=ids, holder="alice", order_id="shop-1042").booking
    assert booking is not None
    cancelled = seats_admin_book(seat_ids=[scene["seats"]["C1"]], holder="bob").references[0]
    booking_cancel(reference=cancelled, holder=None)
    return booking["reference"]


def test_the_box_office_finds_a_booking_from_the_admin_index(shop_booking, server_url, browser):
    from playwright.sync_api import expect

    reference = shop_booking
    page = browser.new_page(viewport={"width": 1440, "height": 560})
    page.goto(f"{server_url}/admin/")
    page.fill("#id_username", "boxoffice")
    page.fill("#id_password", "box-office-browser-pw")
    page.click("input[type=submit]")
    # As a customer reads it out: lower case, with a hyphen.
    expect(page.locator("#find-booking-q")).to_be_focused()
    screenshot(page, "admin-index.png")
    page.fill("#find-booking-q", f"{reference[:4]}-{reference[4:]}".lower())
    page.click("#find-booking input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/booking/booking/\d+/change/$"))
    expect(page.locator(".field-reference")).to_contain_text(reference)
    expect(page.locator(".field-seat_list")).to_contain_text("B7, B8")
    expect(page.get_by_role("button", name="Cancel this booking")).to_be_visible()
    screenshot(page, "admin-booking.png")
    booking_page = page.url

    # Its button asks first, then cancels it through the service.
    page.get_by_role("button", name="Cancel this booking").click()
    expect(page.locator("#content")).to_contain_text("1 booking selected")
    screenshot(page, "admin-cancel-booking.png")
    page.click("input[value='Yes, cancel bookings']")
    expect(page.locator(".messagelist")).to_contain_text(
        f"1 booking cancelled, 2 seats available again: {reference} (B7, B8)."
    )
    page.goto(booking_page)
    expect(page.locator(".field-status_badge")).to_contain_text("cancelled")
    expect(page.locator(".field-cancelled_list")).to_contain_text("B7, B8")
    expect(page.get_by_role("button", name="Cancel this booking")).to_have_count(0)

    page.goto(f"{server_url}/admin/booking/booking/")
    page.click("#toggle-nav-sidebar")  # the list's width for the screenshot
    expect(page.locator("#result_list")).to_contain_text(reference)
    expect(page.locator("#result_list")).to_contain_text("shop-1042")
    screenshot(page, "admin-bookings.png")
