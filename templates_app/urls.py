from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
# Both `/templates` and `/templates/` (DRF's constructor takes only a yes/no for the slash).
router.trailing_slash = "/?"
router.register("templates", views.TemplateViewSet, basename="template")

urlpatterns = router.urls
