"""A recipient's timezone: the one check of a name, and the one reading of a stored one.

The API's serializers (`preferences.serializers.validate_timezone`) and the operator's console
(the recipient form, which runs the API's serializer) check a name with `zone`. What reads a
stored name (quiet hours, a campaign in each recipient's local time) uses `stored_zone`: a row
saved before the check existed, or written around it, must not fail every send to its recipient.
"""

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

logger = logging.getLogger(__name__)

UTC = ZoneInfo("UTC")


def zone(name: str) -> ZoneInfo:
    """The IANA timezone `name`; raises ValueError, with a message for a person, for any other."""
    try:
        return ZoneInfo(name)
    # ZoneInfoNotFoundError: no such zone; ValueError: not a key at all ("../x", ""), or a file
    # of the database that is not a zone ("tzdata.zi"); OSError: a folder of it ("America",
    # "Etc": IsADirectoryError, a 500 before); TypeError: not a string.
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise ValueError(f"{name!r} is not an IANA timezone such as 'Europe/Paris'.") from None


def stored_zone(name: str | None) -> ZoneInfo:
    """The timezone of a stored recipient's `name`: UTC when it is empty, or not a timezone
    (logged), as the deployment's default (`DEFAULT_TIMEZONE`) would have given them."""
    if not name:
        return UTC
    try:
        return zone(name)
    except ValueError:
        logger.warning("A recipient's stored timezone %r is not one; UTC is used instead", name)
        return UTC
