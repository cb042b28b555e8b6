from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from alertflow.health import HealthView, ReadyView
from alertflow.metrics import metrics_view
from delivery.demo import inbox_demo
from delivery.receipt_views import provider_inbound, provider_receipts
from notifications.compat.alertora import AlertoraPreferencesView
from notifications.dashboard import dashboard
from notifications.views import AlertoraNotifyView
from preferences.pages import unsubscribe
from tenants.views import RegisterView

api_v1 = [
    # First: the send (POST /api/v1/notifications) is the hot path, and Django tries the includes
    # in order, building the list of every pattern it tried on the way (for a 404's debug page):
    # last, that was 8% of a send's CPU (py-spy, bench.acceptloop). None of its patterns (analytics/,
    # notifications, campaigns, messages) matches another include's path; the one they share a
    # prefix with, compat's `notifications/<id>/status`, has no match among them
    # (tests/alertflow/test_urls.py).
    path("", include("notifications.urls")),
    path("health", HealthView.as_view(), name="health"),
    path("health/live", HealthView.as_view(), name="live"),  # the name some clients probe
    path("health/ready", ReadyView.as_view(), name="ready"),
    path("", include("notifications.compat.urls")),  # before the other apps: see its docstring
    path("", include("tenants.urls")),
    path("", include("preferences.urls")),
    path("", include("delivery.urls")),
    path("", include("templates_app.urls")),
]

# The operator's console links its dashboard from the index (notifications/dashboard.py).
admin.site.index_template = "admin/alertflow_index.html"

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # Where the Kafka notification service (shared/seeds/003) answered its health check.
    path("health", HealthView.as_view(), name="root-health"),
    # The original Alertora API, for its clients: same behaviour as the v1 endpoints.
    path("register", RegisterView.as_view(), name="alertora-register"),
    path("notify", AlertoraNotifyView.as_view(), name="alertora-notify"),
    path("preferences", AlertoraPreferencesView.as_view(), name="alertora-preferences"),
    # Provider receipts (delivery status callbacks, ESP tracking webhooks): signed by the provider.
    path("webhooks/providers/<uuid:provider_id>/receipts", provider_receipts, name="provider-receipts"),
    # People's replies (Twilio's "A message comes in"): STOP suppresses, START lifts it. Signed too.
    path("webhooks/providers/<uuid:provider_id>/inbound", provider_inbound, name="provider-inbound"),
    # One-click unsubscribe (RFC 8058): the URL in every non-critical email's List-Unsubscribe.
    # Short, because it sits in a mail header and a person may read it.
    path("u/<str:token>", unsubscribe, name="unsubscribe"),
    # Prometheus, for a scraper holding ALERTFLOW_METRICS_TOKEN (alertflow/metrics.py).
    path("metrics", metrics_view, name="metrics"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/dashboard/", admin.site.admin_view(dashboard), name="admin-dashboard"),
    path("admin/", admin.site.urls),
    # The embeddable bell against this server; a 404 unless DEBUG.
    path("demo/inbox/", inbox_demo, name="inbox-demo"),
]

handler400 = "alertflow.errors.json_400"
handler403 = "alertflow.errors.json_403"
handler404 = "alertflow.errors.json_404"
handler500 = "alertflow.errors.json_500"
