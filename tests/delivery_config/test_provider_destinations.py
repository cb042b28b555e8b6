"""Save-time outbound guard: a provider config naming a non-public host is a 400 naming the field."""

import pytest

from delivery.models import Provider
from tests.fakes.apns import ApnsFake
from tests.fakes.dns import PUBLIC_ADDRESS
from tests.fakes.fcm import FcmFake

from .conftest import make_provider, smtp_config

pytestmark = pytest.mark.django_db

URL = "/api/v1/providers"


def sendgrid(api_url):
    return {"api_key": "SG.key", "from_email": "alerts@example.com", "api_url": api_url}


def apns(api_url):
    fake = ApnsFake().start()  # only for its config's shape and key
    config = fake.config(api_url=api_url)
    fake.stop()
    return config


def fcm(token_uri):
    fake = FcmFake().start()  # only for its service account's shape and key
    account = fake.service_account
    fake.stop()
    return {"service_account": {**account, "token_uri": token_uri}}


CASES = [
    ("email", "smtp", smtp_config(host="127.0.0.1", port=25), "config.host"),
    ("email", "smtp", smtp_config(host="169.254.169.254"), "config.host"),
    ("email", "smtp", smtp_config(host="metadata.corp.test"), "config.host"),
    ("email", "smtp", smtp_config(host="localhost"), "config.host"),
    ("email", "sendgrid", sendgrid("http://10.0.0.5:8080/v3"), "config.api_url"),
    ("email", "mailgun", sendgrid("http://[::1]/v3"), "config.api_url"),
    ("email", "postmark", {"server_token": "t0ken", "from_email": "a@example.com", "api_url": "http://100.64.1.1"},
     "config.api_url"),
    ("email", "amazon_ses", {"access_key_id": "AKIA1", "secret_access_key": "s3cret", "region": "eu-west-1",
                             "from_email": "a@example.com", "api_url": "http://192.168.0.1"}, "config.api_url"),
    ("push", "apns", lambda: apns("https://127.0.0.1:8443"), "config.api_url"),
    ("push", "fcm", lambda: fcm("http://169.254.169.254/computeMetadata/v1/token"), "config.service_account.token_uri"),
]  # fmt: skip


@pytest.mark.parametrize(("channel", "kind", "config", "field"), CASES)
def test_a_non_public_destination_is_refused_at_save(admin, resolver, channel, kind, config, field):
    resolver.answer("metadata.corp.test", ["169.254.169.254"])
    config = config() if callable(config) else config

    response = admin.post(URL, {"channel": channel, "kind": kind, "name": "p", "config": config}, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "address_not_allowed"
    assert error["details"] == {"field": field}
    assert error["message"].startswith(f"{field}: ")
    assert not Provider.objects.exists()


def test_a_public_destination_is_accepted(admin, resolver):
    resolver.answer("smtp.tenant.test", [PUBLIC_ADDRESS])
    body = {"channel": "email", "kind": "smtp", "name": "p", "config": smtp_config(host="smtp.tenant.test")}
    assert admin.post(URL, body, format="json").status_code == 201
    body = {"channel": "email", "kind": "sendgrid", "name": "sg", "config": sendgrid("https://api.example.com/v3")}
    assert admin.post(URL, body, format="json").status_code == 201


def test_a_host_that_does_not_resolve_is_refused(admin):
    body = {"channel": "email", "kind": "smtp", "name": "p", "config": smtp_config(host="no-such-host.test")}
    response = admin.post(URL, body, format="json")
    assert response.json()["error"]["code"] == "address_not_allowed"
    assert "does not resolve" in response.json()["error"]["message"]


def test_patching_the_host_is_checked_and_changes_nothing_when_refused(admin, tenant):
    provider = make_provider(tenant)

    response = admin.patch(f"{URL}/{provider.pk}", {"config": {"host": "10.0.0.1"}}, format="json")

    assert response.json()["error"] == {
        "code": "address_not_allowed",
        "message": "config.host: 10.0.0.1 resolves to a private address",
        "details": {"field": "config.host"},
    }
    provider.refresh_from_db()
    assert provider.config["host"] == "smtp.example.com"


def test_an_outsider_cannot_patch_another_tenants_destination(outsider, tenant):
    provider = make_provider(tenant)
    response = outsider.patch(f"{URL}/{provider.pk}", {"config": {"host": "10.0.0.1"}}, format="json")
    assert response.status_code == 404
    provider.refresh_from_db()
    assert provider.config["host"] == "smtp.example.com"


def test_private_networks_setting_allows_a_local_server(admin, settings):
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = True
    body = {"channel": "email", "kind": "smtp", "name": "p", "config": smtp_config(host="127.0.0.1", port=1025)}
    assert admin.post(URL, body, format="json").status_code == 201
    # Never a multicast or reserved address, setting or not.
    body = {"channel": "email", "kind": "smtp", "name": "q", "config": smtp_config(host="224.0.0.1")}
    assert admin.post(URL, body, format="json").json()["error"]["code"] == "address_not_allowed"
