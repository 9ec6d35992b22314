from django.core.management.base import BaseCommand

from booking.services.idempotency import idempotency_keys_purge


class Command(BaseCommand):
    help = "Delete the Idempotency-Keys past their retention (for cron, when no Celery beat runs); prints how many."

    def handle(self, *args, **options):
        purged = idempotency_keys_purge()
        self.stdout.write(f"Purged {purged} idempotency key{'' if purged == 1 else 's'}.")
