"""What waits for a person now, in every tenant (or one): the inbox's four kinds of wait, not per user but per
plan, each with when it began and its deadlines (rules.deadlines_of). Four queries whatever the number of
items; with `due_soon_only` the DRAFTs and steps that cannot be due soon yet are left out in SQL.

The kinds, their start times and which pause layers a person lifts are plans.inbox's (InboxKind,
PERSON_LIFTED_LAYERS); this reads them for all users at once, the inbox for one.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from uuid import UUID

from django.db.models import Q

from orchestrator.deadlines.rules import Deadlines, deadlines_of, earliest_reminder_lead, renewal_horizon
from plans.authority import Subject, Verb
from plans.inbox import PERSON_LIFTED_LAYERS, InboxKind
from plans.models import (
    PauseKind,
    PauseLayer,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from plans.services.layers import LIFTED_BY_RESUME
from plans.waits import step_waiting_since

# What is read of a plan: enough for plans.authority's Subject, the recipients, the rules and the mail.
_PLAN_VALUES = ("id", "tenant_id", "plan_type", "risk_level", "created_by", "edited_by_since_approval", "owner_id",
                "account__owner_id", "account__name", "account__renewal_date")


@dataclass(frozen=True)
class WaitingItem:
    kind: InboxKind
    tenant_id: UUID
    plan_id: UUID
    step_id: UUID | None
    plan_type: str
    risk_level: str
    account_name: str
    subject: Subject
    waiting_since: datetime
    deadlines: Deadlines
    verbs: tuple[Verb, ...]  # the verbs that end the wait (plans.authority says who may use them)
    what: str = ""  # the step's action type, or the layers that hold the plan
    step_required: bool = False

    @cached_property  # read several times per item and run, at 10,000 items it shows
    def key(self) -> str:
        """The wait's identity: a wait that ends and begins again is a new item."""
        return f"{self.kind}:{self.plan_id}:{self.step_id or '-'}:{self.waiting_since.isoformat()}"

    def overdue(self, now: datetime) -> bool:
        return now >= self.deadlines.due_at

    def as_dict(self) -> dict:
        return {"item_key": self.key, "kind": self.kind.value, "plan_id": str(self.plan_id),
                "step_id": str(self.step_id) if self.step_id else None, "plan_type": self.plan_type,
                "account": self.account_name, "what": self.what, "waiting_since": self.waiting_since.isoformat(),
                "due_at": self.deadlines.due_at.isoformat(), "final_at": self.deadlines.final_at.isoformat()}


def _item(kind: InboxKind, row: tuple, *, since: datetime, verbs: tuple[Verb, ...], step_id: UUID | None = None,
          what: str = "", step_required: bool = False) -> WaitingItem:
    (plan_id, tenant_id, plan_type, risk_level, created_by, editors, owner_id, account_owner_id, account_name,
     renewal_date) = row[:10]
    return WaitingItem(
        kind=kind, tenant_id=tenant_id, plan_id=plan_id, step_id=step_id, plan_type=plan_type, risk_level=risk_level,
        account_name=account_name,
        subject=Subject(account_owner_id=account_owner_id, plan_owner_id=owner_id, plan_created_by=created_by,
                        plan_editors=frozenset(editors or ())),
        waiting_since=since, deadlines=deadlines_of(kind, plan_type, since, renewal_date), verbs=verbs, what=what,
        step_required=step_required)


def _may_be_due(kind: InboxKind, *, now: datetime, since: str, renewal: str) -> Q:
    """Items of `kind` that may be due soon: waiting long enough for some plan type's reminder, or whose
    account renews soon enough for the renewal cut-off to bring them forward."""
    wanted = Q(**{f"{since}__lte": now - earliest_reminder_lead(kind)})
    horizon = renewal_horizon(kind)
    if horizon is not None:
        wanted |= Q(**{f"{renewal}__lte": (now + timedelta(days=horizon)).date()})
    return wanted


def waiting_items(*, now: datetime, tenant_id: UUID | None = None, due_soon_only: bool = True) -> list[WaitingItem]:
    """Every wait for a person (in `tenant_id`'s plans, or all), soonest due first."""
    items = [*_drafts(now, tenant_id, due_soon_only), *_steps(now, tenant_id, due_soon_only), *_paused(tenant_id)]
    return sorted(items, key=lambda item: (item.deadlines.due_at, item.key))


def _in_tenant(tenant_id: UUID | None, prefix: str = "") -> Q:
    return Q(**{f"{prefix}tenant_id": tenant_id}) if tenant_id else Q()


def _drafts(now: datetime, tenant_id: UUID | None, due_soon_only: bool) -> list[WaitingItem]:
    drafts = RevenuePlan.objects.filter(_in_tenant(tenant_id), plan_status=PlanStatus.DRAFT)
    if due_soon_only:
        drafts = drafts.filter(_may_be_due(InboxKind.DRAFT_APPROVAL, now=now, since="updated_at",
                                           renewal="account__renewal_date"))
    # A DRAFT waits since it was proposed or last changed (the inbox's rule): updated_at.
    return [_item(InboxKind.DRAFT_APPROVAL, row, since=row[-1], verbs=(Verb.APPROVE,))
            for row in drafts.values_list(*_PLAN_VALUES, "updated_at")]


def _steps(now: datetime, tenant_id: UUID | None, due_soon_only: bool) -> list[WaitingItem]:
    steps = (PlanStep.objects.filter(_in_tenant(tenant_id, "plan__"), status=StepStatus.PENDING_APPROVAL,
                                     plan__plan_status=PlanStatus.ACTIVE)
             .annotate(waiting_since=step_waiting_since()))
    if due_soon_only:
        steps = steps.filter(_may_be_due(InboxKind.STEP_APPROVAL, now=now, since="waiting_since",
                                         renewal="plan__account__renewal_date"))
    rows = steps.order_by().values_list(*(f"plan__{name}" for name in _PLAN_VALUES), "step_id", "action_type",
                                        "required", "waiting_since")
    return [_item(InboxKind.STEP_APPROVAL, row, since=row[-1], verbs=(Verb.APPROVE_STEP,), step_id=row[-4],
                  what=row[-3], step_required=row[-2]) for row in rows]


def counted_layers(kinds: list[str]) -> list[str]:
    """The open layers (kinds) a person's verb lifts now. A resume lifts PERSON and POLICY layers only when
    nothing else holds the plan (plans.services.pauses.plan_resume), so those count only then; a kill switch
    or a breaker is no person's wait (the inbox's rule, plans.inbox.liftable_layers)."""
    resume_lifts_all = all(kind in LIFTED_BY_RESUME for kind in kinds)
    return [kind for kind in kinds if kind in PERSON_LIFTED_LAYERS
            and (kind not in LIFTED_BY_RESUME or resume_lifts_all)]


def paused_wait(layers: list[tuple[str, datetime]], paused_since: datetime
                ) -> tuple[InboxKind, datetime, tuple[Verb, ...]] | None:
    """A PAUSED plan's wait for a person from its open layers [(kind, set_at)]: its kind, since when, the
    verbs; None when only a switch or a breaker holds it."""
    if not layers:
        # PAUSED before the layers existed: its stop reason holds it until a resume (plans.why.blocking).
        return InboxKind.PAUSED, paused_since, (Verb.RESUME,)
    counted = set(counted_layers([kind for kind, _ in layers]))
    if not counted:
        return None
    kind = InboxKind.APPROVAL_STALE if PauseKind.APPROVAL_STALE in counted else InboxKind.PAUSED
    since = min(set_at for layer_kind, set_at in layers if layer_kind in counted)
    return kind, since, tuple(dict.fromkeys(PERSON_LIFTED_LAYERS[layer_kind] for layer_kind in sorted(counted)))


def _paused(tenant_id: UUID | None) -> list[WaitingItem]:
    paused = RevenuePlan.objects.filter(_in_tenant(tenant_id), plan_status=PlanStatus.PAUSED)
    layers: dict[UUID, list[tuple[str, datetime]]] = {}
    for plan_id, kind, set_at in (PauseLayer.objects.filter(plan_id__in=paused.values("id"), lifted_at__isnull=True)
                                  .order_by("set_at", "id").values_list("plan_id", "kind", "set_at")):
        layers.setdefault(plan_id, []).append((kind, set_at))
    items = []
    for row in paused.values_list(*_PLAN_VALUES, "paused_at", "updated_at"):
        plan_layers = layers.get(row[0], [])
        wait = paused_wait(plan_layers, row[-2] or row[-1])
        if wait is not None:
            kind, since, verbs = wait
            items.append(_item(kind, row, since=since, verbs=verbs,
                               what=", ".join(sorted({layer_kind for layer_kind, _ in plan_layers})) or "PAUSED"))
    return items
