"""Routes of the seed systems under /api/v1/ that AlertFlow's own API does not have.

Included before AlertFlow's own app routes: `templates/render` must win over `templates/{code}`.
"""

from django.urls import path

from .hng import HngMetricsView, HngUserPreferencesView
from .templates import TemplatesRenderView

urlpatterns = [
    path("users/<str:user_id>/preferences", HngUserPreferencesView.as_view(), name="hng-user-preferences"),
    path("templates/render", TemplatesRenderView.as_view(), name="hng-template-render"),
    path("metrics", HngMetricsView.as_view(), name="hng-metrics"),
]
