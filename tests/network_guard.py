"""Proof 4's mechanism: every socket connection and name lookup made by the process is checked.

Only loopback addresses are allowed at all (the fake platform APIs and our own HTTP server run
on 127.0.0.1); each connection is recorded so a test can check that the bot talked only to the
configured API base URLs.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field


class UnexpectedNetwork(AssertionError):
    pass


@dataclass
class NetworkGuard:
    connections: list[tuple[str, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _original_connect: object = None
    _original_connect_ex: object = None
    _original_getaddrinfo: object = None

    def install(self) -> NetworkGuard:
        guard = self
        self._original_connect = socket.socket.connect
        self._original_connect_ex = socket.socket.connect_ex
        self._original_getaddrinfo = socket.getaddrinfo

        def check(address) -> None:
            if isinstance(address, tuple) and len(address) >= 2:
                host, port = address[0], address[1]
                try:
                    loopback = ipaddress.ip_address(host).is_loopback
                except ValueError:
                    loopback = host == "localhost"
                if not loopback:
                    guard.refused.append(f"{host}:{port}")
                    raise UnexpectedNetwork(f"connection to {host}:{port} refused by the test's network guard")
                guard.connections.append((host, int(port)))

        def connect(sock, address):
            check(address)
            return guard._original_connect(sock, address)

        def connect_ex(sock, address):
            check(address)
            return guard._original_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            name = host.decode() if isinstance(host, bytes) else host
            if name not in (None, "localhost", "127.0.0.1", "::1", "0.0.0.0", ""):
                try:
                    ipaddress.ip_address(name)
                except ValueError:
                    guard.refused.append(f"lookup {name}")
                    raise UnexpectedNetwork(f"name lookup of {name} refused by the test's network guard") from None
            return guard._original_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = connect
        socket.socket.connect_ex = connect_ex
        socket.getaddrinfo = getaddrinfo
        return self

    def uninstall(self) -> None:
        socket.socket.connect = self._original_connect
        socket.socket.connect_ex = self._original_connect_ex
        socket.getaddrinfo = self._original_getaddrinfo

    def ports(self) -> set[int]:
        return {port for _, port in self.connections}
