"""Routes of the seed systems under /api/v1/ that AlertFlow's own API does not have.

Included before AlertFlow's own app routes: `templates/render` must win over `templates/{code}`.
"""

from django.urls import path

from .hng import HngMetricsView
from .shared import TemplatesRenderView, UserPreferencesView

urlpatterns = [
    path("users/<str:user_id>/preferences", UserPreferencesView.as_view(), name="user-preferences"),
    path("templates/render", TemplatesRenderView.as_view(), name="hng-template-render"),
    path("metrics", HngMetricsView.as_view(), name="hng-metrics"),
]
