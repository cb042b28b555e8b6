"""Liveness and readiness, for load balancers and orchestrators."""

import logging

from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from .redis import client

logger = logging.getLogger(__name__)


class HealthView(APIView):
    """Liveness: the process answers. Checks nothing else, so a database outage does not get
    every web node restarted by its orchestrator."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    @extend_schema(auth=[], responses={200: dict})
    def get(self, request):
        return Response({"status": "ok"})


class ReadyView(HealthView):
    """Readiness: the database and Redis answer. 503 with the failing part otherwise."""

    @extend_schema(auth=[], responses={200: dict, 503: dict})
    def get(self, request):
        checks = {"database": check_database(), "redis": check_redis()}
        ready = all(result == "ok" for result in checks.values())
        return Response({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        logger.warning("Readiness: database check failed: %s", exc)
        return f"error: {exc.__class__.__name__}"


def check_redis() -> str:
    try:
        client().ping()
        return "ok"
    except Exception as exc:
        logger.warning("Readiness: Redis check failed: %s", exc)
        return f"error: {exc.__class__.__name__}"
