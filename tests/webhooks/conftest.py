import re
from pathlib import Path

import pytest

from delivery.webhooks.models import WebhookEndpoint
from tests.factories import RecipientFactory
from tests.fakes.fixtures import *  # noqa: F403
from tests.pipeline.conftest import accept  # noqa: F401 (used by the tests here)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", name="Ada", email="ada@example.com", phone="+14155552671")


def readme_verifier():
    """The `verify` function of README.md's "Verifying a signature", run as written: the test
    checks the snippet tenants copy, so the README cannot drift from what the relay signs."""
    text = README.read_text()
    section = text[text.index("### Verifying a signature") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    return namespace["verify"]


def subscribe(client, url: str, events: list[str]) -> dict:
    """Create an endpoint through the API; returns its body (with the secret, shown this once)."""
    response = client.post("/api/v1/webhooks", {"url": url, "events": events}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def endpoint(admin, webhook_receiver):
    """An endpoint of `tenant` at the receiver, subscribed to every event."""
    from delivery.webhooks.types import SUBSCRIBABLE

    body = subscribe(admin, webhook_receiver.endpoint, SUBSCRIBABLE)
    return WebhookEndpoint.objects.get(pk=body["id"]), body["secret"]
