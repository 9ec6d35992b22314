"""WebSocket URLs (the HTTP ones are in config/urls.py)."""

from django.urls import path, re_path

from . import converters  # noqa: F401  (registers the <id:...> converter)
from .consumers import NotFoundConsumer, SeatMapConsumer

websocket_urlpatterns = [
    path("ws/events/<id:event_id>/", SeatMapConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]
