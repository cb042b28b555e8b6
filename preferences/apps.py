from django.apps import AppConfig


class PreferencesConfig(AppConfig):
    name = "preferences"
    verbose_name = "Recipients and preferences"

    def ready(self):
        from . import signals  # noqa: F401 (connects the cache invalidation receivers)
