"""Lock, confirm and unlock served in front of Django, for the request every API client sends.

Measured on the benchmark's machine, Django's request cycle (handler, signals,
eight middleware, URL resolving) and DRF's dispatch (request wrapper,
authentication, permissions, throttles, content negotiation) were half of a
write request's CPU, and the web server's CPU was two thirds of a booking's.
This WSGI wrapper answers the plain case with the same parts minus that
machinery: the same signals (Django's connection handling), the same token
authentication, the same rate limits, the same service, the same JSON, the
same headers; and it hands every other request to Django untouched.

The plain case, decided from the request itself before anything runs:
``POST`` to the lock, confirm or unlock route; no query string; no cookies; an
``Authorization: Token <key>`` header; a JSON body (``application/json``,
UTF-8) whose length is given; an ``Accept`` that DRF's negotiation answers
with JSON at once; a host that ``ALLOWED_HOSTS`` admits; HTTPS where
``SECURE_SSL_REDIRECT`` asks for it; and a body that is a plain seats request
(:func:`~booking.api.serializers.plain_seats_request`). Anything else (a
session's request, a ``userId``, a malformed body, a token this process
cannot authenticate) goes to Django, the body put back, and gets exactly the
answer it got before. Once the caller is authenticated, a rate limit's or a
rule's error (or a bug's 500) is answered here, in the API's shape, by the
same mapping as DRF's exception handler (Django's handler for the 500).

It stands aside entirely (every request to Django) unless the settings are the
ones it was written for: the middleware list below, the write views'
authentication, permission, parser, renderer, negotiation and versioning
classes. For each middleware, why it has nothing more to do for these
requests: Security's redirect is ruled out above and its headers are added
here by the middleware itself; WhiteNoise serves only static paths; without
cookies, the session and CSRF middleware have nothing to read or renew, and
the session is never touched (token authentication comes first, and
succeeds); Common's host check is done above, with Django's own check, and it
adds Content-Length; CSRF exempts DRF's views; Authentication and messages
are lazy and never read; X-Frame-Options' header is added here by the
middleware itself.

``BOOKING_HOT_PATH=false`` turns it off. tests/test_hot_path.py sends the same
requests both ways and compares status, headers, body, rows and audit rows.
"""

from __future__ import annotations

import io
import logging
import threading
from http import HTTPStatus
from types import SimpleNamespace

import orjson
from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import get_script_prefix, resolve, reverse
from django.utils.log import log_response
from rest_framework import exceptions as drf_exceptions
from rest_framework.permissions import IsAuthenticated

from ..errors import BookingError
from ..permissions import resolve_holder
from .authentication import TokenAuthentication, plain_token_key
from .exceptions import describe_error
from .parsers import FastJSONParser
from .renderers import FastJSONRenderer, JSONFirstNegotiation, dumps
from .serializers import plain_seats_request
from .views import seats_result_body

logger = logging.getLogger("booking.api")

#: The middleware this path was written for (see the module's docstring).
MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "booking.middleware.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
WRITE_ROUTES = ("lock", "confirm", "unlock")
#: A plain seats request is at most 100 ids: anything longer is Django's to judge.
MAX_BODY_BYTES = 16 * 1024
_JSON_CONTENT_TYPES = frozenset(
    {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
)


class _Routes:
    """What the current settings allow: the write routes' paths, views and headers, or None."""

    def __init__(self) -> None:
        self.views: dict[str, type] | None = self._views()
        self.view_headers = {view: view().default_response_headers for view in (self.views or {}).values()}
        self.good_hosts: set[str] = set()
        self.headers: dict[bool, list[tuple[str, str]]] = {}

    @staticmethod
    def _views() -> dict[str, type] | None:
        if not getattr(settings, "BOOKING_HOT_PATH", True):
            return None
        if (
            tuple(settings.MIDDLEWARE) != MIDDLEWARE
            or settings.DISALLOWED_USER_AGENTS
            or settings.PREPEND_WWW
            or settings.USE_X_FORWARDED_HOST
            or settings.FORCE_SCRIPT_NAME
        ):
            logger.info("the write routes' hot path is off: the middleware or host settings are not its own")
            return None
        views = {}
        for name in WRITE_ROUTES:
            path = "/" + reverse(name)[len(get_script_prefix()) :]  # as PATH_INFO gives it
            view = getattr(resolve(path).func, "view_class", None)
            if view is None or not (
                view.authentication_classes
                and view.authentication_classes[0] is TokenAuthentication
                and list(view.permission_classes) == [IsAuthenticated]
                and list(view.parser_classes) == [FastJSONParser]
                and list(view.renderer_classes) == [FastJSONRenderer]
                and view.content_negotiation_class is JSONFirstNegotiation
                and view.versioning_class is None
            ):
                logger.info("the write routes' hot path is off: %s is not the view it was written for", view)
                return None
            views[path] = view
        return views

    def host_allowed(self, host: str) -> bool:
        """Django's own host check (``HttpRequest.get_host``), remembered per host."""
        if host in self.good_hosts:
            return True
        request = HttpRequest()
        request.META = {"HTTP_HOST": host}
        try:
            request.get_host()
        except DisallowedHost:
            return False
        if len(self.good_hosts) < 100:
            self.good_hosts.add(host)
        return True

    def middleware_headers(self, secure: bool) -> list[tuple[str, str]]:
        """The headers Django's middleware add to an answer of these routes, computed by those
        middleware themselves on a sample response (Content-Length and Content-Type aside)."""
        headers = self.headers.get(secure)
        if headers is None:
            environ = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http"}
            if secure:
                proxy_header = settings.SECURE_PROXY_SSL_HEADER
                if proxy_header:
                    environ[proxy_header[0]] = proxy_header[1]
                else:
                    environ["wsgi.url_scheme"] = "https"
            request = WSGIRequest(environ)
            response = HttpResponse()
            for middleware in (SecurityMiddleware, XFrameOptionsMiddleware):
                response = middleware(_never_called).process_response(request, response)
            headers = [(name, value) for name, value in response.items() if name.lower() != "content-type"]
            self.headers[secure] = headers
        return headers


def _never_called(request):
    raise AssertionError("only process_response is used")


_routes: _Routes | None = None
_routes_lock = threading.Lock()


def _current_routes() -> _Routes:
    global _routes
    routes = _routes
    if routes is None:
        with _routes_lock:
            if _routes is None:
                _routes = _Routes()
            routes = _routes
    return routes


def _forget_routes(**kwargs) -> None:
    """Settings changed (tests): decide again at the next request."""
    global _routes
    _routes = None


setting_changed.connect(_forget_routes)


class _SchemeReader:
    """What Django's ``HttpRequest.scheme`` reads of a request, here of the WSGI environ: so
    that the request is secure exactly when Django would say so (proxy header and all)."""

    __slots__ = ("META",)

    def __init__(self, environ) -> None:
        self.META = environ

    def _get_scheme(self) -> str:  # WSGIRequest's
        return self.META.get("wsgi.url_scheme")


def _is_secure(environ) -> bool:
    return HttpRequest.scheme.fget(_SchemeReader(environ)) == "https"


def wrap(django_application):
    """The WSGI application: the plain write requests here, everything else to ``django_application``."""

    def application(environ, start_response):
        routes = _current_routes()
        views = routes.views
        if views is None or environ.get("REQUEST_METHOD") != "POST":
            return django_application(environ, start_response)
        view = views.get(environ.get("PATH_INFO"))
        # Cookies too: the session and CSRF middleware answer a malformed one with a new cookie.
        if view is None or environ.get("QUERY_STRING") or environ.get("HTTP_COOKIE"):
            return django_application(environ, start_response)
        key = plain_token_key(environ)
        if key is None:
            return django_application(environ, start_response)
        if (
            environ.get("CONTENT_TYPE", "").lower() not in _JSON_CONTENT_TYPES
            or environ.get("HTTP_ACCEPT", "").strip() not in JSONFirstNegotiation._JSON_ACCEPTS
        ):
            return django_application(environ, start_response)
        secure = _is_secure(environ)
        if (settings.SECURE_SSL_REDIRECT and not secure) or not routes.host_allowed(environ.get("HTTP_HOST", "")):
            return django_application(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if not 0 < length <= MAX_BODY_BYTES:
            return django_application(environ, start_response)
        body = environ["wsgi.input"].read(length)
        try:
            validated = plain_seats_request(orjson.loads(body))
        except orjson.JSONDecodeError:
            validated = None
        if validated is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return django_application(environ, start_response)

        signals.request_started.send(sender=WSGIHandler, environ=environ)
        try:
            user, token = view.authentication_classes[0]().authenticate_credentials(key)
        except Exception:  # an unknown token (401), the database down (503): Django answers
            environ["wsgi.input"] = io.BytesIO(body)
            return django_application(environ, start_response)
        try:
            status, payload, extra = _serve(view, environ, user, token, validated)
            # DRF's view adds its headers (Allow, …) to every answer it finishes.
            extra = {"Content-Type": "application/json", **routes.view_headers[view], **extra}
            content = dumps(payload)
        except Exception as exc:  # as Django's handler: logged, got_request_exception, handler500
            response = response_for_exception(WSGIRequest(environ), exc)
            status, content, extra = response.status_code, response.content, {"Content-Type": response["Content-Type"]}
        finally:
            # Django sends it when the server closes the response; granian sends a list's bytes
            # and closes nothing, so here, once the answer is made (connection handling).
            signals.request_finished.send(sender=WSGIHandler)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [*extra.items(), *routes.middleware_headers(secure), ("Content-Length", str(len(content)))],
        )
        return [content]

    return application


def _serve(view: type, environ, user, token, validated: dict) -> tuple[int, dict, dict[str, str]]:
    """The view's work on an authenticated plain request: (status, body, extra headers)."""
    request = SimpleNamespace(user=user, auth=token, META=environ, method="POST")
    try:
        instance = view()
        throttles = [throttle() for throttle in view.throttle_classes]
        waits = [throttle.wait() for throttle in throttles if not throttle.allow_request(request, instance)]
        if waits:  # as DRF's check_throttles
            raise drf_exceptions.Throttled(max((wait for wait in waits if wait is not None), default=None))
        holder = resolve_holder(user, validated.get("userId"))
        result = view.service(seat_ids=validated["seat_ids"], holder=holder, actor=user)
    except (BookingError, DatabaseError, drf_exceptions.APIException) as exc:
        error = describe_error(exc)
        log_response(  # as Django's handler does for every 4xx and 5xx
            "%s: %s",
            HTTPStatus(error.status).phrase,
            environ.get("PATH_INFO", ""),
            response=SimpleNamespace(status_code=error.status),
            request=WSGIRequest(environ),
        )
        return error.status, error.body, error.headers
    return 200, seats_result_body(result), {}
