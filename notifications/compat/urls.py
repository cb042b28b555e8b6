"""Routes of the seed systems under /api/v1/ that AlertFlow's own API does not have."""

from django.urls import path

from .hng import HngUserPreferencesView

urlpatterns = [
    path("users/<str:user_id>/preferences", HngUserPreferencesView.as_view(), name="hng-user-preferences"),
]
