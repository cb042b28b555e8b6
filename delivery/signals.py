"""Make every process reload a tenant's providers whenever one changes or goes, and its webhook
subscriptions whenever an endpoint does; collect the ESPs' tracking events for delivery receipts;
check for a completed notification when a fan-out ends; write `suppression.created` events.

Writers bump the tenant's provider version so every process drops its cached list, now and after
the commit (delivery/providers.py, alertflow/versioned_cache.py). Signals, not save(), so deletes
and cascades count too.
"""

from anymail.signals import tracking
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from notifications.signals import fanned_out
from preferences.suppressions import suppression_created

from . import tracking as tracking_events
from .models import Provider, WebhookEndpoint
from .providers import invalidate
from .webhooks import events as webhook_events


@receiver(post_save, sender=Provider, dispatch_uid="delivery.provider_saved")
@receiver(post_delete, sender=Provider, dispatch_uid="delivery.provider_deleted")
def provider_changed(sender, instance: Provider, **kwargs) -> None:
    invalidate(instance.tenant_id)


# Receipts from the ESPs: anymail's tracking views send their parsed events to this signal.
tracking.connect(tracking_events.collect, dispatch_uid="delivery.tracking_event")


@receiver(post_save, sender=WebhookEndpoint, dispatch_uid="delivery.webhook_endpoint_saved")
@receiver(post_delete, sender=WebhookEndpoint, dispatch_uid="delivery.webhook_endpoint_deleted")
def webhook_endpoint_changed(sender, instance: WebhookEndpoint, **kwargs) -> None:
    """Every process reads the tenant's subscriptions again (delivery/webhooks/events.py)."""
    webhook_events.invalidate(instance.tenant_id)


@receiver(fanned_out, dispatch_uid="delivery.webhooks_fanned_out")
def notification_fanned_out(sender, notification_id, **kwargs) -> None:
    """A bulk, topic or campaign send wrote its last messages: it may be complete already, with
    no message move left to write its `notification.completed` (delivery/webhooks/events.py)."""
    webhook_events.check_completed({notification_id})


@receiver(suppression_created, dispatch_uid="delivery.webhooks_suppression_created")
def suppressions_added(sender, tenant_id, suppressions, **kwargs) -> None:
    """New rows of a tenant's suppression list: its `suppression.created` webhook events, written
    in the transaction that inserted them (delivery/webhooks/events.py)."""
    webhook_events.suppressions_created(tenant_id, suppressions)
