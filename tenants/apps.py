from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from . import keys
        from .models import ApiKey, Membership, Tenant

        def key_changed(sender, instance, **kwargs):
            keys.changed(instance.pk if sender is Tenant else instance.tenant_id)

        for model in (ApiKey, Membership, Tenant):
            post_save.connect(key_changed, sender=model, weak=False, dispatch_uid=f"keys-{model.__name__}-save")
            post_delete.connect(key_changed, sender=model, weak=False, dispatch_uid=f"keys-{model.__name__}-delete")
