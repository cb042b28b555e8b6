"""Django settings for bench.floor's reference endpoint: nothing of AlertFlow's.

The trivial DRF endpoint issue 14 cites as this machine's floor (bench/floor_app): no middleware,
no authentication, JSON in and out, one table in its own database (`<BENCH_DB_NAME>_floor`) of
the same PostgreSQL server, and the bench's Redis database for its LPUSH.
"""

import os

import dj_database_url

from .env import FLOOR_DATABASE_URL, REDIS_URL

SECRET_KEY = "bench-floor-secret-key-not-for-production-0123456789"  # noqa: S105 (a benchmark's throwaway database)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["rest_framework", "bench.floor_app"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.floor_app.views"
# Persistent connections, as the product's (config/settings.py): a connection per request
# would measure PostgreSQL's session start, not the INSERT.
DATABASES = {"default": dj_database_url.parse(FLOOR_DATABASE_URL, conn_max_age=60)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FLOOR_REDIS_URL = REDIS_URL

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # No django.contrib.auth installed: no AnonymousUser for request.user.
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("BENCH_LOG_LEVEL", "WARNING")},
}
