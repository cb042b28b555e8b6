"""A channel is one object (alertflow/channels.py): every layer reads it from the registry."""

from types import SimpleNamespace

import pytest

from alertflow.channels import CHANNELS, Destination
from alertflow.choices import Channel
from alertflow.queues import ALL_QUEUES, CHANNEL_QUEUES
from delivery.channels import BUILTIN, PROVIDERS, builtin_delivery
from delivery.channels.base import BuiltinDelivery
from delivery.models import PROVIDER_CHANNELS
from preferences.models import CHANNELS as PREFERENCE_CHANNELS
from templates_app.rendering import CHANNEL_FIELDS

ADA = SimpleNamespace(pk=7, email="ada@example.com", phone="+14155552671")
NOBODY = SimpleNamespace(pk=8, email="", phone="")
PHONE = SimpleNamespace(token="tok-1", platform="fcm")
BROWSER = SimpleNamespace(token='{"endpoint": "https://push.example/1"}', platform="webpush")


def test_every_layer_lists_the_registry_channels_in_its_order():
    names = list(CHANNELS)
    assert names == ["email", "sms", "push", "inapp"]
    assert Channel.values == names
    assert list(PREFERENCE_CHANNELS) == names
    assert list(CHANNEL_FIELDS) == names
    assert list(CHANNEL_QUEUES) == names
    assert set(CHANNEL_QUEUES.values()) <= set(ALL_QUEUES)


def test_contact_field_channels_address_by_that_field():
    assert CHANNELS["email"].address(ADA, has_device=False) == "ada@example.com"
    assert CHANNELS["sms"].address(ADA, has_device=False) == "+14155552671"
    assert CHANNELS["email"].address(NOBODY, has_device=True) is None
    assert CHANNELS["sms"].destinations(ADA, [PHONE]) == [Destination("+14155552671")]
    assert CHANNELS["sms"].destinations(NOBODY, []) == []


def test_push_reaches_each_device_with_its_platform():
    push = CHANNELS["push"]
    assert push.uses_devices
    assert push.address(ADA, has_device=False) is None
    assert push.address(ADA, has_device=True) == "devices"
    assert push.destinations(ADA, [PHONE, BROWSER]) == [
        Destination("tok-1", "fcm"),
        Destination('{"endpoint": "https://push.example/1"}', "webpush"),
    ]
    assert push.destinations(ADA, []) == []


def test_inapp_addresses_the_recipient_itself():
    inapp = CHANNELS["inapp"]
    assert inapp.address(NOBODY, has_device=False) == "inbox"
    assert inapp.destinations(NOBODY, []) == [Destination("8")]
    assert not inapp.needs_provider
    assert inapp.content_fields[:3] == ("title", "body", "action_url")


def test_every_channel_is_delivered_by_providers_or_by_alertflow_itself():
    for name, channel in CHANNELS.items():
        if channel.needs_provider:
            assert PROVIDERS.get(name), f"{name} needs a provider but none is registered"
            assert name not in BUILTIN
        else:
            assert isinstance(builtin_delivery(name), BuiltinDelivery)
            assert name not in PROVIDERS
    assert [name for name, _label in PROVIDER_CHANNELS] == ["email", "sms", "push"]


def test_a_channel_without_built_in_delivery_is_a_clear_lookup_error():
    with pytest.raises(LookupError, match="'email' has no built-in delivery"):
        builtin_delivery("email")
