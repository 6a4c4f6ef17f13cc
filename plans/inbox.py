"""The approver's inbox: everything in the caller's tenants that waits for them — DRAFTs they may approve,
steps waiting for a person, stale approvals they may reapprove, paused plans whose layers they may lift —
each with when the wait began, when it is due (the plan type's approval SLA) and the verbs that end it.

In two phases, each in a constant number of queries however many items there are:
  inbox_entries  what waits, as light rows sorted by due time, counted and paged in SQL
                 (plans.inbox_waits: plans.authority's rules as filters, the layers a person lifts, the due
                 time): a page costs two queries however many waits there are. This is what a list pages.
  inbox_items    one page of entries in full: the plan with its account, steps and open layers, the
                 sentence of what it waits for (plans.why), the verbs allowed (plans.console, the same
                 buttons as the plan page) and the effect preview (plans.previews).
Reads only: every verb still goes through plans.services, which checks the same rules under the lock.
"""
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache, lru_cache
from uuid import UUID

from django.utils import timezone

from plans import console, inbox_waits, selectors, waits, why
from plans.authority import Subject, Verb, denial
from plans.due import InboxKind, sla_fingerprint
from plans.models import (
    FINISHED_STEP_STATUSES,
    PauseKind,
    PauseLayer,
    PlanStep,
    RevenuePlan,
    RiskLevel,
    Role,
)
from plans.previews import previews_for
from plans.services.common import plan_subject
from plans.services.layers import LIFTED_BY_RESUME, LIFTED_BY_VERB

# The pause layers a person lifts, with the verb that lifts each (plans.services.layers.LIFTED_BY_VERB).
# Not the kill switches nor the breaker: a switch is one deliberate decision that holds many plans (it is
# released on its own page, not plan by plan), and nobody lifts a breaker or the operator's global switch.
PERSON_LIFTED_LAYERS: dict[str, Verb] = {
    kind: Verb(LIFTED_BY_VERB[kind])
    for kind in (PauseKind.PERSON, PauseKind.POLICY, PauseKind.RETRY_LIMIT, PauseKind.APPROVAL_STALE,
                 PauseKind.OWNER_INACTIVE)
}

# The verbs whose "may" also depends on the plan's risk (a HIGH-risk plan needs a tenant admin: the gate).
_APPROVAL_VERBS = frozenset({Verb.APPROVE, Verb.REAPPROVE})

@dataclass(frozen=True)
class InboxEntry:
    """One thing waiting for the caller, as much as sorting and paging need."""

    kind: InboxKind
    plan_id: UUID
    step_id: UUID | None
    role: Role
    waiting_since: datetime
    due_at: datetime

    @property
    def sort_key(self) -> tuple:
        return self.due_at, self.waiting_since, str(self.plan_id), str(self.step_id or "")


@dataclass(frozen=True)
class InboxItem:
    kind: InboxKind
    plan: RevenuePlan
    step: PlanStep | None
    role: Role
    waiting_since: datetime
    due_at: datetime
    now: datetime
    waiting_for: str  # a sentence: what it waits for and who can act (plans.why)
    # API verb names, those that end the wait first, then abort: approve, reapprove, resume, approve_step,
    # skip_step, retry_step, transfer_account, abort.
    verbs: tuple[str, ...]
    # What approving lets happen: [{step_id, sequence, action_type, preview}], preview None without a describer.
    previews: list[dict] = field(default_factory=list)

    @property
    def age_seconds(self) -> int:
        return max(0, int((self.now - self.waiting_since).total_seconds()))

    @property
    def due_in_seconds(self) -> int:
        """Seconds until due; negative once overdue."""
        return int((self.due_at - self.now).total_seconds())

    @property
    def overdue(self) -> bool:
        return self.now >= self.due_at


# --- who may: plans.authority's rules, asked, not restated ------------------------------------------


def _may(verb: Verb, *, role: Role, user_id: int, subject: Subject, risk_level: str) -> bool:
    """Whether plans.authority lets `role`/`user_id` use `verb` on the plan `subject` describes (and, for an
    approval, whether a plan of `risk_level` allows this role: plans.why.approvers_of, the gate's rule)."""
    if denial(verb, role=role, user_id=user_id, subject=subject) is not None:
        return False
    return verb not in _APPROVAL_VERBS or risk_level in _approvable_risks(role)


def _may_on(verb: Verb, *, role: Role, user_id: int, plan: RevenuePlan) -> bool:
    return _may(verb, role=role, user_id=user_id, subject=plan_subject(plan), risk_level=plan.risk_level)


@cache
def _approvable_risks(role: Role) -> tuple[str, ...]:
    """The risk levels whose plans `role` may approve (plans.why.approvers_of: HIGH needs a tenant admin)."""
    return tuple(risk.value for risk in RiskLevel if role in why.approvers_of(RevenuePlan(risk_level=risk)))


def liftable_layers(layers: list, *, role: Role, user_id: int, subject: Subject, risk_level: str) -> list:
    """The open layers (PauseLayer rows) this person may lift now. A resume lifts PERSON and
    POLICY layers only when nothing else holds the plan (plans.services.pauses.plan_resume refuses
    otherwise), so those count only then."""
    resume_lifts_all = all(layer.kind in LIFTED_BY_RESUME for layer in layers)
    return [
        layer for layer in layers
        if layer.kind in PERSON_LIFTED_LAYERS and (layer.kind not in LIFTED_BY_RESUME or resume_lifts_all)
        and _may(PERSON_LIFTED_LAYERS[layer.kind], role=role, user_id=user_id, subject=subject, risk_level=risk_level)
    ]


def _liftable_on(plan: RevenuePlan, layers: list[PauseLayer], *, role: Role, user_id: int) -> list[PauseLayer]:
    return liftable_layers(layers, role=role, user_id=user_id, subject=plan_subject(plan), risk_level=plan.risk_level)


# --- phase 1: what waits, sorted -----------------------------------------------------------------------


class InboxEntries:
    """Everything waiting for `user` in their tenants (or in `tenant_id`), soonest due first (overdue first):
    counted and read a page at a time in SQL (plans.inbox_waits, over the rows plans.waits keeps): no wait
    is read into Python but the page's. A sequence: len(), `overdue`, slices (a query a page),
    iteration. `window`, the (offset, limit) the caller will read, is read with the counts: a page and its
    counts in one query. A VIEWER's is empty: plans.authority gives a viewer no verb that ends a wait."""

    def __init__(self, user, *, kinds: frozenset[InboxKind] | None = None, tenant_id: UUID | None = None,
                 now: datetime | None = None, window: tuple[int, int] | None = None):
        self.kinds = frozenset(InboxKind) if kinds is None else kinds
        self.now = now or timezone.now()
        self.window = window
        self.roles = {membership.tenant_id: Role(membership.role)
                      for membership in selectors.active_memberships(user)
                      if tenant_id is None or membership.tenant_id == tenant_id}
        waits.refresh(self.roles)  # what changed since the last read (one query when nothing did)
        self.branches = _waits_sql(user.pk, tuple(sorted(self.roles.items())), self.kinds, sla_fingerprint())
        self._pages: dict[tuple[int, int], list[InboxEntry]] = {}
        self._counts: tuple[int, int] | None = None

    def _page(self, offset: int, limit: int) -> list[InboxEntry]:
        if (offset, limit) not in self._pages:
            rows, total, overdue = inbox_waits.page(self.branches, kinds=sorted(self.kinds), offset=offset,
                                                    limit=limit, due_by=self.now)
            if self._counts is None:
                self._counts = (total, overdue)
            self._pages[(offset, limit)] = [
                InboxEntry(InboxKind(kind), plan_id, step_id, self.roles[tenant_id], since, due)
                for kind, plan_id, step_id, tenant_id, since, due in rows]
        return self._pages[(offset, limit)]

    def _counted(self) -> tuple[int, int]:
        """(all, overdue): with the window's page if there is one."""
        if self._counts is None and self.window is not None:
            self._page(*self.window)
        if self._counts is None:
            self._counts = inbox_waits.counts(self.branches, kinds=sorted(self.kinds), due_by=self.now)
        return self._counts

    def __len__(self) -> int:
        return self._counted()[0]

    def count(self) -> int:
        return len(self)

    @property
    def overdue(self) -> int:
        """How many are due at or before `now`."""
        return self._counted()[1]

    def __getitem__(self, index):
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("InboxEntries takes slices (a page), e.g. entries[0:50]")
        start = index.start or 0
        if index.stop is None or start < 0 or index.stop < 0:
            start, stop, _ = index.indices(len(self))
        else:
            stop = index.stop
        if self.window is not None and start == self.window[0] and stop - start <= self.window[1]:
            return self._page(*self.window)[:stop - start]  # the last page is asked for as far as the count
        return self._page(start, stop - start)

    def __iter__(self):
        return iter(self[0:len(self)])


@lru_cache(maxsize=256)  # ~16 KB of SQL each
def _waits_sql(user_id: int, roles: tuple[tuple[UUID, Role], ...], kinds: frozenset[InboxKind], due_key: str
               ) -> tuple[inbox_waits.Branch, ...]:
    """The parts of the UNION of what may wait for this user in these tenants with these roles, compiled once:
    building and compiling the queries costs more Python than running them. Keyed by the memberships read on
    each call and by the plan types' SLAs (`due_key`), so a changed role, tenant or SLA compiles anew."""
    roles_of = dict(roles)
    querysets = []
    if InboxKind.DRAFT_APPROVAL in kinds:
        querysets += inbox_waits.draft_waits(roles_of, user_id, approvable_risks=_approvable_risks, due_key=due_key)
    if InboxKind.STEP_APPROVAL in kinds:
        querysets += inbox_waits.step_waits(roles_of, user_id, due_key=due_key)
    if kinds & {InboxKind.APPROVAL_STALE, InboxKind.PAUSED}:
        querysets += inbox_waits.paused_waits(roles_of, user_id, lifted_layers=PERSON_LIFTED_LAYERS,
                                              approvable_risks=_approvable_risks)
    return inbox_waits.compiled(querysets)


def inbox_entries(user, *, kinds: frozenset[InboxKind] | None = None, tenant_id: UUID | None = None,
                  now: datetime | None = None, window: tuple[int, int] | None = None) -> InboxEntries:
    return InboxEntries(user, kinds=kinds, tenant_id=tenant_id, now=now, window=window)


def _failed_step_id(layers: list) -> UUID | None:
    """The step a RETRY_LIMIT layer names (its scope), for the step's retry and skip."""
    scoped = next((layer.scope for layer in layers if layer.kind == PauseKind.RETRY_LIMIT and layer.scope), None)
    return UUID(scoped) if scoped else None


# --- phase 2: a page of entries in full ----------------------------------------------------------------


def inbox_items(user, *, now: datetime, entries: list[InboxEntry] | None = None,
                kinds: frozenset[InboxKind] | None = None, tenant_id: UUID | None = None) -> list[InboxItem]:
    """`entries` (one page of inbox_entries; all of them when None) in full, in the same order, in a
    constant number of queries. An entry whose plan has gone from the user's sight since is left out."""
    if entries is None:
        entries = list(inbox_entries(user, kinds=kinds, tenant_id=tenant_id))
    if not entries:
        return []
    plans = {plan.id: plan for plan in selectors.plans_for_user(user).select_related("owner")
             .filter(id__in={entry.plan_id for entry in entries})}
    # What holds each plan, not why it exists: the creation entries are not read.
    answers = why.plans_why(list(plans.values()), now=now, exists=False)
    entries = [_with_failed_step(entry, plans[entry.plan_id], user) for entry in entries if entry.plan_id in plans]
    shown = {entry: _previewed_steps(entry, plans[entry.plan_id]) for entry in entries}
    previews = previews_for({step.step_id: step for steps in shown.values() for step in steps}.values())
    items = []
    for entry, steps in shown.items():
        plan = plans[entry.plan_id]
        step = next((step for step in plan.steps.all() if step.step_id == entry.step_id), None)
        items.append(InboxItem(
            kind=entry.kind, plan=plan, step=step, role=entry.role, waiting_since=entry.waiting_since,
            due_at=entry.due_at, now=now, waiting_for=_waiting_for(entry, plan, step, answers[plan.id], user),
            verbs=_verbs(entry, plan, step, user),
            previews=[{"step_id": shown_step.step_id, "sequence": shown_step.sequence,
                       "action_type": shown_step.action_type, "preview": previews.get(shown_step.step_id)}
                      for shown_step in steps],
        ))
    return items


def _with_failed_step(entry: InboxEntry, plan: RevenuePlan, user) -> InboxEntry:
    """A paused plan's entry with its failed step, when the layers the person may lift include the step's
    RETRY_LIMIT (to retry or skip it): the step comes from the plan's layers, read with the page."""
    if entry.kind not in (InboxKind.APPROVAL_STALE, InboxKind.PAUSED) or entry.step_id is not None:
        return entry
    step_id = _failed_step_id(_liftable_on(plan, _open_layers(plan), role=entry.role, user_id=user.pk))
    return replace(entry, step_id=step_id) if step_id else entry


def _previewed_steps(entry: InboxEntry, plan: RevenuePlan) -> list[PlanStep]:
    """What the person's verb lets happen: a plan's approval lets its unfinished steps run; a step's
    approval, retry or skip is about that step."""
    steps = sorted(plan.steps.all(), key=lambda step: step.sequence)
    if entry.step_id is not None:
        return [step for step in steps if step.step_id == entry.step_id]
    if entry.kind in (InboxKind.DRAFT_APPROVAL, InboxKind.APPROVAL_STALE):
        return [step for step in steps if step.status not in FINISHED_STEP_STATUSES]
    return []


def _open_layers(plan: RevenuePlan) -> list[PauseLayer]:
    return list(getattr(plan, selectors.OPEN_LAYERS))


def _waiting_for(entry: InboxEntry, plan: RevenuePlan, step: PlanStep | None, answer: why.PlanWhy, user) -> str:
    if entry.kind in (InboxKind.APPROVAL_STALE, InboxKind.PAUSED) and _open_layers(plan):
        layers = _liftable_on(plan, _open_layers(plan), role=entry.role, user_id=user.pk)
        return " ".join(why.layer_answer(plan, layer).sentence for layer in layers)
    wanted = {InboxKind.DRAFT_APPROVAL: "AWAITING_PLAN_APPROVAL"}.get(entry.kind)
    for candidate in [*answer.blocking, *answer.waiting]:
        if entry.kind == InboxKind.STEP_APPROVAL and step is not None and candidate.step_id == step.step_id:
            return candidate.sentence
        if wanted and candidate.wait and candidate.wait.code == wanted:
            return candidate.sentence
        if entry.kind == InboxKind.PAUSED and candidate.wait:
            return candidate.sentence
    return f"The {plan.plan_type} plan for {plan.account.name} waits for you."


def _verbs(entry: InboxEntry, plan: RevenuePlan, step: PlanStep | None, user) -> tuple[str, ...]:
    """The verbs that end this wait (as plans.console offers them on the plan page), then abort."""
    plan_verbs = console.plan_actions_for(user, plan, role=entry.role)
    step_verbs = [console.STEP_ACTIONS[name][0].value
                  for name in (console.step_actions_for(user, plan, step, role=entry.role) if step else [])]
    verbs: list[str] = []
    if entry.kind == InboxKind.DRAFT_APPROVAL:
        verbs += [verb for verb in ("approve",) if verb in plan_verbs]
    elif entry.kind == InboxKind.STEP_APPROVAL:
        verbs += step_verbs
    else:
        layers = _open_layers(plan)
        lifting = ([PERSON_LIFTED_LAYERS[layer.kind].value
                    for layer in _liftable_on(plan, layers, role=entry.role, user_id=user.pk)]
                   if layers else [Verb.RESUME.value])
        for verb in dict.fromkeys(lifting):
            if verb == Verb.RETRY_STEP.value:
                verbs += step_verbs
            elif verb == Verb.REAPPROVE.value:
                verbs += [verb] if verb in plan_verbs and plan.risk_level in _approvable_risks(entry.role) else []
            elif verb == Verb.TRANSFER_ACCOUNT.value:
                verbs += [verb] if _may_on(Verb.TRANSFER_ACCOUNT, role=entry.role, user_id=user.pk, plan=plan) else []
            elif verb in plan_verbs:
                verbs.append(verb)
    if "abort" in plan_verbs:
        verbs.append("abort")
    return tuple(dict.fromkeys(verbs))
