"""AlertFlow settings: every setting is read from the environment here, and only here.

With no environment at all this is a development configuration (SQLite and files under
`var/`). With `DEBUG` off, secrets have no defaults: a production deployment that forgets
`SECRET_KEY` fails at start-up instead of running with a public key.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from alertflow.cpus import usable_cpus
from alertflow.queues import PRUNE_WEBHOOKS_TASK, RELAY_WEBHOOKS_TASK, WEBHOOK_QUEUE, WORKER_PROCESSES_PER_CORE

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ALERTFLOW_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Behind the reverse proxy of docker-compose.yml, TLS ends at the proxy.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "corsheaders",
    "alertflow",
    "tenants",
    "preferences",
    "templates_app",
    "notifications",
    "delivery",
]

MIDDLEWARE = [
    "alertflow.middleware.RequestIdMiddleware",
    "alertflow.middleware.RequestMetricsMiddleware",
    "alertflow.middleware.JsonErrorMiddleware",
    "alertflow.middleware.BodySizeLimitMiddleware",
    "alertflow.middleware.RequestInputMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
# Routes accept paths with and without the trailing slash; a redirect would drop POST bodies.
APPEND_SLASH = False
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# PostgreSQL in production and tests; SQLite under var/ for `make run` on a bare machine.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'alertflow.sqlite3'}")
# Persistent connections are what let gunicorn reach ~745 req/s here (DESIGN section 7).
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the writer, IMMEDIATE
    # transactions take the write lock up front instead of failing half-way with "locked".
    _db["CONN_MAX_AGE"] = 0
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a health check that asks the socket before it sends `SELECT 1`: no
    # round trip per request while the server has said nothing (alertflow/postgresql/base.py).
    _db["ENGINE"] = "alertflow.postgresql"
    # libpq waits for ever for a new connection's answer unless told: a database address that
    # drops packets (a failover, a firewall) would hang a request, a task or the relay for good.
    # A URL's own `?connect_timeout=` wins.
    _db["OPTIONS"] = {"connect_timeout": env_int("DB_CONNECT_TIMEOUT", 5), **_db.get("OPTIONS", {})}
    if env_bool("DB_PREPARED_STATEMENTS", True):
        # Parameters bound by the server, and each statement prepared on its connection after its
        # 5th use: PostgreSQL then skips parsing and planning the same INSERTs and SELECTs on every
        # request (about a quarter less PostgreSQL CPU per accepted send, bench/README "2026-12-04
        # (session 2)"). Both or neither: server-side binding alone, without preparing, measured
        # worse than Django's default. That default (client-side binding, nothing prepared) is
        # what a pooler in transaction mode without prepared-statement support needs: set it to 0.
        _db["OPTIONS"] = {**_db.get("OPTIONS", {}), "server_side_binding": True, "prepare_threshold": 5}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, broker, channel layer ----------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "alertflow.cache.ReusingRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "af",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer: 0.16 ms per group_send vs 0.85 ms for the core layer (DESIGN 7).
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}


def celery_broker_url(redis_url: str) -> str:
    """Celery spells a Redis unix socket `redis+socket://`, redis-py spells it `unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", celery_broker_url(REDIS_URL))
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Pool processes of a `celery worker` started without `-c` (docker-compose.yml's workers).
CELERY_WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", WORKER_PROCESSES_PER_CORE * usable_cpus())

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- REST API -------------------------------------------------------------------------------
# The kernel's auth class reads the key; the tenants app says whose it is (alertflow/auth.py).
ALERTFLOW_API_KEY_LOOKUP = "tenants.auth.authenticate_key"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["alertflow.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["alertflow.permissions.RolePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["alertflow.throttling.TenantRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "tenant": env_str("ALERTFLOW_TENANT_RATE", "6000/min"),
        "register": env_str("ALERTFLOW_REGISTER_RATE", "30/hour"),
        "login": env_str("ALERTFLOW_LOGIN_RATE", "20/min"),
    },
    "DEFAULT_PAGINATION_CLASS": "alertflow.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["alertflow.input_limits.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "alertflow.negotiation.ContentNegotiation",
    "EXCEPTION_HANDLER": "alertflow.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "alertflow.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "AlertFlow API",
    "DESCRIPTION": "Multi-tenant notification delivery: email, SMS, push and in-app.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per vocabulary, so generated clients get `ChannelEnum`, not `Channel5d4Enum`.
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "alertflow.choices.Channel",
        "PriorityEnum": "alertflow.choices.Priority",
        "RoleEnum": "alertflow.choices.Role",
        "ProviderChannelEnum": "delivery.models.PROVIDER_CHANNELS",
        # The channels reached at an address or a device (email, sms, push): a suppression's and
        # the Kafka service's `channel` take the same three, and drf-spectacular can name one
        # set of choices once (a name each gave suppressions "KafkaChannelEnum").
        "AddressedChannelEnum": "preferences.suppressions.ADDRESSED",
        "MessageStatusEnum": "notifications.models.Message.Status",
        "NotificationStatusEnum": "notifications.progress.Summary",
    },
}

# --- AlertFlow ------------------------------------------------------------------------------
# Closed deployments turn self-service registration off.
ALERTFLOW_REGISTRATION_OPEN = env_bool("ALERTFLOW_REGISTRATION_OPEN", True)
# Request bodies larger than this are refused with 413 before they are parsed.
ALERTFLOW_MAX_BODY_BYTES = env_int("ALERTFLOW_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = ALERTFLOW_MAX_BODY_BYTES
# JSON nested deeper than this (the body is level 1) is refused with 400 `too_deep` as it is
# parsed: everything that walks it later recurses once per level (alertflow/input_limits.py).
ALERTFLOW_JSON_MAX_DEPTH = env_int("ALERTFLOW_JSON_MAX_DEPTH", 32)
# Lifetime of the token `POST /api/v1/auth/login` hands a member.
ALERTFLOW_LOGIN_TOKEN_HOURS = env_int("ALERTFLOW_LOGIN_TOKEN_HOURS", 12)
ALERTFLOW_INVITE_DAYS = env_int("ALERTFLOW_INVITE_DAYS", 7)
# Tenant templates run in shared processes. Blocks nested deeper than this are refused when a
# template is saved (Django's parser and renderer recurse per level); one render (all fields of
# a channel) may run this many loop iterations, produce this many characters and take this many
# CPU seconds, or it fails with `render_too_expensive` (templates_app/sandbox.py).
ALERTFLOW_TEMPLATE_MAX_NESTING = env_int("ALERTFLOW_TEMPLATE_MAX_NESTING", 20)
ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS = env_int("ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS", 10_000)
ALERTFLOW_RENDER_MAX_OUTPUT_CHARS = env_int("ALERTFLOW_RENDER_MAX_OUTPUT_CHARS", 1_000_000)
ALERTFLOW_RENDER_MAX_SECONDS = float(env_str("ALERTFLOW_RENDER_MAX_SECONDS", "1"))
# Where clients reach the websocket server (handed out with recipient tokens).
ALERTFLOW_WS_URL = env_str("ALERTFLOW_WS_URL", "ws://localhost:8001")
# The in-app bell calls the inbox endpoints from tenants' pages, on any origin. Only those: the
# credential is a bearer token (no cookies), and the rest of the API is for tenants' backends.
CORS_URLS_REGEX = r"^/api/v1/inbox(/.*)?$"
CORS_ALLOW_ALL_ORIGINS = True
CORS_ALLOW_HEADERS = [
    "authorization",
    "content-type",
    "x-request-id",
    "x-inbox-tenant",
    "x-inbox-recipient",
    "x-inbox-hmac",
]
# Lifetime of a recipient token (`POST /api/v1/recipients/{id}/token`), for the inbox and websocket.
ALERTFLOW_RECIPIENT_TOKEN_SECONDS = env_int("ALERTFLOW_RECIPIENT_TOKEN_SECONDS", 3600)

# --- Encryption at rest ---------------------------------------------------------------------
# Fernet keys for provider credentials (delivery/crypto.py), comma-separated: the first encrypts,
# all decrypt, so a new key is rotated in by listing it first. Unset, a key is derived from
# SECRET_KEY: fine for development, but production sets its own, because rotating SECRET_KEY
# would then make every stored provider secret unreadable.
ALERTFLOW_ENCRYPTION_KEY = env_list("ALERTFLOW_ENCRYPTION_KEY", [])

# Hosts a tenant names (provider URLs, SMTP hosts, Web Push endpoints) pass the outbound guard
# (alertflow/outbound.py): loopback, private, link-local and CGNAT addresses are refused unless
# this is on. `make run` turns it on, so development against local servers works.
ALERTFLOW_ALLOW_PRIVATE_NETWORKS = env_bool("ALERTFLOW_ALLOW_PRIVATE_NETWORKS", False)

# --- Delivery --------------------------------------------------------------------------------
# Retries: exponential backoff with full jitter from this base, capped, for at most this many
# attempts in all (the first send included).
ALERTFLOW_RETRY_BASE_SECONDS = env_int("ALERTFLOW_RETRY_BASE_SECONDS", 30)
ALERTFLOW_RETRY_MAX_SECONDS = env_int("ALERTFLOW_RETRY_MAX_SECONDS", 3600)
ALERTFLOW_MAX_ATTEMPTS = env_int("ALERTFLOW_MAX_ATTEMPTS", 6)
# How long a message may wait to be sent (seconds, from its send time) when neither the request
# nor its category says: by priority, a critical category counting as `critical`. Past it the
# message is `expired`, never sent late (an OTP that arrives after an hour is useless).
ALERTFLOW_EXPIRES_IN = {
    "critical": env_int("ALERTFLOW_EXPIRES_IN_CRITICAL", 10 * 60),
    "high": env_int("ALERTFLOW_EXPIRES_IN_HIGH", 24 * 3600),
    "normal": env_int("ALERTFLOW_EXPIRES_IN_NORMAL", 3 * 24 * 3600),
    "low": env_int("ALERTFLOW_EXPIRES_IN_LOW", 3 * 24 * 3600),
}
if any(seconds <= 0 for seconds in ALERTFLOW_EXPIRES_IN.values()):
    raise ImproperlyConfigured("ALERTFLOW_EXPIRES_IN_*: each must be a positive number of seconds")
# The sweeper re-enqueues messages queued this long without being claimed (a lost publish)...
ALERTFLOW_STALE_QUEUED_SECONDS = env_int("ALERTFLOW_STALE_QUEUED_SECONDS", 300)
# A claim is a lease this long, renewed while its batch is being sent (and always covering the
# provider call in progress): a message whose worker died is retried once the lease runs out, by
# the due poller (every second), so a crash costs about this many seconds.
ALERTFLOW_LEASE_SECONDS = env_int("ALERTFLOW_LEASE_SECONDS", 30)
if ALERTFLOW_LEASE_SECONDS <= 0:
    raise ImproperlyConfigured("ALERTFLOW_LEASE_SECONDS must be a positive number of seconds")
# Circuit breaker per provider: this many transient failures within the window open it; after
# the cool-down one probe send decides whether it closes again.
ALERTFLOW_BREAKER_FAILURES = env_int("ALERTFLOW_BREAKER_FAILURES", 5)
ALERTFLOW_BREAKER_WINDOW_SECONDS = env_int("ALERTFLOW_BREAKER_WINDOW_SECONDS", 60)
ALERTFLOW_BREAKER_COOLDOWN_SECONDS = env_int("ALERTFLOW_BREAKER_COOLDOWN_SECONDS", 30)
# A rate-limited provider makes a worker wait at most this long for a send slot; a longer wait
# fails over to the next provider, or retries the message later.
ALERTFLOW_RATE_LIMIT_MAX_WAIT_SECONDS = float(env_str("ALERTFLOW_RATE_LIMIT_MAX_WAIT_SECONDS", "1"))
# How often beat runs the sweeper (the due-message poller runs every second).
ALERTFLOW_SWEEP_INTERVAL_SECONDS = env_int("ALERTFLOW_SWEEP_INTERVAL_SECONDS", 30)
# The outbox relay holds single sends back while their Redis list already has tasks waiting for
# every worker, to send them together once it is shorter (notifications/queue.py, QUEUE_AHEAD),
# but never longer than this (then all of the list's held singles go out together): a long bulk
# in the list would otherwise hold them for its whole run.
# At most a day, and a number: "inf" (or 1e300) made every relay round fail with an
# OverflowError once a list was busy (a timedelta cannot hold it), so nothing was published.
try:
    ALERTFLOW_RELAY_HOLD_MAX_SECONDS = float(env_str("ALERTFLOW_RELAY_HOLD_MAX_SECONDS", "1"))
except ValueError:
    ALERTFLOW_RELAY_HOLD_MAX_SECONDS = -1.0  # refused just below
if not 0 <= ALERTFLOW_RELAY_HOLD_MAX_SECONDS <= 24 * 3600:  # NaN fails too
    raise ImproperlyConfigured("ALERTFLOW_RELAY_HOLD_MAX_SECONDS must be a number of seconds from 0 to 86400")
# Under load the relay spaces its rounds, 25 ms per row the last one took, up to this: the single
# sends committed meanwhile share a task, which halves the worker's CPU per send, and each waits
# for the next round up to this long (notifications/relay.py, round_gap). 0.025 keeps every round
# 25 ms apart, as before the spacing (bench/README, issue 14 session 5, the relay's rounds).
try:
    ALERTFLOW_RELAY_ROUND_MAX_SECONDS = float(env_str("ALERTFLOW_RELAY_ROUND_MAX_SECONDS", "0.1"))
except ValueError:
    ALERTFLOW_RELAY_ROUND_MAX_SECONDS = -1.0  # refused just below
if not 0.025 <= ALERTFLOW_RELAY_ROUND_MAX_SECONDS <= 1:  # NaN fails too
    raise ImproperlyConfigured("ALERTFLOW_RELAY_ROUND_MAX_SECONDS must be a number of seconds from 0.025 to 1")

# Tenant webhooks out (delivery/webhooks): each POST's timeout; how long a relay holds a claimed
# delivery before another may take it (a killed relay's delivery is due again after it); the
# backoff (five times longer each try, from BASE to MAX, +-25 % jitter) and the tries per delivery
# (the defaults: 8 tries over about 14 hours); an endpoint is disabled when that many deliveries
# in a row used all their tries, or when every attempt failed for that many seconds.
ALERTFLOW_WEBHOOK_TIMEOUT_SECONDS = env_int("ALERTFLOW_WEBHOOK_TIMEOUT_SECONDS", 5)
# Webhook URLs must be https (events carry recipients' ids, statuses and suppressed addresses),
# as Svix, Knock and Novu require outside development; on under DEBUG (`make run`), for local
# receivers.
ALERTFLOW_WEBHOOK_ALLOW_HTTP = env_bool("ALERTFLOW_WEBHOOK_ALLOW_HTTP", DEBUG)
ALERTFLOW_WEBHOOK_LEASE_SECONDS = env_int("ALERTFLOW_WEBHOOK_LEASE_SECONDS", 60)
ALERTFLOW_WEBHOOK_RETRY_BASE_SECONDS = env_int("ALERTFLOW_WEBHOOK_RETRY_BASE_SECONDS", 10)
ALERTFLOW_WEBHOOK_RETRY_MAX_SECONDS = env_int("ALERTFLOW_WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600)
ALERTFLOW_WEBHOOK_MAX_ATTEMPTS = env_int("ALERTFLOW_WEBHOOK_MAX_ATTEMPTS", 8)
ALERTFLOW_WEBHOOK_DISABLE_AFTER_FAILED_DELIVERIES = env_int("ALERTFLOW_WEBHOOK_DISABLE_AFTER_FAILED_DELIVERIES", 5)
ALERTFLOW_WEBHOOK_DISABLE_AFTER_SECONDS = env_int("ALERTFLOW_WEBHOOK_DISABLE_AFTER_SECONDS", 3 * 24 * 3600)
# Events (with their deliveries and attempts) older than this are deleted, unless still pending.
ALERTFLOW_WEBHOOK_RETENTION_DAYS = env_int("ALERTFLOW_WEBHOOK_RETENTION_DAYS", 30)
if ALERTFLOW_WEBHOOK_LEASE_SECONDS <= ALERTFLOW_WEBHOOK_TIMEOUT_SECONDS * 2:
    raise ImproperlyConfigured("ALERTFLOW_WEBHOOK_LEASE_SECONDS must be more than twice the webhook timeout")

# Beat's periodic work. django-celery-beat's database scheduler stores these rows at start-up,
# next to the cron campaigns operators add in the admin.
CELERY_BEAT_SCHEDULE = {
    "enqueue-due-messages": {"task": "delivery.enqueue_due", "schedule": 1.0, "options": {"expires": 5}},
    "sweep-stale-messages": {
        "task": "delivery.sweep_stale",
        "schedule": float(ALERTFLOW_SWEEP_INTERVAL_SECONDS),
        "options": {"expires": ALERTFLOW_SWEEP_INTERVAL_SECONDS},
    },
    "relay-webhooks": {
        "task": RELAY_WEBHOOKS_TASK,
        "schedule": 1.0,
        "options": {"expires": 5, "queue": WEBHOOK_QUEUE},
    },
    "prune-webhooks": {
        "task": PRUNE_WEBHOOKS_TASK,
        "schedule": 3600.0,
        "options": {"expires": 600, "queue": WEBHOOK_QUEUE},
    },
}

# --- Logging: JSON lines with the request id --------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# `GET /metrics` answers only a scraper sending `Authorization: Bearer <this>`; unset, the
# endpoint does not exist (404). Metrics name queues, providers and volumes: not for tenants.
ALERTFLOW_METRICS_TOKEN = env_str("ALERTFLOW_METRICS_TOKEN", "")
# The longest range GET /api/v1/analytics/deliveries answers (a quarter, in hourly aggregates).
ALERTFLOW_ANALYTICS_MAX_DAYS = env_int("ALERTFLOW_ANALYTICS_MAX_DAYS", 92)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "alertflow.logging.RequestIdFilter"},
        # Beat's every-second pollers: their runs that did nothing leave no line. (A crontab
        # schedule, which has no `<=`, is no poller.)
        "quiet_pollers": {
            "()": "alertflow.logging.QuietPollers",
            "tasks": [
                entry["task"]
                for entry in CELERY_BEAT_SCHEDULE.values()
                if isinstance(entry["schedule"], int | float) and entry["schedule"] <= 1.0
            ],
        },
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id", "quiet_pollers"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- Providers --------------------------------------------------------------------------------
# The deployment's own providers, used for a channel when a tenant configured none, read from the
# environment names users of Alertora expect. With nothing set, every channel writes to a local
# sink under var/sinks/ that a person can open (delivery/channels, "console" kinds).
# Endpoints of the SDKs that cannot take one per config, so tests and benchmarks run the real
# SDK against a local fake; empty means the real service.
ALERTFLOW_TWILIO_BASE_URL = env_str("ALERTFLOW_TWILIO_BASE_URL", "")
ALERTFLOW_FCM_BASE_URL = env_str("ALERTFLOW_FCM_BASE_URL", "")
# The public base URL of this deployment (https://alertflow.example.com), as providers reach it:
# receipt URLs handed to providers (Twilio's per-message status callback) are built on it, and
# Twilio signs the URL it posted to, so it must be exactly what the provider sees. Empty: no
# per-message callback is sent (receipt URLs configured at the ESP still work).
ALERTFLOW_PUBLIC_URL = env_str("ALERTFLOW_PUBLIC_URL", "")


def _required_env(name: str, why: str) -> str:
    value = env_str(name)
    if value is None:
        raise ImproperlyConfigured(f"{name} must be set {why}")
    return value


def _default_email_provider() -> dict:
    provider = env_str("EMAIL_PROVIDER")
    if provider is None:  # inferred from whichever credentials are present
        provider = (
            "sendgrid"
            if env_str("SENDGRID_API_KEY")
            else "gmail"
            if env_str("GMAIL_ADDRESS")
            else "smtp"
            if env_str("SMTP_HOST")
            else "console"
        )
    from_email = env_str("EMAIL_FROM")
    if provider == "console":
        return {"channel": "email", "kind": "console", "config": {"from_email": from_email} if from_email else {}}
    if provider == "gmail":
        # Gmail SMTP with an app password (Google: "Sign in with app passwords"): STARTTLS on 587.
        address = _required_env("GMAIL_ADDRESS", "when EMAIL_PROVIDER=gmail")
        return {
            "channel": "email",
            "kind": "smtp",
            "config": {
                "host": "smtp.gmail.com",
                "port": 587,
                "use_tls": True,
                "username": address,
                "password": _required_env("GMAIL_APP_PASSWORD", "when EMAIL_PROVIDER=gmail"),
                "from_email": from_email or address,
            },
        }
    if from_email is None:
        raise ImproperlyConfigured(f"EMAIL_FROM must be set when EMAIL_PROVIDER={provider}")
    if provider == "smtp":
        return {
            "channel": "email",
            "kind": "smtp",
            "config": {
                "host": _required_env("SMTP_HOST", "when EMAIL_PROVIDER=smtp"),
                "port": env_int("SMTP_PORT", 587),
                "username": env_str("SMTP_USERNAME", ""),
                "password": env_str("SMTP_PASSWORD", ""),
                # STARTTLS unless implicit TLS (port 465) is asked for: the two are exclusive.
                "use_tls": env_bool("SMTP_USE_TLS", not env_bool("SMTP_USE_SSL", False)),
                "use_ssl": env_bool("SMTP_USE_SSL", False),
                "from_email": from_email,
            },
        }
    if provider == "sendgrid":
        return {
            "channel": "email",
            "kind": "sendgrid",
            "config": {
                "api_key": _required_env("SENDGRID_API_KEY", "when EMAIL_PROVIDER=sendgrid"),
                "from_email": from_email,
            },
        }
    raise ImproperlyConfigured(f"EMAIL_PROVIDER must be smtp, gmail, sendgrid or console, got {provider!r}")


def _default_sms_provider() -> dict:
    if env_str("TWILIO_ACCOUNT_SID") is None:
        return {"channel": "sms", "kind": "console", "config": {}}
    config = {
        "account_sid": env_str("TWILIO_ACCOUNT_SID"),
        "auth_token": _required_env("TWILIO_AUTH_TOKEN", "with TWILIO_ACCOUNT_SID"),
    }
    if env_str("TWILIO_MESSAGING_SERVICE_SID"):
        config["messaging_service_sid"] = env_str("TWILIO_MESSAGING_SERVICE_SID")
    else:
        config["from_number"] = _required_env(
            "TWILIO_FROM_NUMBER", "(or TWILIO_MESSAGING_SERVICE_SID) with TWILIO_ACCOUNT_SID"
        )
    return {"channel": "sms", "kind": "twilio", "config": config}


def _default_push_provider() -> dict:
    account = env_str("FCM_SERVICE_ACCOUNT_JSON")
    if account is None and env_str("FCM_SERVICE_ACCOUNT_FILE"):
        try:
            account = Path(env_str("FCM_SERVICE_ACCOUNT_FILE")).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(f"FCM_SERVICE_ACCOUNT_FILE cannot be read: {exc}") from exc
    if account is None:
        return {"channel": "push", "kind": "console", "config": {}}
    return {"channel": "push", "kind": "fcm", "config": {"service_account": account}}


# [{"channel", "kind", "config"}]; delivery.channels.default_providers() validates each entry.
ALERTFLOW_DEFAULT_PROVIDERS = [_default_email_provider(), _default_sms_provider(), _default_push_provider()]
