"""Settings for the second pass of `make test`: the tests marked `sqlite` run on SQLite, the
database `make run` uses when no DATABASE_URL is given, with config/settings.py's SQLite options
(WAL, IMMEDIATE transactions, a busy timeout). This is where the claim's RETURNING, the ignored
SKIP LOCKED and the length of IN lists meet the embedded default.

The test database is a file, like `make run`'s, not Django's default in-memory database: shared
in-memory SQLite locks whole tables and ignores the busy timeout, which no deployment sees.
pytest-django adds each xdist worker's name to the file name.
"""

import os
import tempfile
from pathlib import Path

os.environ["DATABASE_URL"] = "sqlite:///alertflow.sqlite3"

from .test_settings import *  # noqa: F403
from .test_settings import DATABASES, SLOT

DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"alertflow-test-slot{SLOT}.sqlite3")}
