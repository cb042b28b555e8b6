"""docker-compose.yml, as a user with Docker starts it: the services that run AlertFlow know the
public address the proxy serves, so emails carry their one-click unsubscribe link and providers
get receipt URLs (unset, mail went out without List-Unsubscribe)."""

from pathlib import Path

import yaml
from django.conf import settings

COMPOSE = yaml.safe_load((Path(settings.BASE_DIR) / "docker-compose.yml").read_text())


def default_of(value: str) -> str:
    """The default of a `${NAME:-default}` value."""
    return value.split(":-", 1)[1].rstrip("}")


def test_every_app_service_knows_the_public_address_the_proxy_serves():
    services = COMPOSE["services"]
    app = {name: s for name, s in services.items() if "ALERTFLOW_WS_URL" in (s.get("environment") or {})}
    [proxy_port] = services["proxy"]["ports"]
    proxy_address = f"http://localhost:{default_of(proxy_port.split(':80')[0])}"

    assert {"web", "worker-email", "relay", "beat"} <= set(app)
    for name, service in app.items():
        assert default_of(service["environment"]["ALERTFLOW_PUBLIC_URL"]) == proxy_address, name
