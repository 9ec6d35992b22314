"""The Celery app: configured from Django settings (``CELERY_*``), tasks
autodiscovered from each app's ``tasks.py``. Beat's schedule is in settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
