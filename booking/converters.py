"""URL converters shared by the API, the pages and the WebSocket routes."""

from django.urls import register_converter


class IdConverter:
    """A database id: at most 18 digits, so it always fits a 64-bit integer
    (a longer number is a 404, never an overflow in the database)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
