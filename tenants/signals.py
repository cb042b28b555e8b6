"""Forget cached API keys whenever a key, a membership or a tenant changes or goes, and cached
categories whenever a category does.

Receivers rather than calls in the services, so that every writer (the API, the admin, a
cascade) invalidates: see tenants/keys.py. Keys are invalidated before the write, so that a
write Redis cannot hear of is refused before anything is written (keys.changing).
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from . import keys
from .models import ApiKey, Category, Membership, Tenant
from .services import categories_by_key

# What a cached key never reads: a write of only these outdates none (a password set when an
# invitation is accepted, or re-hashed at a login, must not need Redis).
UNREAD_FIELDS = frozenset({"password"})


def outdates_keys(instance, update_fields) -> bool:
    """Whether this write may outdate a cached key. A new row does not: a key is cached only
    once it was found."""
    return not instance._state.adding and not (update_fields is not None and update_fields <= UNREAD_FIELDS)


def key_changing(sender, instance, update_fields=None, **kwargs) -> None:
    """Before a row that cached keys may stand on is changed or deleted: every process reloads
    the tenant's keys (now and after the commit), or the write is refused when Redis cannot hear
    of it (keys.KeysUnavailable), before anything is written."""
    if outdates_keys(instance, update_fields):
        keys.changing(instance.pk if sender is Tenant else instance.tenant_id)


def key_saved(sender, instance, created: bool, using: str, update_fields=None, **kwargs) -> None:
    """After a change saved outside a transaction (autocommit: `DELETE /api-keys` saves the
    revocation that way), the "after the commit" bump of `key_changing` ran at once, before the
    UPDATE: bumped again now that it is committed, or a request of another process that read the
    old row in between kept it under the latest version (a revoked key let in for up to
    keys.CACHE_SECONDS). In a transaction the after-commit bump comes after the write already
    (and a delete always runs in one)."""
    if not created and outdates_keys(instance, update_fields) and not transaction.get_connection(using).in_atomic_block:
        keys.changed(instance.pk if sender is Tenant else instance.tenant_id)


# The rows a cached key stands on: the key itself, its membership (the role) and its tenant.
for model in (ApiKey, Membership, Tenant):
    name = model._meta.model_name
    pre_save.connect(key_changing, sender=model, dispatch_uid=f"tenants.{name}_saving")
    pre_delete.connect(key_changing, sender=model, dispatch_uid=f"tenants.{name}_deleting")
    post_save.connect(key_saved, sender=model, dispatch_uid=f"tenants.{name}_saved")


@receiver(post_save, sender=Category, dispatch_uid="tenants.category_saved")
@receiver(post_delete, sender=Category, dispatch_uid="tenants.category_deleted")
def category_changed(sender, instance: Category, **kwargs) -> None:
    categories_by_key.changed(instance.tenant_id)
