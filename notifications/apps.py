from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        # templates_app may not import the seed adapters: they register with its hook instead.
        from templates_app.hooks import register_body_adapter

        from .compat.templates import adapt_template_body

        register_body_adapter(adapt_template_body)
