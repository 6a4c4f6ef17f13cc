"""Typed domain errors; the API's exception handler maps each to its HTTP status and JSON shape."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reason:
    """A stable machine code plus a sentence a person understands."""

    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


@dataclass
class DomainError(Exception):
    code: str
    detail: str
    reasons: list[Reason] = field(default_factory=list)
    http_status = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class ValidationFailed(DomainError):
    http_status = 400


class NotAllowed(DomainError):
    http_status = 403


class NotFound(DomainError):
    http_status = 404


class Conflict(DomainError):
    """Invalid transition, version mismatch, conflicting plan, required step (409)."""

    http_status = 409


class PolicyRefused(DomainError):
    """The policy gate said no; `reasons` carries its reason codes (422)."""

    http_status = 422


class LedgerImmutable(Exception):
    """Raised by any attempt to change or remove a ledger entry."""
