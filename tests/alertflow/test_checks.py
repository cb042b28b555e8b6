"""`make run` refuses an SQLite that lacks what the code uses, and says why."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

from alertflow import checks
from alertflow.management.commands.run import Command as RunCommand

SQLITE = "django.db.backends.sqlite3"

# manage.py in a fresh process, as `make run` starts it, on a Python whose SQLite is 3.34.1.
MANAGE_ON_OLD_SQLITE = """
import sqlite3, sys
sqlite3.sqlite_version_info, sqlite3.sqlite_version = (3, 34, 1), "3.34.1"
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


def test_manage_py_refuses_an_sqlite_older_than_3_35_and_says_why(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'alertflow.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", MANAGE_ON_OLD_SQLITE, "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "alertflow.E001" in result.stderr
    assert "SQLite 3.34.1 is older than 3.35.0" in result.stderr
    assert "RETURNING" in result.stderr


def test_make_run_runs_the_system_checks_before_starting_anything():
    assert RunCommand.requires_system_checks == "__all__"


@pytest.mark.parametrize(
    ("version", "engine", "refused"),
    [
        ((3, 34, 1), SQLITE, True),
        ((3, 31, 1), SQLITE, True),
        ((3, 35, 0), SQLITE, False),
        ((3, 45, 1), SQLITE, False),
        ((3, 20, 0), "alertflow.postgresql", False),
    ],
)
def test_only_an_old_sqlite_is_refused(version, engine, refused):
    assert (checks.sqlite_too_old(version, engine) is not None) == refused
