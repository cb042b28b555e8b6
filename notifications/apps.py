from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from alertflow.metrics import register_scrape_collector
        from templates_app.hooks import register_body_adapter

        from . import analytics, stats, transitions
        from .compat.shared import adapt_template_body

        # templates_app may not import the seed adapters: they register with its hook instead.
        register_body_adapter(adapt_template_body)
        # An unsubscribe also withdraws what was planned before it and has not left yet.
        from preferences.signals import opted_out

        from .lifecycle import withdraw_opted_out

        opted_out.connect(withdraw_opted_out, dispatch_uid="notifications.withdraw_opted_out")
        # Due-but-unsent messages on every scrape; every status write counted (Prometheus) and
        # aggregated (analytics), in the write's transaction.
        register_scrape_collector(stats.collect_due_unsent)
        transitions.listen(stats.moved)
        transitions.listen(analytics.moved)
