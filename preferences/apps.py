from django.apps import AppConfig


class PreferencesConfig(AppConfig):
    name = "preferences"
    verbose_name = "Recipients and preferences"

    def ready(self):
        # Connect the receivers: cached preferences dropped, a tenant marked as having suppressions.
        from . import signals, suppressions  # noqa: F401
