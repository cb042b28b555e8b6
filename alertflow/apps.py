from django.apps import AppConfig


class AlertflowConfig(AppConfig):
    name = "alertflow"
    verbose_name = "AlertFlow kernel"
