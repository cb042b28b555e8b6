"""The reference endpoint and its URLs (ROOT_URLCONF of bench/floor_settings.py).

At AlertFlow's send path, so bench.floor's wrk sends the same requests to both: the Authorization
header wrk adds is ignored (no authentication classes).
"""

import json

import redis
from django.conf import settings
from django.http import HttpResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from . import QUEUE_KEY
from .models import Event

# One client per process: its connection pool is thread-safe (gthread workers share it).
queue = redis.Redis.from_url(settings.FLOOR_REDIS_URL)


class SendSerializer(serializers.Serializer):
    recipient = serializers.CharField(max_length=64)
    channels = serializers.ListField(child=serializers.CharField(max_length=16), min_length=1)
    content = serializers.DictField()


class Send(APIView):
    def post(self, request):
        serializer = SendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        event = Event.objects.create(recipient=data["recipient"], payload=data["content"])
        queue.lpush(QUEUE_KEY, json.dumps({"id": event.pk}))
        return Response({"id": event.pk, "status": "accepted"}, status=202)


def health(request):
    return HttpResponse("ok")


urlpatterns = [
    path("api/v1/notifications", Send.as_view()),
    # Where bench.processes.start_gunicorn waits for a server to answer.
    path("api/v1/health", health),
]
