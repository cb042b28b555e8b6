from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.trailing_slash = "/?"
router.register("notifications", views.NotificationViewSet, basename="notification")
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("messages", views.MessageViewSet, basename="message")

urlpatterns = [
    path("analytics/deliveries", views.DeliveryAnalyticsView.as_view(), name="analytics-deliveries"),
    *router.urls,
]
