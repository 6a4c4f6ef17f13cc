"""The stand-in CRM and Radicale listen on 127.0.0.1 over http, which the SSRF guard refuses for a tenant's
endpoint: these tests allow-list that host, as REVPLAN_TENANT_ENDPOINT_ALLOWLIST is meant for. The guard's
own tests (test_endpoints.py) set the allow-list back to empty."""
import socket
from dataclasses import dataclass, field

import pytest


@pytest.fixture(autouse=True)
def stand_ins_allow_listed(settings):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]


@dataclass
class ScriptedDns:
    """DNS answers by name, one list of addresses per lookup (the last one repeats); `lookups` records them."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)


@pytest.fixture
def dns(monkeypatch) -> ScriptedDns:
    """Scripted answers for the names a test sets; other names and address literals resolve as usual."""
    scripted = ScriptedDns()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in scripted.answers:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        scripted.lookups.append(name)
        queue = scripted.answers[name]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0)) if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))
            for address in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return scripted
