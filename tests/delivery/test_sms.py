import json

import pytest

from delivery.channels import provider_class
from delivery.channels.base import Code, Fault, Outgoing, ProviderError
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN

SERVICE_SID = "MG" + "b" * 32


def twilio(**config):
    config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+14155550100", **config}
    return provider_class("sms", "twilio")(config)


def outgoing(to="+447700900123", text="Your code is 123456") -> Outgoing:
    return Outgoing(message_id="msg-1", to=to, content={"text": text})


def test_twilio_sends_through_the_sdk_and_answers_the_message_sid(twilio_fake):
    sent = twilio().send(outgoing())

    [request] = twilio_fake.sent
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.form() == {"To": "+447700900123", "From": "+14155550100", "Body": "Your code is 123456"}
    assert sent.provider_message_id.startswith("SM")
    assert len(sent.provider_message_id) == 34


def test_twilio_messaging_service_replaces_the_from_number(twilio_fake):
    twilio(from_number="", messaging_service_sid=SERVICE_SID).send(outgoing())
    [request] = twilio_fake.sent
    assert request.form()["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in request.form()


def test_twilio_batch_reuses_one_http_connection(twilio_fake):
    with twilio() as provider:
        for _ in range(3):
            provider.send(outgoing())
    assert len(twilio_fake.sent) == 3
    assert twilio_fake.connections == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (21211, Code.INVALID_ADDRESS),  # Invalid 'To' Phone Number
        (21610, Code.UNSUBSCRIBED),  # the recipient replied STOP
        (21614, Code.INVALID_ADDRESS),  # not a mobile number
        (21612, Code.INVALID_ADDRESS),  # not reachable by SMS
    ],
)
def test_twilio_recipient_errors_are_the_addresss_fault(twilio_fake, code, expected):
    twilio_fake.fail_next(400, code, "refused")
    with pytest.raises(ProviderError) as caught:
        twilio().send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.fault) == (True, expected, Fault.ADDRESS)
    assert str(code) in str(caught.value)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, 20003, Code.AUTH),  # a revoked auth token
        (401, 20005, Code.ACCOUNT),  # account not active
        (400, 21608, Code.ACCOUNT),  # a trial account sending to an unverified number
        (400, 21606, Code.CONFIGURATION),  # the From number is not SMS-capable
        (400, 21408, Code.CONFIGURATION),  # sending to this region is not enabled
        (404, 20404, Code.CONFIGURATION),  # a wrong account or endpoint
    ],
)
def test_twilio_account_and_configuration_errors_are_the_providers_fault(twilio_fake, status, code, expected):
    twilio_fake.fail_next(status, code, "refused")
    with pytest.raises(ProviderError) as caught:
        twilio().send(outgoing())
    assert (caught.value.code, caught.value.fault) == (expected, Fault.PROVIDER)


def test_twilio_other_400_is_the_messages_fault(twilio_fake):
    twilio_fake.fail_next(400, 21617, "The concatenated message body exceeds the 1600 character limit")
    with pytest.raises(ProviderError) as caught:
        twilio().send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.fault) == (True, Code.BAD_REQUEST, Fault.CONTENT)


def test_twilio_rate_limit_is_transient_with_retry_after(twilio_fake):
    twilio_fake.fail_next(429, 20429, "Too Many Requests", retry_after="7")
    with pytest.raises(ProviderError) as caught:
        twilio().send(outgoing())
    assert (caught.value.transient, caught.value.code, caught.value.retry_after) == (True, Code.RATE_LIMITED, 7.0)


def test_twilio_server_error_is_transient(twilio_fake):
    twilio_fake.fail_next(503, 20503, "Service Unavailable")
    with pytest.raises(ProviderError) as caught:
        twilio().send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)


def test_twilio_wrong_credentials_are_a_permanent_auth_error_of_the_provider(twilio_fake):
    with pytest.raises(ProviderError) as caught:
        twilio(auth_token="wrong").send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.fault) == (True, Code.AUTH, Fault.PROVIDER)


def test_twilio_unreachable_is_transient(twilio_fake):
    twilio_fake.stop()
    with pytest.raises(ProviderError) as caught:
        twilio().send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"account_sid": "nope"}, "account_sid: must look like AC"),
        ({"auth_token": ""}, "auth_token: required"),
        ({"from_number": "0044 7700"}, "from_number: must be an E.164 number"),
        ({"messaging_service_sid": SERVICE_SID}, "from_number: set exactly one of"),
        ({"from_number": "", "messaging_service_sid": ""}, "from_number: set exactly one of"),
        ({"from_number": "", "messaging_service_sid": "MG1"}, "messaging_service_sid: must look like MG"),
    ],
)
def test_twilio_config_errors_name_the_field(config, error):
    config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+14155550100", **config}
    with pytest.raises(ValueError, match="^" + error.replace("+", r"\+").replace(".", r"\.")):
        provider_class("sms", "twilio").validate_config(config)


def test_console_sms_appends_json_lines(var_dir):
    provider = provider_class("sms", "console")({})
    first = provider.send(outgoing())
    provider.send(outgoing(to="+15550002222", text="second"))

    lines = [json.loads(line) for line in (var_dir / "sinks" / "sms.jsonl").read_text().splitlines()]
    assert [(r["to"], r["text"]) for r in lines] == [
        ("+447700900123", "Your code is 123456"),
        ("+15550002222", "second"),
    ]
    assert lines[0]["id"] == first.provider_message_id
