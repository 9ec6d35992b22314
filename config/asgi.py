"""The ASGI application: Django's HTTP views and the live seat map's WebSockets.

Served by daphne in ``make run`` and by uvicorn in Procfile's ``live`` process. WebSockets are
checked against ALLOWED_HOSTS by their Origin header (only the service's own pages, and clients
that say they are, may open one) and carry no session: the live map is public and read-only.
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

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from booking.origin import allowed_hosts_origin_validator  # noqa: E402
from booking.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # No session or user: the live map is public and read-only, and channels' session wrapper
        # costs every frame sent to every watcher (and a connect a session read) for nothing.
        "websocket": allowed_hosts_origin_validator(URLRouter(websocket_urlpatterns)),
    }
)
