"""The connector contract: stateless adapters that make one effect per effect key, and undo it."""
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.execution.models import ActionIntent


class ConnectorError(Exception):
    """A connector failed. `str(error)` is a classified sentence of our own ("the CRM answered HTTP 503
    (server error)"): it is what gets stored — failure_reason, ExecutionAttempt.error, the ledger — and
    shown to any member of the tenant. It never quotes the other side.

    `detail` is the raw text (a response body excerpt, an exception's text, which can hold URLs, bodies
    and whatever the server chose to echo): it goes to the log with the intent id, never to a row.
    """

    def __init__(self, message: str, *, http_status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.http_status = http_status
        self.detail = detail


class TransientError(ConnectorError):
    """Worth retrying (timeouts, 5xx, 429, connection refused)."""

    def __init__(self, message: str, *, retry_after: float | None = None, http_status: int | None = None,
                 detail: str = ""):
        super().__init__(message, http_status=http_status, detail=detail)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """Retrying cannot help (bad request, refused credentials, missing configuration, a refused endpoint)."""


# Raw text kept for the log: enough to diagnose, bounded so one answer cannot flood it.
DETAIL_LIMIT = 500


_URL_CREDENTIALS = re.compile(r"(?<=//)[^/@\s]+@")
SECRET_MASK = "***"
# Shorter "secrets" (test keys like "k") would mask every occurrence of a letter and say nothing useful.
MIN_MASKED_SECRET = 4


def excerpt(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """Raw text as it may be logged: bounded, and without the connector's secrets should the other side
    (or a library's message) echo one, nor credentials written into a URL."""
    for secret in secrets:
        if len(secret or "") >= MIN_MASKED_SECRET:
            text = text.replace(secret, SECRET_MASK)
    text = _URL_CREDENTIALS.sub(f"{SECRET_MASK}@", text)
    return text if len(text) <= DETAIL_LIMIT else f"{text[:DETAIL_LIMIT]}…"


_WIRE_PROBLEMS = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (socket.gaierror, "its name did not resolve"),
    (ssl.SSLCertVerificationError, "its TLS certificate was not accepted"),
    (ssl.SSLError, "the TLS handshake failed"),
)


def wire_problem(error: BaseException, default: str = "network error") -> str:
    """What went wrong on the network, as a phrase, from the OS error an HTTP library wraps (whose text
    holds addresses and URLs, so it is never quoted)."""
    seen: BaseException | None = error
    while seen is not None:
        for kind, phrase in _WIRE_PROBLEMS:
            if isinstance(seen, kind):
                return phrase
        seen = seen.__cause__ or seen.__context__
    return default


@dataclass(frozen=True)
class ExternalRef:
    """Where the effect lives outside: the system and its ids for the object created."""

    system: str
    ids: dict[str, str] = field(default_factory=dict)


def described(connector: str, *, summary: str, body, target: str) -> dict:
    """A preview (plans.previews): what the connector would send for the intent, and where."""
    return {"connector": connector, "summary": summary, "target": target, "body": body, "unavailable": False}


def not_describable(connector: str, error: PermanentError) -> dict:
    """The preview of an intent the connector would refuse: our sentence (it names the setting to fill
    in, never a value), no body."""
    return {"connector": connector, "summary": str(error), "target": "", "body": None, "unavailable": True}


class Connector(Protocol):
    name: str

    def preview(self, intent: ActionIntent) -> dict:
        """What execute would send for the intent (built by the same code), without sending anything or
        writing a row: `described(...)`, or `not_describable(...)` when validate would refuse it."""

    def validate(self, intent: ActionIntent) -> None:
        """Raise PermanentError when the intent cannot be carried out by this connector."""

    def execute(self, intent: ActionIntent) -> ExternalRef:
        """Make the effect, or find the one already made for intent.effect_key."""

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        """Undo the effect; undoing one that is already gone is not an error."""
