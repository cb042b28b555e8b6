from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from . import inbox, inbox_views, views
from .webhooks import views as webhook_views

router = SimpleRouter()
# Both `/providers` and `/providers/` (DRF's constructor takes only a yes/no for the slash).
router.trailing_slash = "/?"
router.register("providers", views.ProviderViewSet, basename="provider")
router.register("webhooks", webhook_views.WebhookEndpointViewSet, basename="webhook")

actions = "|".join(inbox.ACTIONS)

urlpatterns = [
    *router.urls,
    path("recipients/<str:external_id>/token", inbox_views.RecipientTokenView.as_view(), name="recipient-token"),
    path("inbox-secret", inbox_views.InboxSecretView.as_view(), name="inbox-secret"),
    path("inbox", inbox_views.InboxView.as_view(), name="inbox"),
    path("inbox/preferences", inbox_views.InboxPreferencesView.as_view(), name="inbox-preferences"),
    path("inbox/read-all", inbox_views.InboxBulkView.as_view(action="read"), name="inbox-read-all"),
    path("inbox/archive-all", inbox_views.InboxBulkView.as_view(action="archive"), name="inbox-archive-all"),
    re_path(
        rf"^inbox/(?P<message_id>[0-9a-fA-F]{{8}}(?:-[0-9a-fA-F]{{4}}){{3}}-[0-9a-fA-F]{{12}})/(?P<action>(?:{actions}))/?$",
        inbox_views.InboxActionView.as_view(),
        name="inbox-action",
    ),
]
