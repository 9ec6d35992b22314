import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

# Lock, confirm and unlock's plain requests are served before Django's request cycle;
# everything else goes to Django (booking/api/hot_path.py).
from booking.api import hot_path  # noqa: E402  (needs the settings and apps loaded above)

application = hot_path.wrap(django_application)
