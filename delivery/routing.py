"""Websocket routes served by the ws process (config/asgi.py)."""

from django.urls import re_path

from .consumers import InboxConsumer

websocket_urlpatterns: list = [
    re_path(r"^ws/inbox/?$", InboxConsumer.as_asgi()),
]
