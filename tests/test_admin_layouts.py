"""The admin's layout import (upload → preview that writes nothing → confirm) and seat export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from booking import services
from booking.models import Event, Seat
from booking.services.blocks import seats_block

pytestmark = pytest.mark.django_db

IMPORT_URL = "/admin/booking/seat/import/"
CONFIRM_URL = "/admin/booking/seat/process_import/"
HEADER = "section,row,number,label,category,accessible,rank\n"
GOOD = HEADER + "Stalls,A,1,,A,yes,\nStalls,A,2,,A,no,\n=Box,1,1,Royal box,A,no,9\n"


def upload(client, event: Event, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        IMPORT_URL,
        {
            "event": event.pk,
            "import_file": SimpleUploadedFile("layout.csv", data, content_type="text/csv"),
            "format": "0",
            "resource": "0",
        },
    )


def confirm(client, preview):
    form = preview.context["confirm_form"]
    return client.post(CONFIRM_URL, {name: form[name].value() for name in form.fields})


@pytest.fixture
def empty_event(make_event):
    return make_event(name="Theatre night", rows=(), seats_per_row=1)


def test_upload_previews_writes_nothing_then_confirm_writes(staff_client, empty_event):
    page = staff_client.get(IMPORT_URL + f"?event={empty_event.pk}")
    assert page.status_code == 200
    assert page.context["form"].initial["event"] == str(empty_event.pk)

    preview = upload(staff_client, empty_event, GOOD)
    assert preview.status_code == 200
    body = preview.content.decode()
    assert "Preview: 3 seats for Theatre night" in body
    assert "Stalls A1" in body and "Royal box" in body  # the default label, filled in
    assert "Confirm import" in body
    assert Seat.objects.filter(event=empty_event).count() == 0  # the preview wrote nothing

    done = confirm(staff_client, preview)
    assert done.status_code == 302
    assert done["Location"].endswith(f"/admin/booking/seat/?event__id__exact={empty_event.pk}")
    seats = {s.label: s for s in Seat.objects.filter(event=empty_event)}
    assert set(seats) == {"Stalls A1", "Stalls A2", "Royal box"}
    assert seats["Stalls A1"].accessible and seats["Royal box"].rank == 9
    assert seats["Royal box"].section == "=Box"
    messages = [str(m) for m in done.wsgi_request._messages]
    assert messages == ["3 seats imported into Theatre night."]


def test_a_bad_file_shows_every_bad_line_and_offers_no_confirm(staff_client, empty_event):
    bad = HEADER + "Stalls,A,1,,A,yes,\nStalls,A,x,,A,no,\nStalls,A,1,,A,no,\nStalls,B,2,,A,sometimes,\n"
    page = upload(staff_client, empty_event, bad)
    assert page.status_code == 200
    body = page.content.decode()
    assert "line 3: number &#x27;x&#x27; is not a whole number" in body
    assert "line 4: Stalls row A seat 1 is also on line 2" in body
    assert "line 5: accessible &#x27;sometimes&#x27;" in body
    assert "confirm_form" not in page.context or not page.context["confirm_form"]
    assert Seat.objects.filter(event=empty_event).count() == 0


def test_a_file_that_is_not_utf8(staff_client, empty_event):
    page = upload(staff_client, empty_event, (HEADER + "Galerie für,A,1,,A,no,\n").encode("latin-1"))
    assert "line 2: the file is not UTF-8" in page.content.decode()
    assert Seat.objects.filter(event=empty_event).count() == 0


def test_seats_added_between_preview_and_confirm_make_the_confirm_write_nothing(staff_client, empty_event):
    preview = upload(staff_client, empty_event, GOOD)
    assert Seat.objects.filter(event=empty_event).count() == 0
    Seat.objects.create(event=empty_event, label="Royal box", row="9", number=9)  # meanwhile

    done = confirm(staff_client, preview)
    assert done.status_code == 302
    assert done["Location"].endswith(f"{IMPORT_URL}?event={empty_event.pk}")
    messages = [str(m) for m in done.wsgi_request._messages]
    assert len(messages) == 1 and "line 4: label 'Royal box' exists already in this event" in messages[0]
    assert list(Seat.objects.filter(event=empty_event).values_list("label", flat=True)) == ["Royal box"]


def test_a_conflict_with_the_event_shows_in_the_preview(staff_client, event):
    page = upload(staff_client, event, HEADER + ",A,1,,A,no,\n")  # the block has A1
    body = page.content.decode()
    assert "The layout cannot be imported" in body
    assert "line 2: row A seat 1 exists already in this event" in body
    assert not page.context.get("confirm_form")


def test_only_staff_who_may_add_seats_import(client, make_user, empty_event):
    clerk = make_user("clerk", staff=True)
    clerk.user_permissions.remove(Permission.objects.get(codename="add_seat"))
    client.force_login(clerk)
    assert client.get(IMPORT_URL).status_code == 403
    assert upload(client, empty_event, GOOD).status_code == 403
    assert Seat.objects.filter(event=empty_event).count() == 0
    client.logout()
    assert client.get(IMPORT_URL).status_code == 302  # to the sign-in page


def test_the_confirm_reads_only_our_uploads(staff_client, empty_event):
    preview = upload(staff_client, empty_event, GOOD)
    form = preview.context["confirm_form"]
    data = {name: form[name].value() for name in form.fields} | {"import_file_name": "passwd"}
    assert staff_client.post(CONFIRM_URL, data).status_code == 403
    assert Seat.objects.filter(event=empty_event).count() == 0


def export(client, event) -> list[dict]:
    response = client.get(f"/admin/booking/event/{event.pk}/seats.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_export_has_live_status_holder_and_booking_reference(staff_client, make_event, staff):
    event = make_event(name="Export night", rows=("A",), seats_per_row=5)
    a1, a2, a3, a4, a5 = event.seats.order_by("pk").values_list("pk", flat=True)
    seats_block(seat_ids=[a5], reason="+camera")
    services.seats_lock(seat_ids=[a1, a2], holder="alice")
    booked = services.seats_confirm(seat_ids=[a1], holder="alice")
    services.seats_lock(seat_ids=[a3], holder="=bob")
    Seat.objects.filter(pk=a2).update(lock_expires_at=timezone.now() - timedelta(minutes=1))
    reference = Seat.objects.get(pk=a1).booking.reference
    assert booked.seats

    rows = {row["label"]: row for row in export(staff_client, event)}
    assert list(rows) == ["A1", "A2", "A3", "A4", "A5"]
    assert (rows["A1"]["status"], rows["A1"]["holder"], rows["A1"]["booking"]) == ("booked", "alice", reference)
    assert (rows["A2"]["status"], rows["A2"]["holder"], rows["A2"]["booking"]) == ("available", "", "")
    assert (rows["A3"]["status"], rows["A3"]["holder"]) == ("locked", "'=bob")  # no formula in a spreadsheet
    assert rows["A4"]["status"] == "available"
    assert (rows["A5"]["status"], rows["A5"]["block_reason"], rows["A5"]["holder"]) == ("blocked", "'+camera", "")
    assert set(rows["A1"]) == {
        "section", "row", "number", "label", "category", "accessible", "rank",
        "status", "block_reason", "holder", "booking",
    }  # fmt: skip


def test_an_export_imports_into_another_event(staff_client, make_event, empty_event):
    source = make_event(name="Source", rows=("A", "B"), seats_per_row=3)
    response = staff_client.get(f"/admin/booking/event/{source.pk}/seats.csv")
    data = b"".join(response.streaming_content)
    preview = upload(staff_client, empty_event, data)
    assert "Preview: 6 seats" in preview.content.decode()
    confirm(staff_client, preview)
    copied = list(empty_event.seats.order_by("id").values_list("label", "row", "number", "rank"))
    assert copied == list(source.seats.order_by("id").values_list("label", "row", "number", "rank"))


def test_export_needs_the_view_seat_permission(client, make_user, event):
    clerk = make_user("clerk", staff=True)
    clerk.user_permissions.remove(Permission.objects.get(codename="view_seat"))
    clerk.user_permissions.remove(Permission.objects.get(codename="change_seat"))
    client.force_login(clerk)
    assert client.get(f"/admin/booking/event/{event.pk}/seats.csv").status_code == 403


def test_the_event_list_links_to_import_and_export(staff_client, event):
    body = staff_client.get("/admin/booking/event/").content.decode()
    assert f'href="/admin/booking/seat/import/?event={event.pk}"' in body
    assert f'href="/admin/booking/event/{event.pk}/seats.csv"' in body
