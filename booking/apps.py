from django.apps import AppConfig


class BookingConfig(AppConfig):
    name = "booking"
    verbose_name = "Seat booking"
    default_auto_field = "django.db.models.BigAutoField"
