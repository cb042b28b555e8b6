"""The OpenAPI document is generated without an error or a warning from drf-spectacular: each one
means a part of the schema generated clients get is guessed (a type, a name), not declared."""

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator


def test_the_schema_is_generated_without_errors_or_warnings():
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        document = SchemaGenerator().get_schema(request=None, public=True)

    assert dict(GENERATOR_STATS._error_cache) == {}
    assert dict(GENERATOR_STATS._warn_cache) == {}
    assert document["paths"]


def test_a_suppressions_channel_is_not_named_after_the_kafka_service():
    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]

    channel = schemas["SuppressionRequest"]["properties"]["channel"]
    assert channel["$ref"] == "#/components/schemas/AddressedChannelEnum"
    assert schemas["KafkaNotificationRequest"]["properties"]["channels"]["items"]["$ref"] == channel["$ref"]
    assert sorted(schemas["AddressedChannelEnum"]["enum"]) == ["email", "push", "sms"]
