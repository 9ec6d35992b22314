"""HTML pages: the list of events and the live seat map of one event.

The pages only render the frame; the seat map's script reads the seats over
the WebSocket and writes through the JSON API with the session (and CSRF),
so the page holds no rule of its own.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import path
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import RedirectView

from . import conf, converters  # noqa: F401  (converters registers the <id:...> converter)
from .permissions import HOLD_FOR_OTHERS
from .selectors import event_detail, event_list


def _for_page(event: dict[str, Any]) -> dict[str, Any]:
    """The API's event with its start as a datetime, for the templates' ``date`` filter (which
    shows it in the venue's time zone, settings.TIME_ZONE)."""
    return {**event, "starts_at": parse_datetime(event["startsAt"])}


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "booking/index.html", {"events": [_for_page(event) for event in event_list()]})


@ensure_csrf_cookie  # the script sends the cookie's token with every write
def seat_map(request: HttpRequest, event_id: int) -> HttpResponse:
    event = event_detail(event_id=event_id)
    if event is None:
        return render(request, "booking/not_found.html", {"event_id": event_id}, status=404)
    user = request.user
    # The box office's controls are only a convenience: the API checks the permission on every write.
    box_office = user.is_authenticated and user.has_perm(HOLD_FOR_OTHERS)
    config = {
        "event": event,
        "socketPath": f"/ws/events/{event_id}/",
        "api": "/api",
        "user": user.get_username() if user.is_authenticated else None,
        "boxOffice": box_office,
        "maxHolds": conf.max_holds(),
    }
    return render(
        request, "booking/seat_map.html", {"event": _for_page(event), "config": config, "box_office": box_office}
    )


class FaviconView(RedirectView):
    """Browsers ask for /favicon.ico wherever a page names no icon (the admin's, the API docs')."""

    permanent = False  # the static file's address may change; a 301 would be kept for good

    def get_redirect_url(self, *args, **kwargs) -> str:
        return static("booking/favicon.svg")


urlpatterns = [
    path("", index, name="index"),
    path("events/<id:event_id>/", seat_map, name="seat-map"),
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
]
