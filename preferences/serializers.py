import json
import re

import phonenumbers
from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alertflow import input_limits, outbound
from alertflow.errors import ApiError
from tenants.models import Category
from tenants.serializers import normalize_locale, validate_category_key

from . import suppressions, zones
from .models import CHANNELS, DEFAULT_TIMEZONE, Device, Preference, Recipient, Suppression, Topic

EXTERNAL_ID_PATTERN = re.compile(r"^[^/\x00-\x1f\x7f]{1,128}$")
# The unique (tenant, platform, token) index is a B-tree, whose entries must stay under ~2,700
# bytes; real tokens are far shorter (FCM ~160 chars, APNs 64, a Web Push subscription ~400).
MAX_TOKEN_BYTES = 2000
APNS_TOKEN_PATTERN = re.compile(r"^[0-9A-Fa-f]{32,200}$")
MAX_SUBSCRIBERS_PER_CALL = 10_000


def check_endpoint(endpoint) -> None:
    """A Web Push endpoint must be a browser push service's: our workers POST to it.

    Browsers hand out https URLs (plain http only where private networks are allowed, for local
    push-service fakes). The host must pass the outbound guard, which checks it again at every
    send: a tenant may not make our workers POST into our own network (SSRF).
    """
    schemes = ("https://", "http://") if settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS else ("https://",)
    if not isinstance(endpoint, str) or not endpoint.startswith(schemes):
        raise serializers.ValidationError(
            {"token": "A webpush subscription needs an https `endpoint` URL (a browser push service)."}
        )
    try:
        outbound.check_url(endpoint)
    except outbound.AddressNotAllowed as exc:
        raise ApiError(400, "address_not_allowed", f"token.endpoint: {exc}", {"field": "token.endpoint"}) from None


def validate_external_id(value: str) -> str:
    if not isinstance(value, str) or not EXTERNAL_ID_PATTERN.match(value):
        raise serializers.ValidationError("A recipient id is 1-128 characters, without '/' or control characters.")
    return value


def normalize_phone(value: str) -> str:
    """Return the number in E.164 (`+14155552671`); spaces and punctuation are accepted on input."""
    try:
        number = phonenumbers.parse(value, None)  # no default region: the number must start with +
    except phonenumbers.NumberParseException:
        raise serializers.ValidationError(f"{value!r} is not a phone number in E.164 form (+14155552671).") from None
    if not phonenumbers.is_valid_number(number):
        raise serializers.ValidationError(f"{value!r} is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_timezone(value: str) -> str:
    """The API's and the admin's check of a timezone name (`preferences.zones`)."""
    try:
        zones.zone(value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from None
    return value


class RecipientSerializer(serializers.ModelSerializer):
    """A recipient. On PUT, the fields sent are set and the others kept; `null` clears one."""

    external_id = serializers.CharField(read_only=True)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, allow_null=True)
    phone = serializers.CharField(max_length=40, required=False, allow_blank=True, allow_null=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    locale = serializers.CharField(max_length=35, required=False, allow_blank=True, allow_null=True)
    timezone = serializers.CharField(max_length=64, required=False, allow_null=True)
    data = serializers.JSONField(required=False, allow_null=True)

    class Meta:
        model = Recipient
        fields = ["external_id", "email", "phone", "name", "locale", "timezone", "data", "created", "updated"]
        read_only_fields = ["created", "updated"]

    def validate_email(self, value):
        # Lower-cased whole: providers and people treat addresses case-insensitively, and an
        # exact match is what lets `?email=` and bounce handling use the index.
        return (value or "").strip().lower()

    def validate_phone(self, value):
        return normalize_phone(value) if value else ""

    def validate_name(self, value):
        return value or ""

    def validate_locale(self, value):
        return normalize_locale(value) if value else ""

    def validate_timezone(self, value):
        return validate_timezone(value) if value is not None else DEFAULT_TIMEZONE

    def validate_data(self, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class RecipientFilterSerializer(serializers.Serializer):
    """Query parameters of `GET /recipients`, normalised like the stored values."""

    email = serializers.CharField(required=False, max_length=254)
    phone = serializers.CharField(required=False, max_length=40)
    topic = serializers.CharField(required=False, max_length=64)

    def validate_email(self, value):
        return value.strip().lower()

    def validate_phone(self, value):
        return normalize_phone(value)


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "object", "description": "PushSubscription JSON"}]})
class TokenField(serializers.Field):
    """A string for FCM and APNs; the subscription object for Web Push (stored as JSON text)."""

    def to_internal_value(self, data):
        if not isinstance(data, str | dict):
            raise serializers.ValidationError("Must be a string, or an object for webpush.")
        return data

    def to_representation(self, value):
        return value


class DeviceSerializer(serializers.ModelSerializer):
    platform = serializers.ChoiceField(choices=Device.Platform.choices)
    token = TokenField()

    class Meta:
        model = Device
        fields = ["id", "platform", "token", "active", "reason", "last_seen", "created"]
        read_only_fields = ["id", "active", "reason", "last_seen", "created"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.platform == Device.Platform.WEBPUSH:
            data["token"] = json.loads(instance.token)  # hand back the object that was posted
        return data

    def validate(self, attrs):
        platform, token = attrs["platform"], attrs["token"]
        if platform == Device.Platform.WEBPUSH:
            token = self.webpush_token(token)
        elif not isinstance(token, str) or not token.strip():
            raise serializers.ValidationError({"token": f"A {platform} token is a non-empty string."})
        elif platform == Device.Platform.APNS:
            if not APNS_TOKEN_PATTERN.match(token.strip()):
                raise serializers.ValidationError({"token": "An APNs device token is a hexadecimal string."})
            token = token.strip().lower()  # hex case varies between client libraries
        else:
            token = token.strip()
            if any(char.isspace() for char in token):
                raise serializers.ValidationError({"token": "A token has no whitespace."})
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise serializers.ValidationError({"token": f"A token is at most {MAX_TOKEN_BYTES} bytes."})
        attrs["token"] = token
        return attrs

    @staticmethod
    def webpush_token(token) -> str:
        """Canonical JSON of a PushSubscription (https://www.w3.org/TR/push-api/#pushsubscription-interface)."""
        if isinstance(token, str):
            try:
                token = input_limits.loads(token, field="token")
            except ValueError:
                token = None
        if not isinstance(token, dict):
            raise serializers.ValidationError({"token": "A webpush token is the subscription object (JSON)."})
        endpoint, keys = token.get("endpoint"), token.get("keys")
        if not isinstance(keys, dict) or not all(isinstance(keys.get(k), str) and keys[k] for k in ("p256dh", "auth")):
            raise serializers.ValidationError({"token": "A webpush subscription needs `keys.p256dh` and `keys.auth`."})
        check_endpoint(endpoint)
        subscription = {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}
        if token.get("expirationTime") is not None:
            subscription["expirationTime"] = token["expirationTime"]
        return json.dumps(subscription, sort_keys=True, separators=(",", ":"))


def check_channels(switches: dict) -> dict:
    unknown = sorted(set(switches) - set(CHANNELS))
    if unknown:
        raise serializers.ValidationError(
            f"Unknown channel(s): {', '.join(unknown)}. Channels are {', '.join(CHANNELS)}.", code="unknown_channel"
        )
    return switches


class QuietHoursSerializer(serializers.Serializer):
    """A daily window in the recipient's timezone; `22:00`-`07:00` crosses midnight."""

    start = serializers.TimeField(format="%H:%M", input_formats=["%H:%M"])
    end = serializers.TimeField(format="%H:%M", input_formats=["%H:%M"])

    def validate(self, attrs):
        if attrs["start"] == attrs["end"]:
            raise serializers.ValidationError("`start` and `end` are equal; send `null` for no quiet hours.")
        return attrs


class PreferencesSerializer(serializers.Serializer):
    """The whole preference document; what is left out takes its default (PUT replaces).

    Context: `tenant`, and `recipient` when the document replaces that recipient's.
    """

    channels = serializers.DictField(child=serializers.BooleanField(), required=False, default=dict)
    categories = serializers.DictField(
        child=serializers.DictField(child=serializers.BooleanField()), required=False, default=dict
    )
    quiet_hours = QuietHoursSerializer(required=False, allow_null=True, default=None)

    def validate_channels(self, value):
        return check_channels(value)

    def validate_categories(self, value):
        for key, switches in value.items():
            try:
                check_channels(switches)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({key: exc.detail}) from None
        unknown = set(value) - set(
            Category.objects.filter(tenant=self.context["tenant"], key__in=list(value)).values_list("key", flat=True)
        )
        if unknown:
            unknown -= self.kept_categories()
        if unknown:
            raise serializers.ValidationError(
                f"Unknown category key(s): {', '.join(sorted(unknown))}.", code="unknown_category"
            )
        return value

    def kept_categories(self) -> set[str]:
        """The category keys the recipient's stored document holds already. A category deleted
        after the recipient set it stays in their document (an unsubscribe from it must outlive
        the category being recreated), so a document sent back as it was read must not fail on
        it: only a key it does not hold yet must name a category."""
        recipient = self.context.get("recipient")
        if recipient is None:
            return set()
        stored = Preference.objects.filter(recipient_id=recipient.pk).values_list("categories", flat=True).first()
        return set(stored or ())

    def validate(self, attrs):
        # A typo such as "chanels" would otherwise silently reset the channels to their defaults.
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(dict.fromkeys(unknown, "Unknown field."))
        return attrs


class TopicSerializer(serializers.ModelSerializer):
    key = serializers.CharField(max_length=64, validators=[validate_category_key])
    name = serializers.CharField(max_length=200, required=False)

    class Meta:
        model = Topic
        fields = ["key", "name", "created"]
        read_only_fields = ["created"]

    def validate_key(self, value):
        if Topic.objects.filter(tenant=self.context["tenant"], key=value).exists():
            raise serializers.ValidationError(f"A topic with key {value!r} already exists.")
        return value

    def create(self, validated_data):
        validated_data.setdefault("name", validated_data["key"])
        return super().create(validated_data)


class SubscribersSerializer(serializers.Serializer):
    add = serializers.ListField(
        child=serializers.CharField(max_length=128, trim_whitespace=False),
        required=False,
        default=list,
        max_length=MAX_SUBSCRIBERS_PER_CALL,
    )
    remove = serializers.ListField(
        child=serializers.CharField(max_length=128, trim_whitespace=False),
        required=False,
        default=list,
        max_length=MAX_SUBSCRIBERS_PER_CALL,
    )

    def to_internal_value(self, data):
        # Refuse an oversized call before validating 10,000+ strings one by one.
        if isinstance(data, dict):
            total = sum(len(data.get(k) or []) for k in ("add", "remove") if isinstance(data.get(k), list))
            if total > MAX_SUBSCRIBERS_PER_CALL:
                raise serializers.ValidationError(
                    {"non_field_errors": [f"At most {MAX_SUBSCRIBERS_PER_CALL} ids per call (got {total})."]}
                )
        return super().to_internal_value(data)

    def validate(self, attrs):
        add, remove = list(dict.fromkeys(attrs["add"])), list(dict.fromkeys(attrs["remove"]))
        both = sorted(set(add) & set(remove))
        if both:
            raise serializers.ValidationError(f"Both added and removed: {', '.join(both[:20])}.")
        return {"add": add, "remove": remove}


class SubscribersResultSerializer(serializers.Serializer):
    added = serializers.IntegerField(help_text="Recipients newly subscribed")
    removed = serializers.IntegerField(help_text="Recipients unsubscribed")
    subscribers = serializers.IntegerField(help_text="Subscribers of the topic now")


# --- Suppressions -------------------------------------------------------------------------------

MAX_SUPPRESSIONS_PER_IMPORT = 10_000
# Reasons a tenant may give; the others come from providers' answers. Any is allowed: a tenant
# moving from another platform brings its bounces and complaints with their reason.
SUPPRESSION_REASONS = [r.value for r in Suppression.Reason]


def suppression_category(tenant, key):
    """The tenant's category named `key`, or None for no key (a suppression of every category)."""
    if key in (None, ""):
        return None
    category = Category.objects.filter(tenant=tenant, key=key).first()
    if category is None:
        raise ApiError(400, "unknown_category", f"No category with key {key!r}.", {"category": key})
    return category


def suppression_address(channel: str, address) -> str:
    try:
        return suppressions.normalise(channel, address)
    except suppressions.InvalidAddress as exc:
        raise serializers.ValidationError({"address": str(exc)}) from None


class SuppressionSerializer(serializers.ModelSerializer):
    """One suppression. `category` is a category key; null (the default) suppresses the address
    for every category, critical ones included."""

    channel = serializers.ChoiceField(choices=list(suppressions.ADDRESSED))
    address = serializers.CharField(max_length=2000, help_text="Email, E.164 phone number or push token.")
    category = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)
    reason = serializers.ChoiceField(choices=SUPPRESSION_REASONS, default=Suppression.Reason.MANUAL)

    class Meta:
        model = Suppression
        fields = ["id", "channel", "address", "category", "reason", "created"]
        read_only_fields = ["id", "created"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["category"] = instance.category.key if instance.category_id else None
        return data

    def validate(self, attrs):
        attrs["address"] = suppression_address(attrs["channel"], attrs["address"])
        attrs["category"] = suppression_category(self.context["tenant"], attrs.get("category"))
        return attrs


class SuppressionImportSerializer(serializers.Serializer):
    """Many addresses of one channel at once. Every address is checked before anything is
    written; one that is not an address of the channel refuses the whole import."""

    channel = serializers.ChoiceField(choices=list(suppressions.ADDRESSED))
    addresses = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=MAX_SUPPRESSIONS_PER_IMPORT
    )
    category = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)
    reason = serializers.ChoiceField(choices=SUPPRESSION_REASONS, default=Suppression.Reason.IMPORT)

    def validate(self, attrs):
        normalised = []
        for index, address in enumerate(attrs["addresses"]):
            try:
                normalised.append(suppressions.normalise(attrs["channel"], address))
            except suppressions.InvalidAddress as exc:
                raise ApiError(
                    400, "invalid_address", f"addresses[{index}]: {exc}", {"index": index, "field": "addresses"}
                ) from None
        attrs["addresses"] = normalised
        attrs["category"] = suppression_category(self.context["tenant"], attrs.get("category"))
        return attrs


class SuppressionImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Addresses newly suppressed.")
    existing = serializers.IntegerField(help_text="Addresses already suppressed the same way (and repeats).")


class SuppressionFilterSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=list(suppressions.ADDRESSED), required=False)
    address = serializers.CharField(max_length=2000, required=False)
    category = serializers.CharField(max_length=64, required=False)
    reason = serializers.ChoiceField(choices=SUPPRESSION_REASONS, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
