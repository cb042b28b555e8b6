"""System checks run by every manage.py command, `make run`'s included (it runs them before
starting anything, and migrate runs them again)."""

import sqlite3

from django.conf import settings
from django.core.checks import Error, Tags, register

# UPDATE ... RETURNING (the claim of a message, delivery/state.py) arrived in SQLite 3.35.0
# (https://sqlite.org/lang_returning.html). It also brings the 32,766 bound parameters per
# statement that 3.32 introduced (999 before): the due poller and the sweeper put up to 2,000
# message ids in one IN list.
MIN_SQLITE_VERSION = (3, 35, 0)


def sqlite_too_old(version: tuple[int, ...], engine: str) -> Error | None:
    """The error for an SQLite library older than the code needs, or None."""
    if engine != "django.db.backends.sqlite3" or version >= MIN_SQLITE_VERSION:
        return None
    have, need = ".".join(map(str, version)), ".".join(map(str, MIN_SQLITE_VERSION))
    return Error(
        f"SQLite {have} is older than {need}, which AlertFlow needs: workers claim messages with "
        "UPDATE ... RETURNING (SQLite 3.35+) and poll up to 2,000 ids per statement.",
        hint="Use a Python built with a newer SQLite (python.org and recent distributions have one), "
        "or set DATABASE_URL to PostgreSQL.",
        id="alertflow.E001",
    )


@register(Tags.compatibility)
def check_sqlite_version(app_configs, **kwargs) -> list[Error]:
    error = sqlite_too_old(sqlite3.sqlite_version_info, settings.DATABASES["default"]["ENGINE"])
    return [error] if error else []
