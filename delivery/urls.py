from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
# Both `/providers` and `/providers/` (DRF's constructor takes only a yes/no for the slash).
router.trailing_slash = "/?"
router.register("providers", views.ProviderViewSet, basename="provider")

urlpatterns = router.urls
