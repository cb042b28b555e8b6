from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
# Both `/recipients` and `/recipients/` (DRF's constructor takes only a yes/no for the slash).
router.trailing_slash = "/?"
router.register("recipients", views.RecipientViewSet, basename="recipient")
router.register("topics", views.TopicViewSet, basename="topic")
router.register("suppressions", views.SuppressionViewSet, basename="suppression")

urlpatterns = router.urls
