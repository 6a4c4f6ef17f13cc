"""The signal taxonomy: every AccountSignal.signal_type, what it means, and who may write it.

A signal is something observed about an account. Some come from outside (a CRM, a support desk, a
person) through POST /api/v1/accounts/{id}/signals/ or `manage.py import_signals`; the others are
written only by revplan itself — the execution spine's outcomes and what people did with its ideas —
and are refused from outside, so no client can forge "the meeting was sent" or "the idea was rejected".
Keep the codes stable: plan types (objective_signal_types), the proposal rules and clients depend on them.
"""
from dataclasses import dataclass
from enum import StrEnum


class Origin(StrEnum):
    OUTSIDE = "outside"  # the API, the import, a person
    SYSTEM = "system"  # revplan only


@dataclass(frozen=True)
class SignalType:
    code: str
    origin: Origin
    meaning: str


TAXONOMY: dict[str, SignalType] = {
    signal.code: signal
    for signal in (
        SignalType("RENEWAL_COMMITTED", Origin.OUTSIDE,
                   "The customer committed to renew (a verbal or written yes, not yet booked); meets a "
                   "RENEWAL_DEFENSE objective when observed before renewal date - 30 days."),
        SignalType("RENEWAL_CLOSED_WON", Origin.OUTSIDE,
                   "The renewal was booked (the CRM's opportunity closed won); meets a RENEWAL_DEFENSE objective "
                   "like RENEWAL_COMMITTED."),
        SignalType("RENEWAL_AT_RISK", Origin.OUTSIDE,
                   "Someone who knows the account judges the renewal at risk (a forecast downgrade, a lost budget)."),
        SignalType("SUPPORT_RISK", Origin.OUTSIDE,
                   "Support sees a risk on the account (open severe tickets, falling satisfaction); the proposal "
                   "rules add an ESCALATE_SUPPORT_RISK step."),
        SignalType("SUPPORT_ESCALATION", Origin.OUTSIDE,
                   "A support case was escalated by the customer or to management; treated as a support risk."),
        SignalType("CHAMPION_LEFT", Origin.OUTSIDE,
                   "The customer's main contact or sponsor for the product left or changed role."),
        SignalType("NO_RESPONSE", Origin.OUTSIDE,
                   "An outreach (a meeting request, a renewal mail) got no answer within the expected time."),
        SignalType("NEGATIVE_RESPONSE", Origin.OUTSIDE,
                   "The customer answered an outreach negatively (declined the meeting, said they will not renew)."),
        SignalType("ACTION_EXECUTED", Origin.SYSTEM,
                   "The execution spine sent an action (its payload names the intent, the plan step and the "
                   "external ids); outcome EXECUTION_SUCCEEDED."),
        SignalType("ACTION_FAILED", Origin.SYSTEM,
                   "The execution spine gave up on an action (its payload names the intent and the error class); "
                   "outcome EXECUTION_FAILED."),
        SignalType("EXECUTION_SUCCEEDED", Origin.SYSTEM,
                   "The outcome name of ACTION_EXECUTED in the outcome taxonomy (DESIGN §5); reserved for the spine."),
        SignalType("EXECUTION_FAILED", Origin.SYSTEM,
                   "The outcome name of ACTION_FAILED in the outcome taxonomy (DESIGN §5); reserved for the spine."),
        SignalType("IDEA_REJECTED", Origin.SYSTEM,
                   "A person aborted a proposed (DRAFT) plan; the payload keeps the reason."),
        SignalType("IDEA_EDITED", Origin.SYSTEM,
                   "A plan was approved after a person edited what was proposed."),
    )
}

OUTSIDE_SIGNAL_TYPES = frozenset(code for code, signal in TAXONOMY.items() if signal.origin == Origin.OUTSIDE)
SYSTEM_SIGNAL_TYPES = frozenset(code for code, signal in TAXONOMY.items() if signal.origin == Origin.SYSTEM)

# The source of what revplan observed itself (the spine's outcomes); refused as a source from outside.
SYSTEM_SOURCE = "system"
