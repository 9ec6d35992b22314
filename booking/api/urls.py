from django.urls import path, re_path

from .. import converters  # noqa: F401  (registers the <id:...> converter)
from . import views
from .docs import DocsView, SchemaView
from .exceptions import not_found_json

# The writes first: under load nearly every request is one of them.
urlpatterns = [
    path("lock", views.LockView.as_view(), name="lock"),
    path("confirm", views.ConfirmView.as_view(), name="confirm"),
    path("unlock", views.UnlockView.as_view(), name="unlock"),
    path("block", views.BlockView.as_view(), name="block"),
    path("unblock", views.UnblockView.as_view(), name="unblock"),
    path("seats", views.SeatListView.as_view(), name="seat-list"),
    path("events", views.EventListView.as_view(), name="event-list"),
    path("events/<id:pk>", views.EventDetailView.as_view(), name="event-detail"),
    path("events/<id:pk>/seats", views.EventSeatsView.as_view(), name="event-seats"),
    path("me/seats", views.MySeatsView.as_view(), name="my-seats"),
    path("me/bookings", views.MyBookingsView.as_view(), name="my-bookings"),
    # A reference as typed (any case, hyphens): the view normalizes it, or answers 404.
    re_path(r"^bookings/(?P<reference>[^/]{1,40})$", views.BookingDetailView.as_view(), name="booking-detail"),
    re_path(r"^bookings/(?P<reference>[^/]{1,40})/cancel$", views.BookingCancelView.as_view(), name="booking-cancel"),
    path("health", views.HealthView.as_view(), name="health"),
    path("schema", SchemaView.as_view(), name="schema"),
    path("docs", DocsView.as_view(url_name="schema"), name="docs"),
    # Anything else under /api/ is a JSON 404, in DEBUG too.
    re_path(r"^.*$", not_found_json),
]
