"""Name resolution for tests, at the outbound guard's one resolver (`alertflow.outbound._resolve`).

No test may reach DNS, yet configs name hosts (`smtp.example.com`) that the guard resolves at
save and at every connection. This table answers instead: IP literals resolve as the system
would (numerically, no network), `localhost` is 127.0.0.1, names under the example domains are
one public address, and a test scripts any other name with `answer()`, including a name whose
answer changes between calls (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket

# A public, globally routable address (example.com's); nothing ever connects to it in tests.
PUBLIC_ADDRESS = "93.184.215.14"
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")


class FakeResolver:
    def __init__(self) -> None:
        self.scripted: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def answer(self, host: str, *rounds: list[str]) -> None:
        """Answer `host` with each round of addresses in turn; the last round repeats."""
        self.scripted[host] = [list(addresses) for addresses in rounds]

    def resolve(self, host: str, port: int) -> list[tuple]:
        self.lookups.append(host)
        if host in self.scripted:
            rounds = self.scripted[host]
            addresses = rounds.pop(0) if len(rounds) > 1 else rounds[0]
        else:
            try:
                return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
            except socket.gaierror:
                pass
            if host == "localhost":
                addresses = ["127.0.0.1"]
            elif host in EXAMPLE_DOMAINS or host.endswith(tuple(f".{domain}" for domain in EXAMPLE_DOMAINS)):
                addresses = [PUBLIC_ADDRESS]
            else:
                raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no {host!r} (script it with answer())")
        return [_info(address, port) for address in addresses]


def _info(address: str, port: int) -> tuple:
    if ipaddress.ip_address(address).version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
