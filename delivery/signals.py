"""Make every process reload a tenant's providers whenever one changes or goes, and its webhook
subscriptions whenever an endpoint does; collect the ESPs' tracking events for delivery receipts;
check for a completed notification when a fan-out ends; write `suppression.created` events;
check open inbox sockets again when what their credentials stand on changes or goes.

Writers bump the tenant's provider version so every process drops its cached list, now and after
the commit (delivery/providers.py, alertflow/versioned_cache.py). Signals, not save(), so deletes
and cascades count too.
"""

from anymail.signals import tracking
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from notifications.signals import fanned_out
from preferences.models import Recipient
from preferences.suppressions import suppression_created
from tenants.models import Tenant

from . import tracking as tracking_events
from .inbox_auth import credentials_changed
from .models import InboxSecret, Provider, WebhookEndpoint
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
    """A bulk, topic or campaign send wrote its last messages (or a campaign run paused after
    that resumed): it may be complete already, with no message move left to write its
    `notification.completed` (delivery/webhooks/events.py)."""
    webhook_events.check_completed({notification_id})


@receiver(suppression_created, dispatch_uid="delivery.webhooks_suppression_created")
def suppressions_added(sender, tenant_id, suppressions, **kwargs) -> None:
    """New rows of a tenant's suppression list: its `suppression.created` webhook events, written
    in the transaction that inserted them (delivery/webhooks/events.py)."""
    webhook_events.suppressions_created(tenant_id, suppressions)


# --- Inbox credentials (delivery/inbox_auth.py) ------------------------------------------------
# A credential names a recipient (by id, or by external id for an HMAC) of an active tenant, and
# an HMAC is checked with the tenant's inbox secret: a change to any of these may revoke the
# credentials of open sockets. Deleted with their tenant, recipients and the secret leave it to
# the tenant's own receiver, which tells all the tenant's sockets once.

# The fields of a recipient a credential names it by. The send path's own saves name their
# fields and never these, so they tell no socket.
RECIPIENT_IDENTITY = frozenset({"external_id", "tenant"})


def deleted_with_tenant(origin) -> bool:
    """Whether a delete's cascade started at a tenant (`tenant.delete()`, or the admin's bulk delete)."""
    return isinstance(origin, Tenant) or (isinstance(origin, QuerySet) and origin.model is Tenant)


@receiver(post_save, sender=Recipient, dispatch_uid="delivery.inbox_recipient_saved")
def inbox_recipient_saved(sender, instance: Recipient, created: bool, update_fields=None, **kwargs) -> None:
    if not created and (update_fields is None or RECIPIENT_IDENTITY & set(update_fields)):
        credentials_changed(instance.tenant_id, instance.pk)


@receiver(post_delete, sender=Recipient, dispatch_uid="delivery.inbox_recipient_deleted")
def inbox_recipient_deleted(sender, instance: Recipient, origin=None, **kwargs) -> None:
    if not deleted_with_tenant(origin):
        credentials_changed(instance.tenant_id, instance.pk)


@receiver(post_save, sender=Tenant, dispatch_uid="delivery.inbox_tenant_saved")
def inbox_tenant_saved(sender, instance: Tenant, created: bool, **kwargs) -> None:
    """Only a deactivation can revoke: `active` is the one field of the tenant a credential reads."""
    if not created and not instance.active:
        credentials_changed(instance.pk)


@receiver(post_delete, sender=Tenant, dispatch_uid="delivery.inbox_tenant_deleted")
def inbox_tenant_deleted(sender, instance: Tenant, **kwargs) -> None:
    credentials_changed(instance.pk)


@receiver(post_save, sender=InboxSecret, dispatch_uid="delivery.inbox_secret_saved")
@receiver(post_delete, sender=InboxSecret, dispatch_uid="delivery.inbox_secret_deleted")
def inbox_secret_changed(sender, instance: InboxSecret, created: bool = False, origin=None, **kwargs) -> None:
    """A rotated (or deleted) secret revokes every HMAC made with the old one; a first secret
    revokes nothing, and recipient tokens do not depend on it."""
    if not created and not deleted_with_tenant(origin):
        credentials_changed(instance.tenant_id, kind="hmac")
