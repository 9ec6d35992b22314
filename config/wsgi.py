"""The WSGI application: the API, the admin and the pages (the web server's, Procfile's ``web``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
