"""Websocket routes served by the ws process (config/asgi.py)."""

websocket_urlpatterns: list = []
