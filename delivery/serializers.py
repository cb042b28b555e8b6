from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alertflow import outbound
from alertflow.errors import ApiError

from . import crypto, receipts
from .models import PROVIDER_CHANNELS, Provider, provider_class, provider_kinds


class ProviderSerializer(serializers.ModelSerializer):
    """A tenant's provider. Secrets are write-only: they go in `config`, come back as names in
    `secrets_set`. A PATCH of `config` merges into the stored one: a key left out keeps its value
    (secrets included), a key sent as null is cleared."""

    channel = serializers.ChoiceField(choices=PROVIDER_CHANNELS)
    kind = serializers.CharField(max_length=32)
    name = serializers.CharField(max_length=100)
    priority = serializers.IntegerField(default=0, min_value=0, max_value=1_000_000)
    config = serializers.DictField(required=False, default=dict)
    secrets_set = serializers.SerializerMethodField()
    receipt_url = serializers.SerializerMethodField(
        help_text="Where the provider posts delivery receipts (Twilio status callbacks, ESP tracking "
        "webhooks): point the ESP's webhook at it, with the basic auth of config.webhook_secret."
    )
    inbound_url = serializers.SerializerMethodField(
        help_text="Where the provider posts people's replies (Twilio's \"A message comes in\" webhook: "
        "STOP suppresses the number, START lifts it); empty for kinds that take none."
    )

    class Meta:
        model = Provider
        fields = [
            "id", "channel", "kind", "name", "priority", "enabled", "rate_limit", "config", "secrets_set",
            "receipt_url", "inbound_url", "created", "updated",
        ]  # fmt: skip
        extra_kwargs = {"rate_limit": {"min_value": 0.01, "max_value": 100_000}}
        read_only_fields = ["id", "created", "updated"]

    @extend_schema_field(
        serializers.ListField(
            child=serializers.CharField(),
            allow_null=True,
            help_text="Secret config fields that hold a value. Null when the stored secrets cannot be "
            "decrypted with the configured keys: PATCH them again.",
        )
    )
    def get_secrets_set(self, provider: Provider) -> list[str] | None:
        try:
            return provider.secrets_set()
        except crypto.SecretsUnreadable:
            return None

    def get_receipt_url(self, provider: Provider) -> str:
        request = self.context.get("request")
        return receipts.receipt_url(str(provider.pk), request=request)

    def get_inbound_url(self, provider: Provider) -> str:
        from .channels.base import Provider as ProviderKind  # loaded with the registry, when needed

        kind = provider_class(provider.channel, provider.kind)
        if kind is None or kind.read_inbound.__func__ is ProviderKind.read_inbound.__func__:
            return ""  # the kind takes no inbound messages
        return receipts.receipt_url(str(provider.pk), self.context.get("request"), "provider-inbound")

    def to_representation(self, provider: Provider) -> dict:
        body = super().to_representation(provider)
        # `config` never holds secrets (set_config splits them out); this guards rows written
        # before a field became secret.
        body["config"] = {key: value for key, value in provider.config.items() if key not in provider.secret_fields}
        return body

    def validate(self, attrs: dict) -> dict:
        instance: Provider | None = self.instance
        channel = attrs.get("channel", instance.channel if instance else None)
        kind = attrs.get("kind", instance.kind if instance else None)
        if instance is not None:
            # Another kind reads another config (and other secrets): that is another provider.
            for field, old in (("channel", instance.channel), ("kind", instance.kind)):
                if attrs.get(field, old) != old:
                    raise serializers.ValidationError({field: "Cannot be changed; create another provider instead."})

        # Only a change of config needs the kind's class: a provider whose kind left the
        # registry can still be renamed, reordered and switched off.
        cls = provider_class(channel, kind)
        if cls is None and (instance is None or "config" in attrs):
            raise serializers.ValidationError({"kind": self.unknown_kind(channel, kind)})

        name = attrs.get("name", instance.name if instance else None)
        taken = Provider.objects.filter(tenant=self.context["tenant"], channel=channel, name=name)
        if instance is not None:
            taken = taken.exclude(pk=instance.pk)
        if taken.exists():
            raise serializers.ValidationError({"name": f"A {channel} provider named {name!r} already exists."})

        if instance is None or "config" in attrs:
            attrs["config"] = self.validated_config(cls, instance, attrs.get("config", {}))
            check_destinations(cls, attrs["config"])
        return attrs

    @staticmethod
    def unknown_kind(channel: str, kind: str) -> str:
        elsewhere = [other for other, _label in PROVIDER_CHANNELS if other != channel and provider_class(other, kind)]
        known = ", ".join(provider_kinds(channel)) or "none"
        if elsewhere:
            return f"{kind!r} is a provider of the {elsewhere[0]} channel, not {channel} ({channel} kinds: {known})."
        return f"Unknown provider kind {kind!r} ({channel} kinds: {known})."

    @staticmethod
    def validated_config(cls, instance: Provider | None, patch: dict) -> dict:
        """The complete config to store: the stored one (if any) merged with `patch`, validated."""
        base = {}
        if instance is not None:
            try:
                base = instance.full_config()
            except crypto.SecretsUnreadable:
                # Those secrets are lost whatever we do: keep the rest, and validate_config names
                # any required secret the client must send again.
                base = dict(instance.config)
        merged = {key: value for key, value in {**base, **patch}.items() if value is not None}
        try:
            return cls.validate_config(merged)
        except (ValueError, TypeError) as exc:
            raise serializers.ValidationError({"config": config_problem(exc, merged, cls.secret_fields)}) from None

    def create(self, validated_data: dict) -> Provider:
        config = validated_data.pop("config")
        provider = Provider(**validated_data)
        provider.set_config(config)
        return self.save_unique(provider)

    def update(self, provider: Provider, validated_data: dict) -> Provider:
        config = validated_data.pop("config", None)
        for field, value in validated_data.items():
            setattr(provider, field, value)
        if config is not None:
            provider.set_config(config)
        return self.save_unique(provider)

    @staticmethod
    def save_unique(provider: Provider) -> Provider:
        try:
            with transaction.atomic():
                provider.save()
        except IntegrityError:  # a concurrent request took the name after validate() looked
            raise serializers.ValidationError(
                {"name": f"A {provider.channel} provider named {provider.name!r} already exists."}
            ) from None
        return provider


def check_destinations(cls, config: dict) -> None:
    """Refuse a config that names a host our workers may not connect to (alertflow.outbound).

    Checked again at every connection: this check gives the tenant its answer now, with the
    field, instead of a dead-lettered message later.
    """
    for field, host, port in cls.destinations(config):
        try:
            outbound.check_host(host, port)
        except outbound.AddressNotAllowed as exc:
            raise ApiError(400, "address_not_allowed", f"config.{field}: {exc}", {"field": f"config.{field}"}) from None


def config_problem(exc: Exception, config: dict, secret_fields: tuple[str, ...]) -> dict | list:
    """`ValueError("field: problem")` as DRF error detail `{field: [problem]}`, secrets masked.

    A validator that quotes a bad value must not echo a credential back in a response or a log.
    """
    message = crypto.mask_secrets(str(exc) or "invalid", crypto.RedactedConfig(config, secret_fields))
    field, sep, problem = message.partition(": ")
    if sep and field and field != "config" and " " not in field:
        return {field: [problem]}
    return [problem if field == "config" and sep else message]
