import json

import http_ece
import pytest

from delivery.channels import provider_class
from delivery.channels.base import Code, Outgoing, ProviderError
from tests.fakes.webpush import vapid_keypair

CONTENT = {"title": "Login alert", "body": "New sign-in", "data": {"url": "/security"}}
SUBJECT = "mailto:ops@example.com"


@pytest.fixture
def vapid():
    return vapid_keypair()


def webpush(vapid, **config):
    return provider_class("push", "webpush")({"vapid_private_key": vapid[0], "vapid_subject": SUBJECT, **config})


def outgoing(fake, to=None) -> Outgoing:
    return Outgoing(message_id="msg-1", to=to or fake.subscription(), content=CONTENT, platform="webpush")


def test_webpush_sends_an_encrypted_payload_the_browser_can_read(webpush_fake, vapid):
    sent = webpush(vapid).send(outgoing(webpush_fake))

    [request] = webpush_fake.requests
    assert request.path == "/push/sub1"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "86400"
    assert request.headers["authorization"].startswith("vapid t=")
    # Decrypt as the browser would, with its private key and auth secret (RFC 8291).
    clear = http_ece.decrypt(
        request.body, private_key=webpush_fake.browser_key, auth_secret=webpush_fake.auth_secret, version="aes128gcm"
    )
    assert json.loads(clear) == {**{k: CONTENT[k] for k in ("title", "body", "data")}, "message_id": "msg-1"}
    assert sent.provider_message_id.startswith(f"{webpush_fake.url}/message/")


@pytest.mark.parametrize("status", [404, 410])
def test_webpush_expired_subscription_is_permanent_and_deactivates_the_device(webpush_fake, vapid, status):
    webpush_fake.fail_next(status)
    with pytest.raises(ProviderError) as caught:
        webpush(vapid).send(outgoing(webpush_fake))
    assert (caught.value.permanent, caught.value.deactivate_device, caught.value.code) == (
        True,
        True,
        Code.UNREGISTERED,
    )


@pytest.mark.parametrize(
    ("status", "code"), [(429, Code.RATE_LIMITED), (500, Code.UNAVAILABLE), (503, Code.UNAVAILABLE)]
)
def test_webpush_throttling_and_server_errors_are_transient(webpush_fake, vapid, status, code):
    webpush_fake.fail_next(status, headers={"Retry-After": "12"})
    with pytest.raises(ProviderError) as caught:
        webpush(vapid).send(outgoing(webpush_fake))
    assert (caught.value.transient, caught.value.code, caught.value.retry_after) == (True, code, 12.0)


def test_webpush_other_4xx_is_permanent_and_keeps_the_device(webpush_fake, vapid):
    webpush_fake.fail_next(413)
    with pytest.raises(ProviderError) as caught:
        webpush(vapid).send(outgoing(webpush_fake))
    assert (caught.value.permanent, caught.value.deactivate_device) == (True, False)


def test_webpush_unreachable_is_transient(webpush_fake, vapid):
    subscription = webpush_fake.subscription()
    webpush_fake.stop()
    with pytest.raises(ProviderError) as caught:
        webpush(vapid).send(outgoing(webpush_fake, to=subscription))
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)


@pytest.mark.parametrize("to", ["not json", '{"endpoint": "https://push.test/x"}', '{"endpoint": 3, "keys": {}}'])
def test_webpush_malformed_subscription_deactivates_the_device(webpush_fake, vapid, to):
    with pytest.raises(ProviderError) as caught:
        webpush(vapid).send(outgoing(webpush_fake, to=to))
    assert (caught.value.permanent, caught.value.deactivate_device, caught.value.code) == (
        True,
        True,
        Code.INVALID_ADDRESS,
    )
    assert webpush_fake.requests == []


def test_webpush_batch_reuses_one_connection(webpush_fake, vapid):
    with webpush(vapid) as provider:
        for _ in range(3):
            provider.send(outgoing(webpush_fake))
    assert webpush_fake.connections == 1


def test_webpush_key_that_names_a_file_is_not_read_as_a_file(tmp_path):
    # pywebpush would read a string naming an existing file as a key file; tenants supply this string.
    path = tmp_path / "key.pem"
    path.write_text("whatever")
    with pytest.raises(ValueError, match=r"^vapid_private_key: not a VAPID private key"):
        provider_class("push", "webpush").validate_config({"vapid_private_key": str(path), "vapid_subject": SUBJECT})


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"vapid_private_key": ""}, "vapid_private_key: required"),
        ({"vapid_subject": "ops@example.com"}, "vapid_subject: must be a mailto: or https: URI"),
        ({"ttl": -1}, "ttl: must be an integer from 0"),
    ],
)
def test_webpush_config_errors_name_the_field(vapid, overrides, error):
    config = {"vapid_private_key": vapid[0], "vapid_subject": SUBJECT, **overrides}
    with pytest.raises(ValueError, match="^" + error):
        provider_class("push", "webpush").validate_config(config)


def test_console_push_appends_json_lines(var_dir):
    sent = provider_class("push", "console")({}).send(
        Outgoing(message_id="m-7", to="tok", content=CONTENT, platform="apns")
    )
    [line] = (var_dir / "sinks" / "push.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (record["id"], record["platform"], record["to"], record["title"]) == (
        sent.provider_message_id,
        "apns",
        "tok",
        "Login alert",
    )
