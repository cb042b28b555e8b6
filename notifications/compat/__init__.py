"""Adapters for the systems AlertFlow users come from (shared/seeds/), one module per seed.

Each maps its system's documented requests onto AlertFlow's own send (`services.accept`),
templates and preferences: no second pipeline. Where seeds share a path with AlertFlow or with
each other, the functions here tell the bodies apart by their fields (README, "Coming from
another system"); `shared.py` holds the views of those shared paths.
"""

from django.core.validators import RegexValidator
from rest_framework import serializers

from alertflow.errors import ApiError
from templates_app.serializers import CODE_PATTERN

from .. import services
from ..serializers import SendSerializer

ALERTFLOW = "alertflow"
HNG = "hng"
KAFKA = "kafka"

# POST /api/v1/notifications. Fields only the HNG distributed notification system (seed 002)
# sends (`user_id` is not one: the Kafka service, seed 003, sends it too).
HNG_MARKERS = frozenset({"notification_type", "template_code", "variables", "request_id"})
HNG_FIELDS = HNG_MARKERS | {"user_id", "priority", "metadata"}
# The field only the Kafka service sends (its `channels` and `data` are AlertFlow's too).
KAFKA_MARKERS = frozenset({"template_id"})
KAFKA_FIELDS = KAFKA_MARKERS | {"user_id", "channels", "data"}
# Fields only AlertFlow's own send uses.
ALERTFLOW_MARKERS = frozenset(
    {"recipient", "recipients", "topic", "category", "channels", "template", "template_version", "content"}
    | {"data", "send_at", "expires_in", "idempotency_key"}
)

# Template bodies (POST /api/v1/templates, PUT /api/v1/templates/{code}): AlertFlow's own have
# `code`, `locale`, `channels`. Kafka's have `template_id` (and `subject`, `body`, like HNG's).
HNG_TEMPLATE_MARKERS = frozenset({"template_code", "subject", "body", "language"})
KAFKA_TEMPLATE_MARKERS = frozenset({"template_id"})

# PUT /api/v1/users/{id}/preferences: HNG's `{"email": true, "push": true}`, Kafka's
# `{"channels": {...}}`.
HNG_PREFERENCE_FIELDS = frozenset({"email", "push"})
KAFKA_PREFERENCE_MARKERS = frozenset({"channels", "user_id"})


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


def accept(tenant, payload: dict):
    """AlertFlow's own send of `payload` (a body of its API, mapped from a seed's), validated as
    its API validates it: the one way a seed's send enters the pipeline. Returns `services.accept`'s
    result; raises the 400 of AlertFlow's validation."""
    send = SendSerializer(data=payload, context={"tenant": tenant})
    send.is_valid(raise_exception=True)
    return services.accept(tenant, send.validated_data)


def validated(serializer_class, body, allowed=None) -> dict:
    """`body` checked by a seed's serializer, after refusing fields outside `allowed` (default:
    the serializer's own); raises the 400 naming the field."""
    serializer = serializer_class(data=body)
    refuse_unknown_fields(body, serializer.fields if allowed is None else allowed)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def dialect_of(body) -> str:
    """Which system's send a POST /api/v1/notifications body is.

    A body with any HNG-only field (`notification_type`, `template_code`, `variables`,
    `request_id`) is an HNG send, and then every field must be an HNG field. Else a body with
    `template_id` is a Kafka send, and then every field must be a Kafka field (`user_id`,
    `template_id`, `channels`, `data`). Anything else is AlertFlow's own send, validated as
    before. A body mixing systems gets a 400 naming the foreign fields.
    """
    if not isinstance(body, dict):
        return ALERTFLOW
    if HNG_MARKERS.intersection(body):
        mixed = (ALERTFLOW_MARKERS | KAFKA_MARKERS).intersection(body)
        refuse_unknown_fields(
            body, HNG_FIELDS, "a field of another system in an HNG request" if mixed else "unknown field"
        )
        return HNG
    if KAFKA_MARKERS.intersection(body):
        mixed = (ALERTFLOW_MARKERS - KAFKA_FIELDS).intersection(body)
        refuse_unknown_fields(body, KAFKA_FIELDS, "an AlertFlow field in a Kafka request" if mixed else "unknown field")
        return KAFKA
    return ALERTFLOW


def template_dialect_of(body) -> str:
    """Which system's template body this is: one with `template_id` is the Kafka service's, else
    one with any of `template_code`, `subject`, `body`, `language` is HNG's (each adapter then
    refuses fields it does not know, so a mixed body is a 400); anything else is AlertFlow's own,
    validated as before."""
    if not isinstance(body, dict):
        return ALERTFLOW
    if KAFKA_TEMPLATE_MARKERS.intersection(body):
        return KAFKA
    if HNG_TEMPLATE_MARKERS.intersection(body):
        return HNG
    return ALERTFLOW


def preference_dialect_of(body) -> str:
    """Which system's preference body a PUT /api/v1/users/{id}/preferences is: one with
    `channels` or `user_id` is the Kafka service's, anything else HNG's (each refuses fields it
    does not know, so `{"channels": ..., "email": true}` is a 400 naming `email`)."""
    if isinstance(body, dict) and KAFKA_PREFERENCE_MARKERS.intersection(body):
        return KAFKA
    return HNG


def template_code_field(**kwargs) -> serializers.CharField:
    """A seed's template code, held to AlertFlow's rule for template codes."""
    return serializers.CharField(
        max_length=64,
        validators=[
            RegexValidator(CODE_PATTERN, "1-64 letters, digits, '_', '.', '-', starting with a letter or digit.")
        ],
        **kwargs,
    )
