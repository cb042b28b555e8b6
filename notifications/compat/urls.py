"""Routes of the seed systems under /api/v1/ that AlertFlow's own API does not have.

Included before AlertFlow's own app routes: `templates/render` must win over `templates/{code}`.
"""

from django.urls import path, re_path

from .fastapi import NotificationStatusView, UsersView, UserView
from .hng import HngMetricsView
from .shared import TemplatesRenderView, UserPreferencesView

urlpatterns = [
    path("users/<str:user_id>/preferences", UserPreferencesView.as_view(), name="user-preferences"),
    path("templates/render", TemplatesRenderView.as_view(), name="hng-template-render"),
    path("metrics", HngMetricsView.as_view(), name="hng-metrics"),
    # The FastAPI + RabbitMQ system's user service and status path, with or without the slash.
    re_path(r"^users/?$", UsersView.as_view(), name="fastapi-users"),
    re_path(r"^users/(?P<user_id>[^/]+)/?$", UserView.as_view(), name="fastapi-user"),
    path("notifications/<str:notification_id>/status", NotificationStatusView.as_view(), name="fastapi-status"),
]
