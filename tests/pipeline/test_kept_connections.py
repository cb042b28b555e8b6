"""Provider connections kept between the batches of a worker process (delivery.sending.kept):
single sends share one SMTP session, and a changed config or a rotated secret never reuses it."""

import socket

import pytest

from delivery import pipeline, sending
from delivery.providers import clear_cache
from notifications.models import Message
from tests.factories import RecipientFactory

from .conftest import accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


def sent_count() -> int:
    return Message.objects.filter(status="sent").count()


def test_single_sends_one_after_another_share_one_smtp_connection(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    messages = [accept(admin, ["email"])[0] for _ in range(3)]

    for message in messages:
        assert pipeline.deliver([message.id]) == 1

    assert len(smtp_server.messages) == 3
    assert smtp_server.connections == 1


def test_a_changed_config_is_sent_over_a_new_connection(admin, tenant, ada, smtp_server):
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    first, second = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    assert pipeline.deliver([first.id]) == 1

    provider.set_config({**smtp_config(smtp_server), "from_email": "alerts@acme.test"})
    provider.save()
    clear_cache()  # as every worker does once it sees the tenant's new provider version
    assert pipeline.deliver([second.id]) == 1

    assert smtp_server.connections == 2
    assert [m.mail_from for m in smtp_server.messages] == ["noreply@acme.test", "alerts@acme.test"]


def test_a_rotated_password_logs_in_again_instead_of_reusing_the_old_session(admin, tenant, ada, smtp_server):
    smtp_server.require_login("mailer", "old-secret")
    login = {"username": "mailer", "password": "old-secret"}
    provider = add_provider(tenant, "email", "smtp", {**smtp_config(smtp_server), **login})
    first, second = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    assert pipeline.deliver([first.id]) == 1

    # Rotated at the server and in the config: the old session, logged in with the old
    # password, still works, and must not be what carries the next message.
    smtp_server.require_login("mailer", "new-secret")
    provider.set_config({**smtp_config(smtp_server), **login, "password": "new-secret"})
    provider.save()
    clear_cache()
    assert pipeline.deliver([second.id]) == 1

    assert smtp_server.connections == 2
    assert sent_count() == 2


def test_a_session_dropped_while_kept_is_replaced_before_the_next_message(admin, tenant, ada, smtp_server, monkeypatch):
    monkeypatch.setattr(sending, "CHECK_AFTER_SECONDS", 0.0)
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    first, second = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    assert pipeline.deliver([first.id]) == 1
    [(_made_with, provider, _used)] = sending.kept._kept.values()
    provider._backend.connection.sock.shutdown(socket.SHUT_RDWR)  # gone, as if the server dropped it

    assert pipeline.deliver([second.id]) == 1

    assert smtp_server.connections == 2
    assert Message.objects.get(pk=second.pk).attempts == 1  # no failed attempt on the dead session
    assert len(smtp_server.messages) == 2


def test_a_connection_unused_for_too_long_is_closed_not_reused(admin, tenant, ada, smtp_server, monkeypatch):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    first, second = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    assert pipeline.deliver([first.id]) == 1
    [(_made_with, provider, _used)] = sending.kept._kept.values()
    monkeypatch.setattr(sending, "KEEP_IDLE_SECONDS", 0.0)

    assert pipeline.deliver([second.id]) == 1

    assert provider._backend.connection is None  # closed (QUIT) when the second batch found it idle
    assert smtp_server.connections == 2


def test_an_interrupted_batch_gives_no_connection_back(admin, tenant, ada, smtp_server, monkeypatch):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])

    def interrupted(*args, **kwargs):
        raise SystemExit("worker shutting down")

    # After the provider is taken, before the batch finishes: in the middle of recording.
    monkeypatch.setattr(pipeline, "settle", interrupted)
    with pytest.raises(SystemExit):
        pipeline.deliver([message.id])

    assert sending.kept._kept == {}


def test_one_tenants_kept_connection_never_carries_anothers_mail(
    admin, tenant, ada, smtp_server, outsider, outsider_tenant
):
    ours = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    theirs = add_provider(outsider_tenant, "email", "smtp", smtp_config(smtp_server))
    RecipientFactory(tenant=outsider_tenant, external_id="bob", email="bob@example.com")
    [our_message], [their_message] = accept(admin, ["email"]), accept(outsider, ["email"], recipient="bob")

    assert pipeline.deliver([our_message.id]) == 1
    assert pipeline.deliver([their_message.id]) == 1

    # Same server, same settings: still one session per provider row, never shared.
    assert smtp_server.connections == 2
    assert set(sending.kept._kept) == {str(ours.pk), str(theirs.pk)}
