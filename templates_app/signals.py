"""Drop the cached template versions of a tenant whenever one of its templates is saved (a new
version, a revival, an edit in the admin) or deleted: see `services.versions_for_sends`.

Receivers rather than calls in the services, so that every writer (the API, the admin, a
cascade) invalidates.
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Template
from .services import versions_for_sends


@receiver(post_save, sender=Template, dispatch_uid="templates_app.template_saved")
@receiver(post_delete, sender=Template, dispatch_uid="templates_app.template_deleted")
def template_changed(sender, instance: Template, **kwargs) -> None:
    versions_for_sends.changed(instance.tenant_id)
