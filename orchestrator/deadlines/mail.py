"""Who a waiting item waits on (plans.authority, asked, not restated) and the deadline mails, sent through
Django's e-mail backend: one mail per recipient and stage per run, listing that person's items."""
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from orchestrator.deadlines.items import WaitingItem
from orchestrator.deadlines.models import DeadlineStage
from plans.authority import OWNER_VERBS, Verb, denial
from plans.models import Membership, RevenuePlan, Role
from plans.why import approvers_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    user_id: int
    role: Role
    email: str


def members_of(tenant_ids: set[UUID]) -> dict[UUID, list[Member]]:
    """The active members of these tenants (one query), the people a deadline may mail."""
    members: dict[UUID, list[Member]] = defaultdict(list)
    rows = (Membership.objects.filter(tenant_id__in=tenant_ids, is_active=True, user__is_active=True)
            .order_by("user_id").values_list("tenant_id", "user_id", "role", "user__email"))
    for tenant_id, user_id, role, email in rows:
        members[tenant_id].append(Member(user_id, Role(role), email))
    return members


def _may_end(item: WaitingItem, member: Member) -> bool:
    for verb in item.verbs:
        if denial(verb, role=member.role, user_id=member.user_id, subject=item.subject) is not None:
            continue
        # An approval of a HIGH-risk plan needs a tenant admin (the gate's rule, plans.why.approvers_of).
        if verb in (Verb.APPROVE, Verb.REAPPROVE) and member.role not in approvers_of(
                RevenuePlan(risk_level=item.risk_level)):
            continue
        return True
    return False


def waits_on(item: WaitingItem, members: list[Member]) -> list[Member]:
    """The people the item waits on: its plan's owner when the owner may end it (a step's approval, a pause),
    else everyone who may (the approvers who may approve it: never its creator or its editors)."""
    able = [member for member in members if _may_end(item, member)]
    if any(verb in OWNER_VERBS for verb in item.verbs):
        owner = [member for member in able if member.user_id == item.subject.plan_owner_id]
        if owner:
            return owner
    return able


def recipients(item: WaitingItem, members: list[Member], stage: DeadlineStage) -> list[Member]:
    """Reminder: the people it waits on; escalation and the final rule: those and the tenant's admins."""
    people = waits_on(item, members)
    if stage != DeadlineStage.REMINDED:
        people += [member for member in members if member.role == Role.TENANT_ADMIN and member not in people]
    return people


_SUBJECTS = {
    DeadlineStage.REMINDED: "[revplan] {n} item(s) waiting for you are due soon",
    DeadlineStage.ESCALATED: "[revplan] {n} item(s) are overdue",
    DeadlineStage.MISSED: "[revplan] {n} deadline(s) missed: the plan type's rule was applied",
}

_KIND_WORDS = {
    "DRAFT_APPROVAL": "a DRAFT plan waits for approval",
    "STEP_APPROVAL": "a step waits for approval",
    "APPROVAL_STALE": "a paused plan's approval is stale and waits for a reapproval",
    "PAUSED": "a paused plan waits for a person",
}


def _line(item: WaitingItem, *, now: datetime, outcome: str = "") -> str:
    late = now - item.deadlines.due_at
    when = (f"overdue since {item.deadlines.due_at:%Y-%m-%d %H:%M} UTC" if late.total_seconds() >= 0
            else f"due {item.deadlines.due_at:%Y-%m-%d %H:%M} UTC")
    what = f" ({item.what})" if item.what else ""
    line = (f"- {item.plan_type} for {item.account_name}: {_KIND_WORDS[item.kind]}{what}, waiting since "
            f"{item.waiting_since:%Y-%m-%d %H:%M} UTC, {when}; final deadline "
            f"{item.deadlines.final_at:%Y-%m-%d %H:%M} UTC. Plan {item.plan_id}.")
    return f"{line}\n  {outcome}" if outcome else line


def send(stage: DeadlineStage, batch: list[tuple[WaitingItem, list[Member], str]], *, now: datetime) -> int:
    """One mail per recipient for `batch` [(item, recipients, outcome)], over one connection; returns how many
    were sent. A recipient without an address is skipped (the ledger still names their user id)."""
    by_recipient: dict[str, list[str]] = defaultdict(list)
    late: dict[str, bool] = defaultdict(bool)
    for item, people, outcome in batch:
        for member in people:
            if member.email:
                by_recipient[member.email].append(_line(item, now=now, outcome=outcome))
                late[member.email] |= item.overdue(now)
    messages = [
        # A reminder of a wait first seen when already overdue (the job was down) says so.
        EmailMessage(subject=_SUBJECTS[stage].format(n=len(lines))
                     + (" or overdue" if stage == DeadlineStage.REMINDED and late[address] else ""),
                     body="\n".join(["These wait for you in revplan (the inbox lists them, overdue first):", "",
                                     *lines, ""]),
                     from_email=settings.DEFAULT_FROM_EMAIL, to=[address])
        for address, lines in sorted(by_recipient.items())
    ]
    if not messages:
        return 0
    try:
        with get_connection() as connection:
            sent = connection.send_messages(messages) or 0
    except OSError:
        # The notices are committed (each happens once); a mail server that is down loses this round's mails,
        # which the log says. The inbox and the next stage still show the item.
        logger.exception("deadline mails not sent", extra={"stage": stage, "mails": len(messages)})
        return 0
    logger.info("deadline mails sent", extra={"stage": stage, "mails": sent})
    return sent
