import json
import re

from django.utils import timezone
from rest_framework import serializers

from alertflow.choices import Channel, Priority, Role

from .models import ApiKey, Category, Membership

# The longest a message may wait to be sent (`expires_in`, seconds): 30 days.
MAX_EXPIRES_IN = 30 * 24 * 3600

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_RULE = "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit"

# BCP 47 as used for content (a recipient's locale, a tenant's default locale): language,
# optional script, optional region, optional variants (`en`, `fr-CA`, `zh-Hant-TW`, `es-419`,
# `de-CH-1996`). Extensions and private use are refused.
LOCALE_PATTERN = re.compile(
    r"^(?P<language>[A-Za-z]{2,3})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)$"
)


def validate_category_key(value: str) -> str:
    if not KEY_PATTERN.match(value):
        raise serializers.ValidationError(f"{value!r} is not a valid key ({KEY_RULE}).")
    return value


def normalize_locale(value: str) -> str:
    """Check the BCP 47 shape and return it in canonical case: `zh-hant-tw` -> `zh-Hant-TW`."""
    match = LOCALE_PATTERN.match(value)
    if not match:
        raise serializers.ValidationError(f"{value!r} is not a BCP 47 locale such as 'en', 'fr-CA' or 'zh-Hant-TW'.")
    parts = [match["language"].lower()]
    if match["script"]:
        parts.append(match["script"].title())
    if match["region"]:
        parts.append(match["region"].upper())
    parts.extend(variant.lower() for variant in match["variants"].split("-") if variant)
    return "-".join(parts)


class RegisterSerializer(serializers.Serializer):
    service_name = serializers.CharField(max_length=200)
    notification_types = serializers.ListField(
        child=serializers.CharField(max_length=64, validators=[validate_category_key]), max_length=200
    )

    def validate_notification_types(self, value):
        duplicates = sorted({key for key in value if value.count(key) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Listed more than once: {', '.join(duplicates)}.")
        return value


class RegisteredSerializer(serializers.Serializer):
    client_id = serializers.UUIDField()
    api_token = serializers.CharField()


class ChannelListField(serializers.ListField):
    child = serializers.ChoiceField(choices=Channel.choices)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        return list(dict.fromkeys(value))  # keep order, drop repeats


def default_channels(category: Category) -> list[str]:
    """The channels a send or a campaign of `category` goes on when it names none: the
    category's, checked by the rule the categories API writes them with. A row written before
    that rule, by hand or by an old admin may hold a channel this deployment does not know (or
    not a name at all); raises then a 400 naming `category` and how to go on, rather than
    drop the channel: the API refuses an unknown channel wherever it is given, and a send
    accepted without one of its category's channels would look sent on it."""
    try:
        return ChannelListField().run_validation(category.channels)
    except serializers.ValidationError:
        raise serializers.ValidationError(
            {
                "category": [
                    f"Category {category.key!r} has channels {json.dumps(category.channels)}, and the channels are "
                    f"{', '.join(Channel.values)}: name the send's channels, or fix the category's "
                    f"(PATCH /api/v1/categories/{category.key})."
                ]
            }
        ) from None


class CategorySerializer(serializers.ModelSerializer):
    key = serializers.CharField(max_length=64, validators=[validate_category_key])
    name = serializers.CharField(max_length=200, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    channels = ChannelListField(required=False)
    expires_in = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_EXPIRES_IN,
        help_text="Seconds this category's messages may wait to be sent; null: the deployment's default.",
    )

    class Meta:
        model = Category
        fields = ["key", "name", "priority", "critical", "channels", "expires_in", "created"]
        read_only_fields = ["created"]

    def validate_key(self, value):
        tenant = self.context["tenant"]
        taken = Category.objects.filter(tenant=tenant, key=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError(f"A category with key {value!r} already exists.")
        return value

    def create(self, validated_data):
        validated_data.setdefault("name", validated_data["key"])
        validated_data.setdefault("channels", [Channel.EMAIL.value])
        return super().create(validated_data)


class ApiKeySerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ADMIN)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "role", "prefix", "created", "last_used", "expires", "revoked"]
        read_only_fields = ["id", "prefix", "created", "last_used", "revoked"]

    def validate_expires(self, value):
        # A key born expired would be shown once and never work: refuse it while the owner is here.
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("This time is in the past: a key must expire later than now.")
        return value


class NewApiKeySerializer(ApiKeySerializer):
    """Only the response to creation carries the secret."""

    key = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class MembershipSerializer(serializers.ModelSerializer):
    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created"]
        read_only_fields = ["id", "email", "name", "created"]


class InvitedMemberSerializer(MembershipSerializer):
    invite_token = serializers.CharField(
        read_only=True, help_text="For the invited person, who sets their password with it (auth/accept-invite)."
    )

    class Meta(MembershipSerializer.Meta):
        fields = [*MembershipSerializer.Meta.fields, "invite_token"]


class InviteSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
    name = serializers.CharField(max_length=150, required=False, default="")


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class LoginSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    tenant = serializers.UUIDField(
        required=False, help_text="The tenant to log in to; needed when the password opens several."
    )


class LoginResultSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    role = serializers.ChoiceField(choices=Role.choices)
    tenant = serializers.UUIDField()


class AcceptInviteSerializer(serializers.Serializer):
    token = serializers.CharField()
    password = serializers.CharField(max_length=256, trim_whitespace=False)
