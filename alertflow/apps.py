from django.apps import AppConfig


class AlertflowConfig(AppConfig):
    name = "alertflow"
    verbose_name = "AlertFlow kernel"

    def ready(self):
        # Registers the system checks; gives PostgreSQL connections the cursor that prepares a
        # statement again after a schema change, and psycopg's C loader for UTC timestamps.
        from . import checks, prepared, timestamps  # noqa: F401
