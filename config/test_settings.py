"""Settings for `make test`: the real settings, pointed at real PostgreSQL and Redis.

Each pytest-xdist worker gets its own Redis database, so clearing the cache between tests in
one worker never touches another's. `ALERTFLOW_TEST_SLOT` (a small number, default 0) moves a whole run to
other Redis databases and another PostgreSQL test database, so several checkouts on one machine
can run the suite at the same time.
"""

import os
from urllib.parse import urlsplit, urlunsplit

SLOT = int(os.environ.get("ALERTFLOW_TEST_SLOT") or 0)


def _redis_url_for_worker(url: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    database = 1 + (2 * SLOT + int(worker.removeprefix("gw") or 0)) % 15
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _database_url_for_slot(url: str) -> str:
    # xdist workers inherit the environment this module already rewrote: add the suffix once.
    parts = urlsplit(url)
    if not SLOT or parts.path.endswith(f"_slot{SLOT}"):
        return url
    return urlunsplit(parts._replace(path=f"{parts.path}_slot{SLOT}"))


os.environ["REDIS_URL"] = _redis_url_for_worker(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
os.environ["DATABASE_URL"] = _database_url_for_slot(
    os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/alertflow"
)
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.pop("CELERY_BROKER_URL", None)

from .settings import *  # noqa: E402,F403
from .settings import REST_FRAMEWORK  # noqa: E402

# Whatever the shell says: the suite exercises the outbound guard as production runs it. Tests
# that talk to the local fakes on 127.0.0.1 turn it on explicitly (tests/fakes/fixtures.py).
ALERTFLOW_ALLOW_PRIVATE_NETWORKS = False

# Hashing passwords slowly is the point in production and a waste of seconds in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests that exercise throttling lower these with `override_settings`-style fixtures.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"tenant": "100000/min", "register": "100000/min", "login": "100000/min"}
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
