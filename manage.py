#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # `manage.py run` (make run) with nothing configured is development. Settings must know
    # before they load, or they refuse to start without SECRET_KEY.
    if sys.argv[1:2] == ["run"] and not os.environ.get("DEBUG"):
        os.environ["DEBUG"] = "true"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
