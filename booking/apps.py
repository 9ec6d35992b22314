from django.apps import AppConfig


class BookingConfig(AppConfig):
    name = "booking"
    verbose_name = "Seat booking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group, Permission
        from django.db.models.signals import m2m_changed, post_delete, post_save
        from rest_framework.authtoken.models import Token

        from .api.authentication import token_cache

        # A token deleted or reissued, a user changed (deactivated, renamed) or given other
        # rights: this process forgets every token it kept (other processes within seconds).
        user_model = get_user_model()
        for sender in (Token, user_model, Group):
            post_save.connect(token_cache.clear, sender=sender, dispatch_uid=f"token-cache-save-{sender.__name__}")
            post_delete.connect(token_cache.clear, sender=sender, dispatch_uid=f"token-cache-delete-{sender.__name__}")
        for through in (user_model.user_permissions.through, user_model.groups.through, Group.permissions.through):
            m2m_changed.connect(token_cache.clear, sender=through, dispatch_uid=f"token-cache-m2m-{through.__name__}")
        post_delete.connect(token_cache.clear, sender=Permission, dispatch_uid="token-cache-delete-permission")

        # An endpoint added, changed or removed in this process: its list of endpoints is asked anew.
        from .models import WebhookEndpoint
        from .services.webhooks import endpoints

        post_save.connect(endpoints.clear, sender=WebhookEndpoint, dispatch_uid="webhook-endpoints-save")
        post_delete.connect(endpoints.clear, sender=WebhookEndpoint, dispatch_uid="webhook-endpoints-delete")
