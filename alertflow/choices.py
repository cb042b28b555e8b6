"""Vocabularies shared by every app: channels, priorities and roles."""

from django.db import models

from .channels import CHANNELS

# The channel names as model and serializer choices (`Channel.EMAIL`, `Channel.choices`), made
# from the registry in alertflow/channels.py so a new channel is listed everywhere at once.
Channel = models.TextChoices("Channel", [(c.name.upper(), (c.name, c.label)) for c in CHANNELS.values()])


class Priority(models.TextChoices):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


# A higher rank may do everything a lower one may.
ROLE_RANK = {Role.MEMBER: 0, Role.ADMIN: 1, Role.OWNER: 2}


def role_at_least(role: str, required: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(required)]
