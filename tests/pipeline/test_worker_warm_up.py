import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: this one's URL resolver and validator regexes are warm from other tests.
PROBE = """
import django
django.setup()
from celery.signals import worker_init
from django.core.validators import EmailValidator
from django.urls import get_resolver
from django.utils.functional import empty
import delivery.tasks

cold = (get_resolver()._populated, EmailValidator.user_regex._wrapped is not empty)
# Celery logs a receiver's exception and goes on: count them.
raised = [response for _receiver, response in worker_init.send(sender=None) if isinstance(response, Exception)]
print(*cold, get_resolver()._populated, EmailValidator.user_regex._wrapped is not empty, len(raised))
"""


def test_the_worker_warms_up_what_each_pool_process_did_on_its_first_email():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    # Cold after the imports, warm after the signal the worker's main process sends before forking.
    assert done.stdout.split() == ["False", "False", "True", "True", "0"]
