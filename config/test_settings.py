"""Settings for `make test`: the real settings, pointed at real PostgreSQL and Redis.

Each pytest-xdist worker gets its own Redis database, so clearing the cache between tests in
one worker never touches another's.
"""

import os
from urllib.parse import urlsplit, urlunsplit


def _redis_url_for_worker(url: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    database = 1 + int(worker.removeprefix("gw") or 0)
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


os.environ["REDIS_URL"] = _redis_url_for_worker(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/alertflow")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.pop("CELERY_BROKER_URL", None)

from .settings import *  # noqa: E402,F403
from .settings import REST_FRAMEWORK  # noqa: E402

# Hashing passwords slowly is the point in production and a waste of seconds in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests that exercise throttling lower these with `override_settings`-style fixtures.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"tenant": "100000/min", "register": "100000/min", "login": "100000/min"}
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
