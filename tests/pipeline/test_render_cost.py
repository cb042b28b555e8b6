"""A render past its cost limit in a worker dead-letters the message with the reason, once."""

import pytest

from delivery import pipeline
from notifications.models import Message

from .conftest import CONTENT

pytestmark = pytest.mark.django_db

CUBIC = "{% for a in s %}{% for b in s %}{% for c in s %}{{ c }}{% endfor %}{% endfor %}{% endfor %}"


def test_a_render_past_its_cost_limit_fails_permanently_with_the_reason(admin, ada):
    body = {
        "recipient": "ada",
        "channels": ["sms"],
        "content": {**CONTENT, "sms": {"text": CUBIC}},
        "data": {"s": "x" * 300},
    }
    response = admin.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    message = Message.objects.get(notification_id=response.json()["id"])

    assert pipeline.deliver([message.id]) == 0

    message.refresh_from_db()
    assert (message.status, message.reason, message.attempts) == ("failed", "permanent_failure", 1)
    assert message.error.startswith("render_failed: render_too_expensive: sms.text: ")
    assert "10000 loop iterations" in message.error
    assert not message.delivery_attempts.exists()
