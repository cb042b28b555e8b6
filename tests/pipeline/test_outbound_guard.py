"""Send-time outbound guard, error text and secrets: through the pipeline and the real SDKs."""

import json
import logging

import pytest

from delivery import guards, pipeline
from notifications.models import DeliveryAttempt, Message
from tests.factories import DeviceFactory
from tests.fakes.dns import PUBLIC_ADDRESS
from tests.fakes.http import Reply
from tests.fakes.webpush import vapid_keypair

from .conftest import accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def port_of(fake) -> str:
    return fake.url.rsplit(":", 1)[1]


def assert_refused_as_configuration(message):
    """Refused before connecting, as the provider configuration's fault: with no other provider
    the message waits for a fixed config (retried with backoff, the breaker counting), never
    dead-lettered for it and never sent."""
    message = reload(message)
    assert (message.status, message.reason, message.attempts) == ("retrying", "transient_failure", 1)
    assert message.error.startswith("address_not_allowed: ")
    [attempt] = message.delivery_attempts.all()
    assert attempt.outcome == DeliveryAttempt.Outcome.PERMANENT
    assert "resolves to a loopback address" in attempt.error
    return message


def test_an_smtp_host_that_rebinds_after_save_is_refused_at_send(admin, ada, smtp_server, resolver, settings):
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = False  # production: the fake is only the target
    resolver.answer("mail.rebind.test", [PUBLIC_ADDRESS], ["127.0.0.1"])
    config = {"host": "mail.rebind.test", "port": smtp_server.port, "from_email": "alerts@example.com"}
    created = admin.post(
        "/api/v1/providers", {"channel": "email", "kind": "smtp", "name": "s", "config": config}, format="json"
    )
    assert created.status_code == 201, created.content  # public when saved
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    assert_refused_as_configuration(message)
    assert smtp_server.connections == 0
    # And the API says so, with the short text only.
    body = admin.get(f"/api/v1/notifications/{message.notification_id}").json()
    [listed] = body["messages"]
    assert listed["error"].startswith("address_not_allowed: mail.rebind.test resolves to a loopback address")


def test_a_refused_primary_fails_over_to_the_backup(tenant, admin, ada, smtp_server, resolver):
    # Multicast: refused whatever the setting (the fakes' fixture allows private networks).
    resolver.answer("mail.corp.test", ["224.0.0.25"])
    primary = add_provider(tenant, "email", "smtp", {**smtp_config(smtp_server), "host": "mail.corp.test"},
                           name="primary", priority=0)  # fmt: skip
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="backup", priority=1)
    [message] = accept(admin, ["email"])

    assert pipeline.deliver([message.id]) == 1

    message = reload(message)
    assert (message.status, message.provider) == ("sent", "backup")
    assert list(message.delivery_attempts.values_list("provider", "outcome")) == [
        ("primary", "permanent"),
        ("backup", "sent"),
    ]
    assert guards.breaker_state(str(primary.id)) == "closed"  # one failure, under the threshold


def test_the_connection_goes_to_the_address_the_guard_resolved(tenant, admin, ada, smtp_server, resolver):
    # Only the guard's resolver knows this name, and it is asked once for the one connection.
    resolver.answer("smtp.tenant.test", ["127.0.0.1"])
    add_provider(tenant, "email", "smtp", {**smtp_config(smtp_server), "host": "smtp.tenant.test"})
    [message] = accept(admin, ["email"])

    assert pipeline.deliver([message.id]) == 1

    assert len(smtp_server.messages) == 1
    assert resolver.lookups.count("smtp.tenant.test") == 1


def test_the_deployments_own_relay_may_be_private(admin, ada, smtp_server, settings):
    # The operator's providers come from settings, not from a tenant: not guarded.
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = False
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [
        {"channel": "email", "kind": "smtp", "config": {**smtp_config(smtp_server), "host": "127.0.0.1"}}
    ]
    [message] = accept(admin, ["email"])
    assert pipeline.deliver([message.id]) == 1
    assert reload(message).status == "sent"


def ses_config(url: str) -> dict:
    return {
        "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cret-access-key", "region": "eu-west-1",
        "from_email": "a@example.com", "api_url": url,
    }  # fmt: skip


# kind: (channel, the fake, the config aiming the provider at `url`, the device it needs)
HTTP_PROVIDERS = {
    "sendgrid": ("email", "sendgrid_fake",
                 lambda fake, url: {"api_key": "SG.k3y", "from_email": "a@example.com", "api_url": f"{url}/v3"}, None),
    "amazon_ses": ("email", "sendgrid_fake", lambda fake, url: ses_config(url), None),
    "apns": ("push", "apns_fake", lambda fake, url: fake.config(api_url=url), ("apns", "ab" * 32)),
    # The FCM endpoint is the deployment's (here the fake, on 127.0.0.1); the OAuth one is the tenant's.
    "fcm": ("push", "fcm_fake",
            lambda fake, url: {"service_account": {**fake.service_account, "token_uri": f"{url}/token"}},
            ("fcm", "fcm-token-1")),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(HTTP_PROVIDERS))
def test_a_provider_url_on_our_network_is_refused_at_send(request, kind, tenant, admin, ada, resolver, settings):
    channel, fake_name, make_config, device = HTTP_PROVIDERS[kind]
    fake = request.getfixturevalue(fake_name)
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = False
    resolver.answer("api.rebind.test", ["127.0.0.1"])
    # Written straight to the database: the send-time check stands on its own.
    add_provider(tenant, channel, kind, make_config(fake, f"http://api.rebind.test:{port_of(fake)}"))
    if device:
        DeviceFactory(recipient=ada, platform=device[0], token=device[1])
    [message] = accept(admin, [channel])

    pipeline.deliver([message.id])

    assert_refused_as_configuration(message)
    assert fake.requests == []


def test_amazon_ses_through_boto3_reaches_an_allowed_name(tenant, admin, ada, sendgrid_fake, resolver):
    resolver.answer("ses.tenant.test", ["127.0.0.1"])
    add_provider(tenant, "email", "amazon_ses", ses_config(f"http://ses.tenant.test:{port_of(sendgrid_fake)}"))
    [message] = accept(admin, ["email"])

    assert pipeline.deliver([message.id]) == 1
    [request] = sendgrid_fake.requests
    assert request.headers["host"] == f"ses.tenant.test:{port_of(sendgrid_fake)}"


def test_a_web_push_endpoint_on_our_network_is_refused_at_send(tenant, admin, ada, webpush_fake, resolver, settings):
    # Even through the deployment's own Web Push provider: the endpoint is the tenant's.
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = False
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [
        {"channel": "push", "kind": "webpush",
         "config": {"vapid_private_key": vapid_keypair()[0], "vapid_subject": "mailto:ops@example.com"}},
    ]  # fmt: skip
    resolver.answer("push.rebind.test", ["127.0.0.1"])
    subscription = json.loads(webpush_fake.subscription())
    subscription["endpoint"] = f"http://push.rebind.test:{port_of(webpush_fake)}/push/sub1"
    device = DeviceFactory(recipient=ada, platform="webpush", token=json.dumps(subscription))
    [message] = accept(admin, ["push"])

    pipeline.deliver([message.id])

    # The endpoint is the device's: the message stops there, no provider is blamed.
    message = reload(message)
    assert (message.status, message.reason) == ("failed", "permanent_failure")
    assert message.error == "invalid_address: push.rebind.test resolves to a loopback address"
    assert webpush_fake.requests == []
    device.refresh_from_db()
    assert device.active  # a well-formed subscription; only the network it points at is refused
    assert guards.breaker_state("default:push:webpush") == "closed"


# --- Error text: the provider's status, code and short message, never its body --------------------


def test_an_html_error_page_is_not_stored_or_returned(tenant, admin, ada, sendgrid_fake):
    page = b"<html><body><h1>502 Bad Gateway</h1>\n<p>upstream db-7.internal:5432 password=hunter2</p></body></html>"
    sendgrid_fake.fail(Reply(502, page, {"Content-Type": "text/html"}))
    add_provider(tenant, "email", "sendgrid", {"api_key": "SG.k3y", "from_email": "a@example.com",
                                               "api_url": sendgrid_fake.api_url("sendgrid")})  # fmt: skip
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    message = reload(message)
    [attempt] = message.delivery_attempts.all()
    assert attempt.error == "SendGrid API 502"
    assert message.error == "unavailable: SendGrid API 502"
    body = admin.get(f"/api/v1/notifications/{message.notification_id}").content.decode()
    assert "hunter2" not in body and "internal" not in body


def test_a_json_error_keeps_the_providers_code_and_a_short_one_line_message(tenant, admin, ada, sendgrid_fake):
    text = "Invalid <b>sender</b>\nidentity. " + "x" * 5000
    sendgrid_fake.fail_next(403, {"errors": [{"message": text, "code": "sender_identity"}]})
    add_provider(tenant, "email", "sendgrid", {"api_key": "SG.k3y", "from_email": "a@example.com",
                                               "api_url": sendgrid_fake.api_url("sendgrid")})  # fmt: skip
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    [attempt] = reload(message).delivery_attempts.all()
    assert attempt.error.startswith("SendGrid API 403 sender_identity: Invalid sender identity. xxx")
    assert len(attempt.error) <= 300
    assert "\n" not in attempt.error and "<" not in attempt.error


# --- Secrets ----------------------------------------------------------------------------------------

SECRET = "SG.known-secret-0f1e2d3c4b5a"


def test_a_failing_providers_secret_is_in_no_log_response_or_attempt(tenant, admin, ada, sendgrid_fake, caplog):
    caplog.set_level(logging.DEBUG)
    # The worst case: the provider quotes the credential back in its error.
    sendgrid_fake.fail_next(401, {"errors": [{"message": f"The API key {SECRET} is not valid"}]})
    created = admin.post(
        "/api/v1/providers",
        {"channel": "email", "kind": "sendgrid", "name": "sg",
         "config": {"api_key": SECRET, "from_email": "a@example.com", "api_url": sendgrid_fake.api_url("sendgrid")}},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    assert sendgrid_fake.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was used
    message = reload(message)
    assert message.status == "retrying"  # a revoked key is the provider's fault
    responses = [
        created.content,
        admin.get(f"/api/v1/notifications/{message.notification_id}").content,
        admin.get("/api/v1/messages?status=failed").content,
        admin.get("/api/v1/providers").content,
    ]
    for content in responses:
        assert SECRET not in content.decode()
    stored = [message.error, *DeliveryAttempt.objects.values_list("error", flat=True)]
    assert "The API key *** is not valid" in stored[1]
    assert not [text for text in stored if SECRET in text]
    assert caplog.records  # DEBUG logging did run
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.__dict__)
