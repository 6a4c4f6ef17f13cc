"""The connector contract: stateless adapters that make one effect per effect key, and undo it."""
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.execution.models import ActionIntent


class ConnectorError(Exception):
    """A connector failed; `str(error)` says what and why in a sentence."""


class TransientError(ConnectorError):
    """Worth retrying (timeouts, 5xx, 429, connection refused)."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """Retrying cannot help (bad request, refused credentials, missing configuration)."""


@dataclass(frozen=True)
class ExternalRef:
    """Where the effect lives outside: the system and its ids for the object created."""

    system: str
    ids: dict[str, str] = field(default_factory=dict)


class Connector(Protocol):
    name: str

    def validate(self, intent: ActionIntent) -> None:
        """Raise PermanentError when the intent cannot be carried out by this connector."""

    def execute(self, intent: ActionIntent) -> ExternalRef:
        """Make the effect, or find the one already made for intent.effect_key."""

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        """Undo the effect; undoing one that is already gone is not an error."""
