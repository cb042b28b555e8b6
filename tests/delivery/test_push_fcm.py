import pytest

from delivery.channels import provider_class
from delivery.channels.base import Code, Outgoing, ProviderError
from tests.fakes.fcm import PROJECT

# Filtered in delivery/channels/push.py for production; pytest re-enables DeprecationWarnings per test.
pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")

TOKEN = "fcm-token-abc:APA91b"
CONTENT = {"title": "Login alert", "body": "New sign-in from Paris", "data": {"ip": "203.0.113.7", "n": 2}}


def fcm(fake, **config):
    return provider_class("push", "fcm")({"service_account": fake.service_account, **config})


def outgoing(to=TOKEN) -> Outgoing:
    return Outgoing(message_id="msg-1", to=to, content=CONTENT, platform="fcm")


def test_fcm_sends_through_firebase_admin_and_answers_the_message_name(fcm_fake):
    sent = fcm(fcm_fake).send(outgoing())

    [request] = fcm_fake.sent
    assert request.path == f"/v1/projects/{PROJECT}/messages:send"
    assert request.headers["authorization"] == f"Bearer {fcm_fake.tokens_issued[0]}"
    assert request.json()["message"] == {
        "token": TOKEN,
        "notification": {"title": "Login alert", "body": "New sign-in from Paris"},
        "data": {"ip": "203.0.113.7", "n": "2"},  # FCM data values are strings
    }
    assert sent.provider_message_id.startswith(f"projects/{PROJECT}/messages/")


def test_fcm_signs_in_once_with_the_service_account_and_reuses_the_token(fcm_fake):
    provider = fcm(fcm_fake)
    provider.send(outgoing())
    fcm(fcm_fake).send(outgoing())  # another batch, same config: same firebase app
    assert len(fcm_fake.tokens_issued) == 1
    assert len(fcm_fake.sent) == 2


def test_fcm_service_account_may_be_given_as_a_json_string(fcm_fake):
    import json

    config = provider_class("push", "fcm").validate_config({"service_account": json.dumps(fcm_fake.service_account)})
    assert config["service_account"]["project_id"] == PROJECT


@pytest.mark.parametrize(
    ("status", "error_code"),
    [(404, "UNREGISTERED"), (403, "SENDER_ID_MISMATCH")],
)
def test_fcm_dead_token_is_permanent_and_deactivates_the_device(fcm_fake, status, error_code):
    fcm_fake.fail_send(status, error_code, "Requested entity was not found.")
    with pytest.raises(ProviderError) as caught:
        fcm(fcm_fake).send(outgoing())
    assert (caught.value.permanent, caught.value.deactivate_device) == (True, True)
    assert caught.value.code == Code.UNREGISTERED


def test_fcm_invalid_token_argument_deactivates_the_device(fcm_fake):
    violation = {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}  # fmt: skip
    fcm_fake.fail_send(
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
        extra_details=[violation],
    )
    with pytest.raises(ProviderError) as caught:
        fcm(fcm_fake).send(outgoing(to="garbage"))
    assert (caught.value.permanent, caught.value.deactivate_device, caught.value.code) == (
        True,
        True,
        Code.INVALID_ADDRESS,
    )


def test_fcm_invalid_payload_argument_is_permanent_but_keeps_the_device(fcm_fake):
    fcm_fake.fail_send(400, "INVALID_ARGUMENT", 'Invalid JSON payload received. Unknown name "colour"')
    with pytest.raises(ProviderError) as caught:
        fcm(fcm_fake).send(outgoing())
    assert (caught.value.permanent, caught.value.deactivate_device, caught.value.code) == (
        True,
        False,
        Code.BAD_REQUEST,
    )


def test_fcm_quota_exceeded_is_transient_with_retry_after(fcm_fake):
    fcm_fake.fail_send(429, "QUOTA_EXCEEDED", "Quota exceeded", headers={"Retry-After": "60"})
    with pytest.raises(ProviderError) as caught:
        fcm(fcm_fake).send(outgoing())
    assert (caught.value.transient, caught.value.code, caught.value.retry_after) == (True, Code.RATE_LIMITED, 60.0)
    assert not caught.value.deactivate_device


@pytest.mark.parametrize(("status", "error_code"), [(503, "UNAVAILABLE"), (500, "INTERNAL")])
def test_fcm_server_errors_are_transient_and_not_retried_inside_the_sdk(fcm_fake, status, error_code):
    fcm_fake.fail_send(status, error_code, "The service is currently unavailable.", times=5)
    with pytest.raises(ProviderError) as caught:
        fcm(fcm_fake).send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)
    # One request: the SDK's own retry loop (4 more, with backoff) is off; the pipeline retries.
    assert len(fcm_fake.sent) == 1


def test_fcm_third_party_auth_error_is_permanent_and_keeps_the_device(fcm_fake):
    # times=3: google-auth answers a 401 by refreshing its token and trying again, twice.
    fcm_fake.fail_send(401, "THIRD_PARTY_AUTH_ERROR", "APNs certificate expired", times=3)
    with pytest.raises(ProviderError) as caught:
        fcm(fcm_fake).send(outgoing())
    assert (caught.value.permanent, caught.value.deactivate_device, caught.value.code) == (True, False, Code.AUTH)


def test_fcm_unreachable_is_transient(fcm_fake):
    provider = fcm(fcm_fake)
    provider.send(outgoing())  # signed in: the next failure is the send's, not the token's
    fcm_fake.stop()
    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)


def test_fcm_refused_service_account_is_a_permanent_auth_error(fcm_fake):
    fcm_fake.fail(
        fcm_fake.error(400, "", "x").__class__.json(
            400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        ),
        path_contains="/token",
    )
    with pytest.raises(ProviderError) as caught:
        fcm(fcm_fake).send(outgoing())
    assert (caught.value.permanent, caught.value.code) == (True, Code.AUTH)
    assert fcm_fake.sent == []


@pytest.mark.parametrize(
    ("account", "error"),
    [
        (None, "service_account: the JSON key file"),
        ("{not json", "service_account: not valid JSON"),
        ({"type": "service_account"}, "service_account: missing project_id"),
    ],
)
def test_fcm_config_errors_name_the_field(account, error):
    with pytest.raises(ValueError, match="^" + error):
        provider_class("push", "fcm").validate_config({"service_account": account})


def test_fcm_config_refuses_a_key_that_does_not_parse(fcm_fake):
    account = {
        **fcm_fake.service_account,
        "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    }
    with pytest.raises(ValueError, match=r"^service_account: "):
        provider_class("push", "fcm").validate_config({"service_account": account})
