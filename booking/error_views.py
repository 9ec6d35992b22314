"""Django's error views (config/urls.py's handlers, settings.CSRF_FAILURE_VIEW).

They answer what Django itself refuses before or after a view runs: a Host
header not in ALLOWED_HOSTS, a body over DATA_UPLOAD_MAX_MEMORY_SIZE read
outside DRF, a failed CSRF check, a path no pattern matches, a crash. Under
/api/ the answer is the API's JSON shape ``{code, detail}``; elsewhere it is
Django's own HTML page (templates/404.html for a missing page).
"""

from __future__ import annotations

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.views import csrf, defaults

from .api.exceptions import ApiError, describe_error, error_body, json_error, not_found_json


def is_api(request: HttpRequest) -> bool:
    # path_info, not get_host() or build_absolute_uri(): those raise again for a bad Host.
    path = request.path_info
    return path == "/api" or path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.bad_request(request, exception)
    error = describe_error(exception)
    if error is None or error.status >= 500:
        error = describe_error(SuspiciousOperation())
    assert error is not None
    return json_error(error)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.permission_denied(request, exception)
    return json_error(ApiError(403, error_body("forbidden", "You may not do this."), {}))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.page_not_found(request, exception)
    return not_found_json(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if not is_api(request):
        return defaults.server_error(request)
    return json_error(ApiError(500, error_body("server_error", "Internal error."), {}))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CsrfViewMiddleware's refusal. DRF's views check CSRF themselves (a session-authenticated
    write without the token is a 403 ``forbidden`` from its exception handler); this answers
    for any other view."""
    if not is_api(request):
        return csrf.csrf_failure(request, reason)
    detail = f"CSRF verification failed: {reason}" if reason else "CSRF verification failed."
    return json_error(ApiError(403, error_body("forbidden", detail), {}))
