"""Forget cached API keys whenever a key, a membership or a tenant changes or goes, and cached
categories whenever a category does.

Receivers rather than calls in the services, so that every writer (the API, the admin, a
cascade) invalidates: see tenants/keys.py. Keys are invalidated before the write, so that a
write Redis cannot hear of is refused before anything is written (keys.changing).
"""

from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from . import keys
from .models import ApiKey, Category, Membership, Tenant
from .services import categories_by_key


def key_changing(sender, instance, **kwargs) -> None:
    """Before a row that cached keys may stand on is changed or deleted: every process reloads
    the tenant's keys (now and after the commit), or the write is refused when Redis cannot hear
    of it (keys.KeysUnavailable), before anything is written. A new row outdates no cached key:
    a key is cached only once it was found."""
    if not instance._state.adding:
        keys.changing(instance.pk if sender is Tenant else instance.tenant_id)


# The rows a cached key stands on: the key itself, its membership (the role) and its tenant.
for model in (ApiKey, Membership, Tenant):
    name = model._meta.model_name
    pre_save.connect(key_changing, sender=model, dispatch_uid=f"tenants.{name}_saving")
    pre_delete.connect(key_changing, sender=model, dispatch_uid=f"tenants.{name}_deleting")


@receiver(post_save, sender=Category, dispatch_uid="tenants.category_saved")
@receiver(post_delete, sender=Category, dispatch_uid="tenants.category_deleted")
def category_changed(sender, instance: Category, **kwargs) -> None:
    categories_by_key.changed(instance.tenant_id)
