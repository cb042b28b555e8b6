"""The outbound guard (alertflow/outbound.py): what it refuses, and that connections go to the
address it checked, through each transport it offers."""

import ipaddress
import re
import smtplib
import socket

import httpx
import pytest
import requests

from alertflow import outbound
from tests.fakes.dns import PUBLIC_ADDRESS
from tests.fakes.http import HttpFake, Recorded, Reply
from tests.fakes.smtp import SmtpFake

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("fe80::1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 (a destination here, not a bind address)
    ("::", "unspecified"),
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
    ("::ffff:93.184.215.14", "IPv4-mapped IPv6"),  # refused whatever it maps to
    ("2002:a00:1::1", "an IPv6 address embedding a non-public IPv4 address"),  # 6to4 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "an IPv6 address embedding a non-public IPv4 address"),  # NAT64 of 169.254.169.254
    ("192.0.2.10", "private"),  # TEST-NET-1, documentation
    ("198.18.0.1", "private"),  # benchmarking
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_every_non_public_class_is_refused(address, reason):
    assert outbound.refusal(ipaddress.ip_address(address)) == reason
    with pytest.raises(outbound.AddressNotAllowed, match=re.escape(reason)):
        outbound.check_host(address, 443)


@pytest.mark.parametrize("address", [PUBLIC_ADDRESS, "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address):
    assert outbound.refusal(ipaddress.ip_address(address)) is None
    outbound.check_host(address, 443)


@pytest.mark.parametrize("literal", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1"])
def test_odd_spellings_of_loopback_are_read_as_the_system_reads_them(literal):
    with pytest.raises(outbound.AddressNotAllowed, match="loopback"):
        outbound.check_host(literal, 80)


@pytest.mark.parametrize(
    ("address", "lifted"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104
        ("::ffff:127.0.0.1", False),
    ],
)
def test_allowing_private_networks_lifts_only_the_private_classes(settings, address, lifted):
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = True
    assert (outbound.refusal(ipaddress.ip_address(address)) is None) is lifted


def test_a_name_is_refused_when_any_of_its_addresses_is_private(resolver):
    # Connecting would try the public one first and fall back to the private one.
    resolver.answer("mixed.test", [PUBLIC_ADDRESS, "10.0.0.1"])
    with pytest.raises(outbound.AddressNotAllowed, match=r"mixed\.test resolves to a private address"):
        outbound.check_host("mixed.test", 25)


def test_a_name_that_does_not_resolve_is_refused_at_save():
    with pytest.raises(outbound.AddressNotAllowed, match="does not resolve"):
        outbound.check_host("nowhere.test", 25)
    with pytest.raises(outbound.AddressNotAllowed, match="does not resolve"):
        outbound.check_host("bad\x00host.test", 25)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://", "https://example.com:99999/", "not a url"])
def test_only_http_urls_with_a_host_are_destinations(url):
    with pytest.raises(outbound.AddressNotAllowed):
        outbound.check_url(url)


def test_url_ports_default_by_scheme():
    assert outbound.url_host_port("https://api.example.com/v3") == ("api.example.com", 443)
    assert outbound.url_host_port("http://[::1]:8080/") == ("::1", 8080)


def test_a_wrapped_refusal_is_found_in_the_exception_chain():
    refused = outbound.AddressNotAllowed("x.test", "resolves to a private address")
    try:
        try:
            raise refused
        except outbound.AddressNotAllowed as exc:
            raise RuntimeError("wrapped by a library") from exc
    except RuntimeError as wrapped:
        assert outbound.refusal_in(wrapped) is refused
    assert outbound.refusal_in(RuntimeError("other")) is None


# --- Connections go to the address that was checked ----------------------------------------------


class EchoHost(HttpFake):
    def route(self, request: Recorded) -> Reply:
        return Reply.json(200, {"host": request.headers.get("host")})


@pytest.fixture
def http_server():
    fake = EchoHost().start()
    yield fake
    fake.stop()


@pytest.fixture
def local_allowed(settings):
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = True


def guarded_session() -> requests.Session:
    session = requests.Session()
    outbound.guard_session(session)
    return session


def test_requests_connect_to_the_checked_address_and_keep_the_name(http_server, resolver, local_allowed):
    # Only the guard's resolver knows this name: reaching the server proves the connection used
    # its answer, and one lookup proves nothing resolved it a second time.
    resolver.answer("esp.tenant.test", ["127.0.0.1"])
    port = http_server.url.rsplit(":", 1)[1]

    response = guarded_session().get(f"http://esp.tenant.test:{port}/v3")

    assert response.json() == {"host": f"esp.tenant.test:{port}"}
    assert resolver.lookups == ["esp.tenant.test"]


def test_requests_are_refused_before_connecting(http_server, resolver):
    resolver.answer("esp.tenant.test", ["127.0.0.1"])
    port = http_server.url.rsplit(":", 1)[1]
    with pytest.raises(outbound.AddressNotAllowed, match="loopback"):
        guarded_session().get(f"http://esp.tenant.test:{port}/v3")
    assert http_server.requests == []


def test_a_name_that_rebinds_after_the_check_is_refused_at_connection(http_server, resolver):
    # The rebinding attack: public when the config is saved, our own network when we send.
    resolver.answer("rebind.test", [PUBLIC_ADDRESS], ["127.0.0.1"])
    port = http_server.url.rsplit(":", 1)[1]
    outbound.check_url(f"http://rebind.test:{port}/")  # save time: public

    with pytest.raises(outbound.AddressNotAllowed, match=r"rebind\.test resolves to a loopback address"):
        guarded_session().get(f"http://rebind.test:{port}/")
    assert http_server.requests == []


def test_guarded_sessions_ignore_proxies_from_the_environment(http_server, resolver, monkeypatch):
    # A proxy would connect on our behalf to an address nobody checked.
    monkeypatch.setenv("HTTP_PROXY", http_server.url)
    resolver.answer("rebind.test", ["10.0.0.1"])
    with pytest.raises(outbound.AddressNotAllowed):
        guarded_session().get("http://rebind.test/")
    assert http_server.requests == []


def test_connection_errors_still_read_as_connection_errors(resolver, local_allowed):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once closed
    with pytest.raises(requests.ConnectionError):
        guarded_session().get(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(requests.ConnectionError):
        guarded_session().get("http://nowhere.test/", timeout=2)


def test_httpx_transport_connects_to_the_checked_address(http_server, resolver, local_allowed):
    resolver.answer("apns.tenant.test", ["127.0.0.1"])
    port = http_server.url.rsplit(":", 1)[1]
    with httpx.Client(transport=outbound.guarded_httpx_transport(http2=True), trust_env=False) as client:
        assert client.get(f"http://apns.tenant.test:{port}/").json() == {"host": f"apns.tenant.test:{port}"}
    assert resolver.lookups == ["apns.tenant.test"]


def test_httpx_transport_refuses_a_rebound_name(http_server, resolver):
    resolver.answer("apns.tenant.test", [PUBLIC_ADDRESS], ["169.254.169.254"])
    outbound.check_host("apns.tenant.test", 443)
    with (
        httpx.Client(transport=outbound.guarded_httpx_transport(), trust_env=False) as client,
        pytest.raises(outbound.AddressNotAllowed, match="link-local"),
    ):
        client.get("http://apns.tenant.test/")


@pytest.fixture
def smtp_fake():
    fake = SmtpFake().start()
    yield fake
    fake.stop()


def test_smtp_connects_to_the_checked_address(smtp_fake, resolver, local_allowed):
    resolver.answer("smtp.tenant.test", ["127.0.0.1"])
    with outbound.GuardedSMTP("smtp.tenant.test", smtp_fake.port, timeout=5) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello")
    assert len(smtp_fake.messages) == 1


def test_smtp_refuses_a_rebound_name(smtp_fake, resolver):
    resolver.answer("smtp.tenant.test", [PUBLIC_ADDRESS], ["127.0.0.1"])
    outbound.check_host("smtp.tenant.test", smtp_fake.port)
    with pytest.raises(outbound.AddressNotAllowed):
        outbound.GuardedSMTP("smtp.tenant.test", smtp_fake.port, timeout=5)
    with pytest.raises(outbound.AddressNotAllowed):
        outbound.GuardedSMTPSSL("smtp.tenant.test", smtp_fake.port, timeout=5)
    assert smtp_fake.connections == 0


def test_smtp_ssl_goes_through_the_guard_too(smtp_fake, resolver, local_allowed):
    # The fake speaks plain SMTP, so the TLS handshake fails: after our connect, not instead of it.
    resolver.answer("smtp.tenant.test", ["127.0.0.1"])
    with pytest.raises((smtplib.SMTPException, OSError)):
        outbound.GuardedSMTPSSL("smtp.tenant.test", smtp_fake.port, timeout=5)
    assert resolver.lookups == ["smtp.tenant.test"]
