"""ASGI entry point: websockets only, served by uvicorn.

REST stays on WSGI (DESIGN section 1: Django's ASGI path measured 4.6x slower here), so plain
HTTP on this server answers only its own health check.
"""

import json
import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()  # sets Django up before consumers are imported

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from alertflow.logging import RedactCredentialsFilter  # noqa: E402
from delivery.routing import websocket_urlpatterns  # noqa: E402

# uvicorn configured its loggers before loading this module; its handshake lines name the URL.
logging.getLogger("uvicorn.error").addFilter(RedactCredentialsFilter())


async def http_app(scope, receive, send):
    """Answer `/ws/health` with 200 and everything else with the API's 404 error shape."""
    if scope["path"] in ("/ws/health", "/ws/health/"):
        status, body = 200, {"status": "ok"}
    else:
        status, body = (
            404,
            {
                "error": {
                    "code": "not_found",
                    "message": "This server only serves websockets under /ws/.",
                    "details": {},
                }
            },
        )
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


application = ProtocolTypeRouter({"http": http_app, "websocket": URLRouter(websocket_urlpatterns)})
