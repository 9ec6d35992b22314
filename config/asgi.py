"""The ASGI application: Django's HTTP views and the live seat map's WebSockets.

Served by daphne in ``make run`` and by uvicorn in Procfile's ``live`` process. WebSockets are
checked against ALLOWED_HOSTS by their Origin header (a cross-site page cannot
open one with a visitor's session) and carry the session's user.
"""

import gc
import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Set up Django (apps, settings) before importing anything that uses models.
django_asgi_app = get_asgi_application()

# Every socket waits while a collection runs: the live process collects seldom (config/settings.py).
if settings.BOOKING_LIVE_GC_THRESHOLDS:
    gc.set_threshold(*settings.BOOKING_LIVE_GC_THRESHOLDS)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from booking.origin import allowed_hosts_origin_validator  # noqa: E402
from booking.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": allowed_hosts_origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
