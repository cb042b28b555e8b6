"""The outbound guard: every destination a tenant controls is checked here (DESIGN section 5).

A tenant names hosts our processes connect to: an SMTP host, an ESP's or APNs' `api_url`, the
OAuth `token_uri` of an FCM service account, a browser's Web Push endpoint, later its webhook
URLs. Unchecked, that lets a tenant aim our workers at our own network (the cloud metadata
service at 169.254.169.254, a database, an admin port) and read the answer back from the stored
provider error. So every such destination is:

1. resolved here, by `_resolve` (the one place a name becomes addresses);
2. refused when any address is loopback, private, link-local, CGNAT, multicast, reserved,
   unspecified, an IPv4-mapped IPv6 address, or otherwise not globally routable;
3. connected to at an address that was just checked (`create_connection`): the libraries never
   resolve the name again, so a name that re-resolves between the check and the connection (DNS
   rebinding) cannot slip past. The name is kept for TLS (SNI, certificate checks) and `Host`.

`check_host`/`check_url` serve the save-time check (an API answers 400 `address_not_allowed`);
the transports below serve send time: `GuardedAdapter` for requests sessions, `guard_botocore`
for boto3 clients, `guarded_httpx_transport` for httpx, `GuardedSMTP`/`GuardedSMTPSSL` for
smtplib. Each raises `AddressNotAllowed` from inside the connection attempt.

`settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS` lifts the refusal of loopback, private, link-local
and CGNAT addresses (development against local servers, `make run`); multicast, reserved,
unspecified and IPv4-mapped addresses stay refused, since no real destination uses them.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
from urllib.parse import urlsplit

import httpcore
import httpx
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6598 shared address space (carrier-grade NAT): `is_private` is False for it, and it can
# still be a network of ours.
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# RFC 6052 NAT64 well-known prefix: a NAT64 gateway forwards 64:ff9b::a00:1 to 10.0.0.1.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

# The reasons `ALERTFLOW_ALLOW_PRIVATE_NETWORKS` lifts; the others are never a real destination.
PRIVATE_REASONS = frozenset({"loopback", "private", "link-local", "shared (CGNAT)", "not globally routable"})


class AddressNotAllowed(Exception):
    """A destination a tenant named resolves to an address our processes may not connect to.

    Deliberately not an `OSError`: HTTP and SMTP libraries treat those as passing network
    failures (and retry, or wrap them as "connection refused"). This one propagates as it is, and
    the caller reports it as a configuration error that no retry will fix.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host or 'the host'} {reason}")
        self.host = host
        self.reason = reason


def refusal(address: IPAddress) -> str | None:
    """Why `address` may not be connected to, or None when it may (under the current setting)."""
    reason = _classify(address)
    if reason in PRIVATE_REASONS and settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS:
        return None
    return reason


def _classify(address: IPAddress) -> str | None:
    # The order matters: 127.0.0.1 is private too, and "loopback" says more.
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:10.0.0.1 is 10.0.0.1 to the kernel; no public name resolves to this form.
            return "IPv4-mapped IPv6"
        embedded = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and _classify(embedded):
            return "an IPv6 address embedding a non-public IPv4 address"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "shared (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"  # documentation, benchmarking and other special ranges
    return None


def _resolve(host: str, port: int) -> list[tuple]:
    """`socket.getaddrinfo` for a TCP connection: the one place a destination's name is resolved.

    Tests replace this function (and only this one) to answer names without DNS.
    """
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def checked_addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    """Resolve `host` and return `[(family, sockaddr)]` to connect to, every one checked.

    Raises `AddressNotAllowed` if any address is refused (a name that mixes a public and a
    private address would otherwise reach the private one whenever the public one fails), and
    `socket.gaierror` when the name does not resolve.
    """
    host = (host or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise AddressNotAllowed(host, "is empty")
    infos = _resolve(host, port)
    addresses = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        # An IPv6 link-local answer carries its zone ("fe80::1%eth0"): the address is before it.
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        reason = refusal(address)
        if reason:
            # The address itself is left out: a tenant learns no more of our internal DNS than
            # that the name is not public.
            raise AddressNotAllowed(host, f"resolves to a {reason} address")
        if (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    if not addresses:
        raise AddressNotAllowed(host, "resolves to no IP address")
    return addresses


def check_host(host: str, port: int) -> None:
    """The save-time check of a host and port. Raises `AddressNotAllowed` with the reason."""
    try:
        checked_addresses(host, port)
    except (socket.gaierror, ValueError):  # ValueError: a NUL, or a label IDNA cannot encode
        raise AddressNotAllowed(host, "does not resolve") from None


def url_host_port(url: str) -> tuple[str, int]:
    """The host and port an http(s) URL connects to. Raises `AddressNotAllowed` for another URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AddressNotAllowed(url, "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressNotAllowed(url, "is not an http(s) URL")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str) -> None:
    """The save-time check of an http(s) URL's host. Raises `AddressNotAllowed` with the reason."""
    check_host(*url_host_port(url))


def refusal_in(exc: BaseException | None) -> AddressNotAllowed | None:
    """The `AddressNotAllowed` that caused `exc`, however a library wrapped it, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, AddressNotAllowed):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def create_connection(
    host: str,
    port: int,
    timeout: float | None = None,
    source_address: tuple | None = None,
    socket_options: list | tuple | None = None,
) -> socket.socket:
    """`socket.create_connection`, to the addresses `checked_addresses` just approved.

    Tries each in turn like the standard function does; raises `AddressNotAllowed`,
    `socket.gaierror`, or the last connection's `OSError`.
    """
    error: OSError | None = None
    for family, sockaddr in checked_addresses(host, port):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    assert error is not None
    raise error


# --- requests (and anything else on urllib3) -----------------------------------------------------


class _GuardedConnectionMixin:
    """A urllib3 connection whose socket goes through `create_connection`.

    Only the TCP connection changes: urllib3 still wraps it in TLS for `self.host` and sends
    that name in `Host`. The errors are mapped as urllib3's own `_new_conn` maps them, so a
    refused port or a timeout still reads as one to requests and botocore.
    """

    def _new_conn(self) -> socket.socket:
        timeout = socket.getdefaulttimeout() if self.timeout is _DEFAULT_TIMEOUT else self.timeout
        try:
            return create_connection(self._dns_host, self.port, timeout, self.source_address, self.socket_options)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """A requests transport adapter whose connections pass the guard."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        # Through a proxy the proxy connects, to an address we never checked.
        raise AddressNotAllowed(proxy, "is a proxy: guarded connections go direct")


def guard_session(session: requests.Session, adapter: requests.adapters.HTTPAdapter | None = None) -> None:
    """Send every request of `session` through the guard (`adapter`: a `GuardedAdapter` with options)."""
    adapter = adapter or GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # no HTTP(S)_PROXY from the environment (see proxy_manager_for)


def guard_botocore(client) -> None:
    """Send every request of a boto3/botocore `client` through the guard.

    botocore has no transport option: its `URLLib3Session` keeps the pool classes it gives its
    pool managers in `_pool_classes_by_scheme` (botocore/httpsession.py). They are swapped for
    guarded subclasses of botocore's own before the first request; an upgrade that renames them
    makes this refuse rather than send unguarded.
    """
    from botocore.awsrequest import AWSHTTPConnection, AWSHTTPSConnection

    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    manager = getattr(session, "_manager", None)
    if manager is None or not hasattr(session, "_pool_classes_by_scheme"):
        raise ImproperlyConfigured("botocore internals changed: cannot guard its connections")

    class AwsHTTPConnection(_GuardedConnectionMixin, AWSHTTPConnection):
        pass

    class AwsHTTPSConnection(_GuardedConnectionMixin, AWSHTTPSConnection):
        pass

    pools = {
        "http": type("GuardedAwsHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": AwsHTTPConnection}),
        "https": type("GuardedAwsHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": AwsHTTPSConnection}),
    }
    session._pool_classes_by_scheme = pools
    manager.pool_classes_by_scheme = pools
    session._proxy_config = type(session._proxy_config)(proxies={})  # direct, as for requests


# --- httpx ----------------------------------------------------------------------------------------


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting to checked addresses only (TLS still uses the name)."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = checked_addresses(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for _family, sockaddr in addresses:
            try:
                return super().connect_tcp(sockaddr[0], port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


def guarded_httpx_transport(**kwargs) -> httpx.HTTPTransport:
    """An `httpx.HTTPTransport(**kwargs)` whose connections pass the guard.

    httpx takes no network backend; its connection pool (httpcore) does, as `_network_backend`.
    """
    transport = httpx.HTTPTransport(**kwargs)
    pool = getattr(transport, "_pool", None)
    if not isinstance(getattr(pool, "_network_backend", None), httpcore.SyncBackend):
        raise ImproperlyConfigured("httpx internals changed: cannot guard its connections")
    pool._network_backend = _GuardedBackend()
    return transport


# --- smtplib --------------------------------------------------------------------------------------


class GuardedSMTP(smtplib.SMTP):
    """`smtplib.SMTP` connecting through the guard; STARTTLS still verifies the configured name."""

    def _get_socket(self, host, port, timeout):
        if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:
            timeout = socket.getdefaulttimeout()
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        return create_connection(host, port, timeout, self.source_address)


class GuardedSMTPSSL(smtplib.SMTP_SSL, GuardedSMTP):
    """`smtplib.SMTP_SSL` connecting through the guard (its `_get_socket` wraps ours in TLS)."""
