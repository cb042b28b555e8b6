"""Django settings for django-post_office as bench.postoffice runs it: nothing of AlertFlow's.

Only post_office and what it needs, on its own database (`<BENCH_DB_NAME>_postoffice`) of the
same PostgreSQL server, sending with Django's SMTP backend to the run's sink
(`BENCH_SMTP_PORT`). Everything else is the package's default, as a newcomer would run it.
"""

import os

import dj_database_url

from .env import POSTOFFICE_DATABASE_URL

SECRET_KEY = "bench-postoffice-secret-key-not-for-production-0123456789"  # noqa: S105 (a benchmark's throwaway database)
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "post_office"]
DATABASES = {"default": dj_database_url.parse(POSTOFFICE_DATABASE_URL, conn_max_age=60)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = "AlertFlow Bench <bench@alertflow.test>"
POST_OFFICE = {"BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"}}
if os.environ.get("BENCH_POSTOFFICE_BATCH_SIZE"):
    POST_OFFICE["BATCH_SIZE"] = int(os.environ["BENCH_POSTOFFICE_BATCH_SIZE"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("BENCH_LOG_LEVEL", "WARNING")},
}
