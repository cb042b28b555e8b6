import base64
import json
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from delivery.channels import provider_class
from delivery.channels.base import Code, Fault, Outgoing, ProviderError
from delivery.channels.push import APNS_TOKEN_SECONDS, apns_provider_token
from tests.fakes.apns import KEY_ID, TEAM_ID, TOPIC

DEVICE = "a" * 64
CONTENT = {
    "title": "Login alert",
    "body": "New sign-in",
    "data": {"screen": "security"},
    "image": "https://x.test/i.png",
}


def apns(fake, **config):
    return provider_class("push", "apns")(fake.config(**config))


def outgoing(message_id=None, to=DEVICE) -> Outgoing:
    return Outgoing(message_id=message_id or str(uuid.uuid4()), to=to, content=CONTENT, platform="apns")


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_apns_posts_to_the_device_with_an_es256_token_and_answers_the_apns_id(apns_fake):
    message_id = str(uuid.uuid4())
    sent = apns(apns_fake).send(outgoing(message_id))

    [request] = apns_fake.requests
    assert request.path == f"/3/device/{DEVICE}"
    assert request.headers["apns-topic"] == TOPIC
    assert request.headers["apns-push-type"] == "alert"
    assert request.json() == {
        "aps": {"alert": {"title": "Login alert", "body": "New sign-in"}, "mutable-content": 1},
        "screen": "security",
        "image": "https://x.test/i.png",
    }
    assert sent.provider_message_id == message_id  # our id, sent as apns-id and echoed back

    # The provider token is a JWT Apple can verify with the key's public half (RFC 7518 3.4).
    jwt = request.headers["authorization"].removeprefix("bearer ")
    header, claims, signature = jwt.split(".")
    assert json.loads(b64decode(header)) == {"alg": "ES256", "kid": KEY_ID}
    assert json.loads(b64decode(claims))["iss"] == TEAM_ID
    raw = b64decode(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    apns_fake.private_key.public_key().verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))


def test_apns_batch_reuses_one_connection_and_one_token(apns_fake):
    with apns(apns_fake) as provider:
        for _ in range(3):
            provider.send(outgoing())
    assert apns_fake.connections == 1
    assert len({r.headers["authorization"] for r in apns_fake.requests}) == 1


def test_apns_token_is_reused_for_50_minutes_then_renewed(apns_fake):
    args = (TEAM_ID, KEY_ID, apns_fake.private_key_pem)
    first = apns_provider_token(*args, now=1_000_000.0)
    assert apns_provider_token(*args, now=1_000_000.0 + APNS_TOKEN_SECONDS - 1) == first
    assert apns_provider_token(*args, now=1_000_000.0 + APNS_TOKEN_SECONDS) != first


@pytest.mark.parametrize(("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken")])
def test_apns_dead_token_is_permanent_and_deactivates_the_device(apns_fake, status, reason):
    apns_fake.fail_next(status, reason)
    with pytest.raises(ProviderError) as caught:
        apns(apns_fake).send(outgoing())
    assert (caught.value.permanent, caught.value.deactivate_device, caught.value.code) == (
        True,
        True,
        Code.UNREGISTERED,
    )
    assert reason in str(caught.value)


def test_apns_other_4xx_is_permanent_and_keeps_the_device(apns_fake):
    apns_fake.fail_next(400, "PayloadEmpty")
    with pytest.raises(ProviderError) as caught:
        apns(apns_fake).send(outgoing())
    assert (caught.value.permanent, caught.value.deactivate_device, caught.value.fault) == (True, False, Fault.CONTENT)


@pytest.mark.parametrize("reason", ["TopicDisallowed", "BadTopic", "MissingTopic"])
def test_apns_wrong_topic_is_a_configuration_fault_of_the_provider(apns_fake, reason):
    apns_fake.fail_next(400, reason)
    with pytest.raises(ProviderError) as caught:
        apns(apns_fake).send(outgoing())
    assert (caught.value.code, caught.value.fault, caught.value.deactivate_device) == (
        Code.CONFIGURATION,
        Fault.PROVIDER,
        False,
    )


@pytest.mark.parametrize(("status", "reason", "code"), [(429, "TooManyRequests", Code.RATE_LIMITED),
                                                         (503, "ServiceUnavailable", Code.UNAVAILABLE),
                                                         (500, "InternalServerError", Code.UNAVAILABLE)])  # fmt: skip
def test_apns_throttling_and_server_errors_are_transient(apns_fake, status, reason, code):
    apns_fake.fail_next(status, reason, headers={"Retry-After": "5"})
    with pytest.raises(ProviderError) as caught:
        apns(apns_fake).send(outgoing())
    assert (caught.value.transient, caught.value.code, caught.value.retry_after) == (True, code, 5.0)
    assert not caught.value.deactivate_device


def test_apns_expired_provider_token_is_transient_and_renewed(apns_fake):
    apns_fake.fail_next(403, "ExpiredProviderToken")
    provider = apns(apns_fake)
    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing())
    assert caught.value.transient
    # The cached token was dropped: the next one is signed afresh (a cached one keeps its own iat).
    fresh = apns_provider_token(TEAM_ID, KEY_ID, apns_fake.private_key_pem, now=12345.0)
    assert json.loads(b64decode(fresh.split(".")[1]))["iat"] == 12345


def test_apns_invalid_provider_token_is_a_permanent_auth_error(apns_fake):
    apns_fake.fail_next(403, "InvalidProviderToken")
    with pytest.raises(ProviderError) as caught:
        apns(apns_fake).send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.deactivate_device) == (True, Code.AUTH, False)


def test_apns_unreachable_is_transient(apns_fake):
    provider = apns(apns_fake)
    apns_fake.stop()
    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)


def test_apns_sandbox_and_production_hosts():
    key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    config = {"team_id": TEAM_ID, "key_id": KEY_ID, "private_key": pem, "topic": TOPIC}
    cls = provider_class("push", "apns")
    assert cls(config).base_url == "https://api.push.apple.com"
    assert cls({**config, "use_sandbox": True}).base_url == "https://api.sandbox.push.apple.com"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"team_id": "short"}, "team_id: must be the 10-character identifier"),
        ({"key_id": ""}, "key_id: required"),
        ({"private_key": "not a key"}, "private_key: not a PEM private key"),
        ({"topic": ""}, "topic: required"),
        ({"use_sandbox": "maybe"}, "use_sandbox: must be true or false"),
    ],
)
def test_apns_config_errors_name_the_field(apns_fake, overrides, error):
    with pytest.raises(ValueError, match="^" + error):
        provider_class("push", "apns").validate_config(apns_fake.config(**overrides))


def test_apns_config_refuses_a_key_that_is_not_p256(apns_fake):
    from cryptography.hazmat.primitives import serialization

    rsa_like = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match=r"^private_key: must be the P-256"):
        provider_class("push", "apns").validate_config(apns_fake.config(private_key=rsa_like.decode()))
