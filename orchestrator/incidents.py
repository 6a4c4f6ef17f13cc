"""Incidents: the plans a failing connector left PAUSED — a step failed at its retry limit (RETRY_LIMIT) or
the connector's circuit breaker held the plan (BREAKER) — grouped by (tenant, connector, action type,
failure class), and a tenant admin's bulk redrive of a group.

The redrive is the step retry verb (plans.services.step_retry) once per plan, each in its own transaction
with an INCIDENT_REDRIVEN entry after its STEP_RETRIED one, so every plan has its own result: one refused
(it moved meanwhile, it is held by a breaker) leaves the others retried. It is bounded: at most
REVPLAN_REDRIVE_MAX_PLANS plans a call, the longest paused first (the rest are `remaining`, for the next
call), and the API throttles the calls (the `incident_redrive` rate): a connector that just came back is
not handed every plan of a large outage at once. A plan held only by a BREAKER layer is not retried: no
step of it failed, and the breaker closing lifts the layer (a tenant admin can force it closed).
"""
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.db import transaction

from orchestrator.execution.models import ActionIntent
from plans import ledger, selectors, services
from plans.errors import DomainError, NotFound, ValidationFailed
from plans.models import PauseKind, PauseLayer, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.plan_types import get_action_type

logger = logging.getLogger(__name__)

INCIDENT_KINDS = (PauseKind.RETRY_LIMIT, PauseKind.BREAKER)
# The failure class of a plan a breaker holds: no attempt of its step failed, the connector did.
BREAKER_OPEN = "BREAKER_OPEN"
UNKNOWN = "UNKNOWN"
RETRIED, REFUSED = "RETRIED", "REFUSED"
HELD_BY_BREAKER = "HELD_BY_BREAKER"
# How many of a group's plans a listing names (the count is always whole).
LISTED_PLANS = 20


@dataclass(frozen=True)
class IncidentKey:
    connector: str
    action_type: str
    failure_class: str

    def as_dict(self) -> dict:
        return {"connector": self.connector, "action_type": self.action_type, "failure_class": self.failure_class}


@dataclass(frozen=True)
class IncidentPlan:
    plan_id: UUID
    account_name: str
    step_id: UUID | None
    step_sequence: int | None
    step_failed: bool
    pause_kind: str
    paused_at: datetime
    last_error: str


@dataclass
class IncidentGroup:
    tenant_id: UUID
    tenant_slug: str
    key: IncidentKey
    plans: list[IncidentPlan] = field(default_factory=list)  # the longest paused first

    @property
    def count(self) -> int:
        return len(self.plans)

    @property
    def pause_kinds(self) -> list[str]:
        return sorted({plan.pause_kind for plan in self.plans})


@dataclass(frozen=True)
class RedriveResult:
    plan_id: UUID
    step_id: UUID | None
    outcome: str  # RETRIED or REFUSED
    code: str
    detail: str
    plan_status: str


@dataclass(frozen=True)
class RedriveReport:
    batch_id: str
    tenant_slug: str
    key: IncidentKey
    count: int  # the group's plans when the redrive began
    results: list[RedriveResult]
    remaining: int  # left for another call (past REVPLAN_REDRIVE_MAX_PLANS)

    def counted(self, outcome: str) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)


def _step_of(layer: dict, steps: list[dict]) -> dict | None:
    """The step a layer holds its plan for: the one its scope names (RETRY_LIMIT; a breaker's, if it names
    one), else the plan's FAILED step (a RETRY_LIMIT layer from before layers named their step), else the
    next step to run (a BREAKER layer: the step that needs the connector)."""
    by_id = {str(step["step_id"]): step for step in steps}
    named = layer["scope"] or (layer["evidence"] or {}).get("step_id") or ""
    if named in by_id:
        return by_id[named]
    wanted = StepStatus.FAILED if layer["kind"] == PauseKind.RETRY_LIMIT else StepStatus.PENDING
    return next((step for step in sorted(steps, key=lambda s: s["sequence"]) if step["status"] == wanted), None)


def _key_of(layer: dict, step: dict | None, intent: dict | None) -> IncidentKey:
    evidence = layer["evidence"] or {}
    action_type = step["action_type"] if step else evidence.get("action_type", UNKNOWN)
    spec = get_action_type(action_type)
    connector = (intent or {}).get("connector") or evidence.get("connector") or (spec.connector if spec else UNKNOWN)
    if layer["kind"] == PauseKind.BREAKER:
        # A breaker's layer is scoped to its connector (orchestrator.breakers.plans.hold_plan).
        connector = layer["scope"] or connector
        failure_class = BREAKER_OPEN
    else:
        # The engine writes "<failure class>: <reason>" into last_error; the attempt's own column comes first.
        failure_class = ((intent or {}).get("failure_class")
                         or (step["last_error"].partition(":")[0].strip() if step and step["last_error"] else "")
                         or UNKNOWN)
    return IncidentKey(connector=connector, action_type=action_type, failure_class=failure_class)


def incident_groups(user) -> list[IncidentGroup]:
    """The incidents in the user's tenants (the one visibility rule), the largest group first. Three queries
    whatever the number of plans: the open layers, the plans' steps, each step's latest attempt."""
    layers = list(
        selectors.visible_to(PauseLayer.objects.all(), user, tenant_field="plan__tenant_id")
        .filter(kind__in=INCIDENT_KINDS, lifted_at__isnull=True, plan__plan_status=PlanStatus.PAUSED)
        .order_by("set_at", "id")
        .values("plan_id", "kind", "scope", "evidence", "set_at", "plan__tenant_id", "plan__tenant__slug",
                "plan__account__name")
    )
    if not layers:
        return []
    plan_ids = sorted({layer["plan_id"] for layer in layers}, key=str)
    steps_by_plan = defaultdict(list)
    for step in PlanStep.objects.filter(plan_id__in=plan_ids).values(
            "plan_id", "step_id", "action_type", "status", "sequence", "last_error"):
        steps_by_plan[step["plan_id"]].append(step)
    # Each step's latest attempt (PostgreSQL's DISTINCT ON): its connector and failure class.
    latest_intents = {
        (intent["plan_id"], intent["step_id"]): intent
        for intent in ActionIntent.objects.filter(plan_id__in=plan_ids)
        .order_by("plan_id", "step_id", "-attempt").distinct("plan_id", "step_id")
        .values("plan_id", "step_id", "connector", "failure_class")
    }
    groups: dict[tuple, IncidentGroup] = {}
    seen_plans = set()
    # RETRY_LIMIT before BREAKER: a plan held by both is in the group a retry can clear, and only there.
    for layer in sorted(layers, key=lambda layer: layer["kind"] != PauseKind.RETRY_LIMIT):
        if layer["plan_id"] in seen_plans:
            continue
        seen_plans.add(layer["plan_id"])
        step = _step_of(layer, steps_by_plan[layer["plan_id"]])
        intent = latest_intents.get((layer["plan_id"], step["step_id"])) if step else None
        key = _key_of(layer, step, intent)
        group = groups.setdefault((layer["plan__tenant_id"], key), IncidentGroup(
            tenant_id=layer["plan__tenant_id"], tenant_slug=layer["plan__tenant__slug"], key=key))
        group.plans.append(IncidentPlan(
            plan_id=layer["plan_id"], account_name=layer["plan__account__name"],
            step_id=step["step_id"] if step else None, step_sequence=step["sequence"] if step else None,
            step_failed=bool(step and step["status"] == StepStatus.FAILED), pause_kind=layer["kind"],
            paused_at=layer["set_at"], last_error=step["last_error"] if step else ""))
    for group in groups.values():
        group.plans.sort(key=lambda plan: (plan.paused_at, str(plan.plan_id)))
    return sorted(groups.values(), key=lambda group: (-group.count, group.tenant_slug, group.key.connector,
                                                      group.key.action_type, group.key.failure_class))


def _group_for_redrive(user, key: IncidentKey, tenant_slug: str | None) -> IncidentGroup:
    matching = [group for group in incident_groups(user)
                if group.key == key and (tenant_slug is None or group.tenant_slug == tenant_slug)]
    if not matching:
        # Also what another tenant's incident is: it does not exist for this user.
        raise NotFound("NOT_FOUND", f"No incident {key.connector} / {key.action_type} / {key.failure_class}"
                                    + (f" in {tenant_slug}" if tenant_slug else "") + " holds a plan now.")
    administered = [group for group in matching if _is_admin(user, group.tenant_id)]
    if not administered:
        services.require_admin(user=user, tenant_id=matching[0].tenant_id)  # raises: says why
    if len(administered) > 1:
        raise ValidationFailed("VALIDATION_ERROR", "The incident is in more than one of your tenants: name the "
                                                   "tenant to redrive.")
    return administered[0]


def _is_admin(user, tenant_id) -> bool:
    try:
        services.require_admin(user=user, tenant_id=tenant_id)
    except DomainError:
        return False
    return True


def incident_redrive(*, user, key: IncidentKey, tenant_slug: str | None = None, reason: str = "") -> RedriveReport:
    """Retry the failed step of each plan in the incident group (a TENANT_ADMIN of its tenant), the longest
    paused first, at most REVPLAN_REDRIVE_MAX_PLANS of them; a result per plan."""
    group = _group_for_redrive(user, key, tenant_slug)
    batch_id = uuid.uuid4().hex[:12]
    reason = reason.strip()
    limit = settings.REVPLAN_REDRIVE_MAX_PLANS
    actor = ledger.user_actor(user)
    results = [_redrive_one(member, user=user, key=key, actor=actor, batch_id=batch_id, reason=reason)
               for member in group.plans[:limit]]
    logger.info("incident redriven", extra={"batch_id": batch_id, "tenant": group.tenant_slug, **key.as_dict(),
                                            "retried": sum(1 for r in results if r.outcome == RETRIED),
                                            "refused": sum(1 for r in results if r.outcome == REFUSED)})
    return RedriveReport(batch_id=batch_id, tenant_slug=group.tenant_slug, key=key, count=group.count,
                         results=results, remaining=max(0, group.count - limit))


def _redrive_one(member: IncidentPlan, *, user, key: IncidentKey, actor: str, batch_id: str,
                 reason: str) -> RedriveResult:
    if not member.step_failed:
        return RedriveResult(member.plan_id, member.step_id, REFUSED, HELD_BY_BREAKER,
                             "No step of the plan failed: the connector's circuit breaker holds it, and it runs "
                             "again when the breaker closes (a tenant admin can force it closed).", PlanStatus.PAUSED)
    why = reason or f"incident {key.connector} / {key.action_type} / {key.failure_class} redriven"
    try:
        with transaction.atomic():
            plan = services.step_retry(plan_id=member.plan_id, step_id=member.step_id, user=user, reason=why)
            ledger.incident_redriven(plan, step_id=member.step_id, actor=actor, incident=key.as_dict(),
                                     batch_id=batch_id, reason=reason)
    except DomainError as refused:
        logger.info("incident plan not redriven", extra={"plan_id": str(member.plan_id), "batch_id": batch_id,
                                                         "step_id": str(member.step_id), "code": refused.code})
        status = RevenuePlan.objects.filter(pk=member.plan_id).values_list("plan_status", flat=True).first()
        return RedriveResult(member.plan_id, member.step_id, REFUSED, refused.code, refused.detail, status or "")
    logger.info("incident plan redriven", extra={"plan_id": str(plan.id), "step_id": str(member.step_id),
                                                 "batch_id": batch_id})
    return RedriveResult(plan.id, member.step_id, RETRIED, "STEP_RETRIED",
                         f"Step {member.step_sequence + 1} ({key.action_type}) is retried.", plan.plan_status)
