"""Drop a recipient's cached preferences, and the tenant's cached recipients, whenever the
recipient row changes or goes.

Receivers rather than calls in the services, so that every writer (the API, the admin, the
send pipeline's own saves) invalidates: the cache holds the recipient's timezone too.

`opted_out` is this app's own signal, for the layers above it (which it may not import).
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from .models import Recipient
from .services import invalidate_preferences

# Sent by `services.opt_out` when a recipient turns a channel off for a category (or
# altogether, `category=None`) through something other than the preferences API, inside the
# transaction that wrote it. Arguments: `recipient` (Recipient), `category` (Category or None),
# `channel` (str) and `source` (str: "unsubscribe_link" for the one-click unsubscribe).
opted_out = Signal()


@receiver(post_save, sender=Recipient, dispatch_uid="preferences.recipient_saved")
def recipient_saved(sender, instance: Recipient, created: bool, **kwargs) -> None:
    if not created:  # a new recipient has no cached entry yet (lookups that miss are not cached)
        invalidate_preferences(instance.tenant_id, instance.pk)  # the tenant's cached recipients too


@receiver(post_delete, sender=Recipient, dispatch_uid="preferences.recipient_deleted")
def recipient_deleted(sender, instance: Recipient, **kwargs) -> None:
    invalidate_preferences(instance.tenant_id, instance.pk)
