from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self):
        from . import signals  # noqa: F401 (connects the API key and category cache receivers)
