"""One exception handler: every API error has the spec's shape ``{code, detail, seats?}``."""

from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response

from ..errors import BookingError, Busy
from ..metrics import API_BUSY, API_CONFLICTS

_DRF_CODES = (
    (exceptions.ParseError, "invalid"),
    (exceptions.ValidationError, "invalid"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "not_authenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
)


def error_body(code: str, detail: str, seats: list[int] | None = None) -> dict:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if seats is not None:
        body["seats"] = seats
    return body


def _flatten(detail, prefix: str = "") -> list[str]:
    """DRF's nested validation detail as readable ``field: message`` lines."""
    if isinstance(detail, dict):
        lines = []
        for key, value in detail.items():
            label = "" if key == "non_field_errors" else f"{prefix}{key}"
            lines += _flatten(value, f"{label}: " if label else prefix)
        return lines
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


class ApiError(NamedTuple):
    """An error's answer: status, the spec's body, and extra headers."""

    status: int
    body: dict
    headers: dict[str, str]


def describe_error(exc) -> ApiError | None:
    """The answer to an exception raised while serving an API request; None for one that is
    not an API error (a bug: Django's handler answers 500)."""
    if isinstance(exc, BookingError):
        retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        return ApiError(exc.status, error_body(exc.code, exc.detail, exc.seats), retry)
    if isinstance(exc, DatabaseError):  # the database is down or a lock wait ran out
        return describe_error(Busy())
    if isinstance(exc, RequestDataTooBig):  # Django refused to read a body that large
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return ApiError(413, error_body("too_large", f"The request body is over {limit} bytes."), {})
    if isinstance(exc, DisallowedHost):
        return ApiError(400, error_body("invalid", "The Host header names no host this service answers to."), {})
    if isinstance(exc, SuspiciousOperation):  # Django's name for a request it refuses to read
        return ApiError(400, error_body("invalid", "The request is malformed."), {})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    code = next((code for kind, code in _DRF_CODES if isinstance(exc, kind)), "error")
    if isinstance(exc, exceptions.ValidationError):
        detail = "; ".join(_flatten(exc.detail)) or "Invalid request."
    elif code == "invalid":
        detail = f"Malformed JSON: {exc.detail}"
    else:
        detail = str(exc.detail)
    headers: dict[str, str] = {}
    auth_header = getattr(exc, "auth_header", None)  # NotAuthenticated, AuthenticationFailed
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None)  # Throttled
    if wait:
        headers["Retry-After"] = str(int(wait) + 1)
    return ApiError(exc.status_code, error_body(code, detail), headers)


def count_error(error: ApiError) -> None:
    """The metrics of a refusal an operator watches in a rush: conflicts by code, and busy."""
    if error.status == 409:
        API_CONFLICTS.labels(error.body["code"]).inc()
    elif error.status == 503:
        API_BUSY.inc()


def api_exception_handler(exc, context):
    error = describe_error(exc)
    if error is None:
        return None
    count_error(error)
    return Response(error.body, status=error.status, headers=error.headers or None)


def json_error(error: ApiError) -> JsonResponse:
    """An error's answer outside DRF (Django's error views, booking/error_views.py)."""
    response = JsonResponse(error.body, status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


# Exempt: a POST with a session cookie to a path that does not exist is a 404, not a CSRF 403.
@csrf_exempt
def not_found_json(request, exception=None):
    """The 404 of a path under /api/ that no view matches, in the API's shape, whatever the method."""
    return JsonResponse(error_body("not_found", "No such resource."), status=404)
