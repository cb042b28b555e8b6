"""Forget cached API keys whenever a key, a membership or a tenant changes or goes, and cached
categories whenever a category does.

Receivers rather than calls in the services, so that every writer (the API, the admin, a
cascade) invalidates: see tenants/keys.py.
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import keys
from .models import ApiKey, Category, Membership, Tenant
from .services import categories_by_key


@receiver(post_save, sender=ApiKey, dispatch_uid="tenants.key_saved")
@receiver(post_delete, sender=ApiKey, dispatch_uid="tenants.key_deleted")
@receiver(post_save, sender=Membership, dispatch_uid="tenants.membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="tenants.membership_deleted")
@receiver(post_save, sender=Tenant, dispatch_uid="tenants.tenant_saved")
@receiver(post_delete, sender=Tenant, dispatch_uid="tenants.tenant_deleted")
def key_changed(sender, instance, **kwargs) -> None:
    keys.changed(instance.pk if sender is Tenant else instance.tenant_id)


@receiver(post_save, sender=Category, dispatch_uid="tenants.category_saved")
@receiver(post_delete, sender=Category, dispatch_uid="tenants.category_deleted")
def category_changed(sender, instance: Category, **kwargs) -> None:
    categories_by_key.changed(instance.tenant_id)
