import re

from rest_framework import serializers

from alertflow.choices import Channel
from tenants.serializers import normalize_locale

from .models import Template, TemplateVersion
from .services import DEFAULT_LOCALE, validate_content

CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class LocaleField(serializers.CharField):
    """A locale by the one rule for a locale, a recipient's and a tenant's too
    (tenants.serializers.normalize_locale), returned in canonical case (`fr-ca` -> `fr-CA`)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 35)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return normalize_locale(super().to_internal_value(data))


class StoredLocaleField(LocaleField):
    """A locale that names stored templates (`?locale=`, a render's) rather than a new one: a
    spelling the rule refuses is taken as given when one of the context's `templates` is stored
    under it, written before templates followed the rule; it is still read, given new versions,
    rendered and deleted. Only a new template's locale is held to the rule."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            if isinstance(data, str) and self.context["templates"].filter(locale=data).exists():
                return data
            raise


class ContentField(serializers.JSONField):
    """Per-channel content, checked and compiled by `validate_content`."""

    def to_internal_value(self, data):
        return validate_content(super().to_internal_value(data))


class TemplateCreateSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False, default="")
    locale = LocaleField(default=DEFAULT_LOCALE)
    channels = ContentField()

    def validate_code(self, value):
        if not CODE_PATTERN.match(value):
            raise serializers.ValidationError(
                "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit."
            )
        return value

    def validate(self, attrs):
        attrs.setdefault("name", attrs["code"])
        return attrs


class TemplateUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False)
    channels = ContentField(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give at least one of name, description, channels.")
        return attrs


class TemplateQuerySerializer(serializers.Serializer):
    """`?locale=&version=` of the read and write endpoints of one template (the context's
    `templates`: its code's)."""

    locale = StoredLocaleField(default=DEFAULT_LOCALE)
    version = serializers.IntegerField(min_value=1, required=False)


class TemplateSerializer(serializers.ModelSerializer):
    """An item of `GET /templates`: one (code, locale) with its latest version number."""

    class Meta:
        model = Template
        fields = ["code", "locale", "name", "description", "version", "created", "updated"]
        read_only_fields = fields


class TemplateDetailSerializer(serializers.ModelSerializer):
    """One version of a template, with the template's own fields beside it."""

    code = serializers.CharField(source="template.code")
    locale = serializers.CharField(source="template.locale")
    name = serializers.CharField(source="template.name")
    description = serializers.CharField(source="template.description")
    version = serializers.IntegerField(source="number")
    latest_version = serializers.IntegerField(source="template.version")
    created = serializers.DateTimeField(source="template.created")
    updated = serializers.DateTimeField(source="template.updated")
    version_created = serializers.DateTimeField(source="created")

    class Meta:
        model = TemplateVersion
        fields = [
            "code",
            "locale",
            "name",
            "description",
            "version",
            "latest_version",
            "channels",
            "created",
            "updated",
            "version_created",
            "created_by",
        ]
        read_only_fields = fields


class VersionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="number")

    class Meta:
        model = TemplateVersion
        fields = ["version", "channels", "created", "created_by"]
        read_only_fields = fields


class RenderRecipientSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=128, required=False, allow_blank=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    email = serializers.CharField(max_length=320, required=False, allow_blank=True, allow_null=True)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True, allow_null=True)
    locale = LocaleField(required=False, allow_null=True)
    data = serializers.DictField(required=False, default=dict)


class RenderSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    locale = StoredLocaleField(required=False)
    version = serializers.IntegerField(min_value=1, required=False)
    data = serializers.DictField(required=False, default=dict)
    recipient = RenderRecipientSerializer(required=False, default=dict)


class RenderResultSerializer(serializers.Serializer):
    code = serializers.CharField()
    channel = serializers.ChoiceField(choices=Channel.choices)
    locale = serializers.CharField(help_text="The locale used, after fallback.")
    version = serializers.IntegerField()
    rendered = serializers.DictField()
    missing = serializers.ListField(child=serializers.CharField(), help_text="Variables referenced but not supplied.")
