"""The Celery app: configured from Django settings (``CELERY_*``), tasks
autodiscovered from each app's ``tasks.py``. Beat's schedule is in settings."""

import logging
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.after_setup_logger.connect
def _quiet_per_task_lines(**kwargs):
    """No "received"/"succeeded" lines every few seconds: the sweep logs each seat it
    releases (logger ``booking.expiry``). CELERY_TASK_LOG_LEVEL=INFO brings them back."""
    level = os.environ.get("CELERY_TASK_LOG_LEVEL", "WARNING").upper()
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(level)
