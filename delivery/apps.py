from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self):
        from notifications import transitions

        from . import signals  # noqa: F401 (connects the provider cache receivers)
        from .webhooks import events

        # Webhook events are written in the transaction of the status change that causes them.
        transitions.listen(events.on_transition)
