from django.core.management.base import BaseCommand

from booking import conf
from booking.services import holds_release_expired


class Command(BaseCommand):
    help = "Release every expired hold once (for cron, when no Celery beat runs); prints how many."

    def handle(self, *args, **options):
        released = holds_release_expired(workers=conf.sweep_workers())
        self.stdout.write(f"Released {released} expired hold{'' if released == 1 else 's'}.")
