"""`celery worker` for experiments: the product's worker with app settings overridden from the
environment, to measure a configuration change before making it in config/celery.py.

    BENCH_CELERY_CONF='{"CELERY_DB_REUSE_MAX": 1000}' python -m bench.worker -A config worker ...

Without BENCH_CELERY_CONF it is exactly `celery`.
"""

import json
import os
import sys

from celery.bin.celery import main as celery_main

if __name__ == "__main__":
    overrides = json.loads(os.environ.get("BENCH_CELERY_CONF") or "{}")
    if overrides:
        from config.celery import app

        app.conf.update(overrides)
    sys.argv[0] = "celery"
    sys.exit(celery_main())
