from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
# Both `/categories` and `/categories/` (DRF's constructor takes only a yes/no for the slash).
router.trailing_slash = "/?"
router.register("categories", views.CategoryViewSet, basename="category")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("members", views.MemberViewSet, basename="member")

urlpatterns = [
    path("register", views.RegisterView.as_view(), name="register"),
    path("auth/login", views.LoginView.as_view(), name="login"),
    path("auth/accept-invite", views.AcceptInviteView.as_view(), name="accept-invite"),
    path("usage", views.UsageView.as_view(), name="usage"),
    *router.urls,
]
