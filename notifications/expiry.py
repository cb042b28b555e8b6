"""How long a send's messages may wait before they expire (DESIGN section 3).

Its own module because both accepting a send (`services`) and triggering a campaign run
(`campaigns`) need it, and `services` already calls into `campaigns` during fan-out.
"""

from django.conf import settings

from alertflow.choices import Priority
from tenants.models import Category


def expires_in_for(category: Category | None, priority: str, requested: int | None = None) -> int:
    """Seconds a send's messages may wait: the request's, else its category's, else the
    deployment's default for its priority (a critical category counts as `critical`)."""
    if requested:
        return requested
    if category is not None and category.expires_in:
        return category.expires_in
    key = Priority.CRITICAL if category is not None and category.critical else priority
    return settings.ALERTFLOW_EXPIRES_IN[key]
