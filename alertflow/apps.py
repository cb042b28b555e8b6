from django.apps import AppConfig


class AlertflowConfig(AppConfig):
    name = "alertflow"
    verbose_name = "AlertFlow kernel"

    def ready(self):
        from . import checks  # noqa: F401 (registers the system checks)
