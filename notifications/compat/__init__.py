"""Adapters for the systems AlertFlow users come from (shared/seeds/), one module per seed.

Each maps its system's documented requests onto AlertFlow's own send (`services.accept`) and
models: no second pipeline. Where a seed shares a path with AlertFlow, `dialect_of` tells the
bodies apart by their fields (README, "Coming from ...").
"""

from alertflow.errors import ApiError

# Fields only the HNG distributed notification system (seed 002) sends to POST /api/v1/notifications
# (`user_id` is not one: the Kafka service, seed 003, sends it too).
HNG_MARKERS = frozenset({"notification_type", "template_code", "variables", "request_id"})
HNG_FIELDS = HNG_MARKERS | {"user_id", "priority", "metadata"}
# Fields only AlertFlow's own send uses.
ALERTFLOW_MARKERS = frozenset(
    {"recipient", "recipients", "topic", "category", "channels", "template", "template_version", "content"}
    | {"data", "send_at", "expires_in", "idempotency_key"}
)

ALERTFLOW = "alertflow"
HNG = "hng"

# Template bodies (POST /api/v1/templates, PUT /api/v1/templates/{code}): AlertFlow's own have
# `code`, `locale`, `channels`; HNG's (seed 002) have these.
HNG_TEMPLATE_MARKERS = frozenset({"template_code", "subject", "body", "language"})


def refuse_unknown_fields(body: dict, allowed, why: str = "unknown field") -> None:
    """A 400 naming every field of `body` outside `allowed`: a typo must not pass silently."""
    if not isinstance(body, dict):
        return  # not an object: the adapter's serializer refuses it with its own message
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "validation_error",
            f"{unknown[0]}: {why}.",
            {"fields": {field: ["Unknown field."] for field in unknown}},
        )


def dialect_of(body) -> str:
    """Which system's send a POST /api/v1/notifications body is.

    A body with any HNG-only field (`notification_type`, `template_code`, `variables`,
    `request_id`) is an HNG send, and then every field must be an HNG field. Anything else is
    AlertFlow's own send, validated as before. A body mixing both gets a 400 naming the first
    foreign field.
    """
    if not isinstance(body, dict) or not HNG_MARKERS.intersection(body):
        return ALERTFLOW
    mixed = ALERTFLOW_MARKERS.intersection(body)
    refuse_unknown_fields(body, HNG_FIELDS, "an AlertFlow field in an HNG request" if mixed else "unknown field")
    return HNG


def template_dialect_of(body) -> str:
    """Which system's template body this is: one with any of `template_code`, `subject`, `body`,
    `language` is HNG's (each adapter then refuses fields it does not know); anything else is
    AlertFlow's own, validated as before."""
    if isinstance(body, dict) and HNG_TEMPLATE_MARKERS.intersection(body):
        return HNG
    return ALERTFLOW
