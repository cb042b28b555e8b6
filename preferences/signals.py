"""Drop a recipient's cached preferences, and the tenant's cached recipients, whenever the
recipient row changes or goes, or its preference row is deleted on its own.

Receivers rather than calls in the services, so that every writer (the API, the admin, the
send pipeline's own saves) invalidates: the cache holds the recipient's timezone too.

`opted_out` is this app's own signal, for the layers above it (which it may not import).
"""

from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import Signal, receiver

from .models import Preference, Recipient
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


@receiver(pre_delete, sender=Preference, dispatch_uid="preferences.preference_deleting")
def preference_deleting(sender, instance: Preference, origin=None, **kwargs) -> None:
    """A preference row deleted on its own (the admin's delete and its bulk action; the API
    rewrites the row, never deletes it): every process forgets the document before it goes, or
    the delete is refused (`PreferencesUnavailable`, nothing deleted) when Redis cannot hear of
    it, as a write is. Unheard, the recipient's deleted opt-outs were still obeyed, or its
    defaults ignored, until the caches expired (15 minutes). Deleted with its recipient (an
    erasure, a tenant's deletion), `recipient_deleted` covers it."""
    on_its_own = isinstance(origin, Preference) or (isinstance(origin, QuerySet) and origin.model is Preference)
    if on_its_own:
        tenant_id = Recipient.objects.filter(pk=instance.recipient_id).values_list("tenant_id", flat=True).get()
        invalidate_preferences(tenant_id, instance.recipient_id, required=True)
