"""A database that dropped the connection or does not answer: 503, never 500, then recovery.

The API answers it itself (503 ``busy``, booking/api/exceptions.py); this catches it
for every other view, the pages and the admin: an HTML page (or the API's JSON under
/api/) with ``Retry-After``. The broken connection is closed at the end of the request
(Django closes a connection that had an error and is no longer usable), so the next
request opens a new one and is served.
"""

from __future__ import annotations

import logging
import time

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template import loader

from .api.exceptions import count_error, describe_error, json_error
from .error_views import is_api
from .errors import Busy
from .metrics import DEPENDENCY_ERRORS

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
#: At most one log line this often (a database outage fails every request).
LOG_SECONDS = 30.0


class DatabaseUnavailableMiddleware:
    _logged_at = -LOG_SECONDS

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        DEPENDENCY_ERRORS.labels("database").inc()
        now = time.monotonic()
        if now - DatabaseUnavailableMiddleware._logged_at >= LOG_SECONDS:
            DatabaseUnavailableMiddleware._logged_at = now
            logger.warning("database unavailable, answering 503 (at most one line per %ss)", LOG_SECONDS, exc_info=True)
        if is_api(request):
            error = describe_error(Busy())
            assert error is not None
            count_error(error)
            return json_error(error)
        # No context processors: they would read the user and the session from the database.
        response = HttpResponse(loader.get_template("booking/unavailable.html").render(), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
