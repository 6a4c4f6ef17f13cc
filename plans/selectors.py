"""Reads that are more than one ORM call: memberships, the facts the gate and evaluator need."""
import functools
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import uuid4

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.contrib.postgres.fields import ArrayField
from django.db.models import (
    CharField,
    Count,
    DateTimeField,
    Exists,
    Expression,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    UUIDField,
    Value,
)
from django.utils import timezone

from plans.errors import NotFound
from plans.evaluator import SignalFact
from plans.lifecycle import NON_TERMINAL
from plans.models import (
    Account,
    AccountSignal,
    KillSwitch,
    Membership,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    Role,
    Tenant,
)
from plans.plan_types import get_plan_type_config, plan_type_config_for
from plans.policy import GateFacts
from revplan.compiled import CompiledQuery, InArray

# --- the one tenant-visibility rule: a user sees the tenants they are an active member of -------------


def active_memberships(user) -> QuerySet[Membership]:
    """The user's active memberships (none for an anonymous or missing user)."""
    if user is None or not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user, is_active=True)


def visible_tenant_ids(user) -> QuerySet:
    """A subquery of the tenants the user is an active member of (never evaluated on its own)."""
    return active_memberships(user).values("tenant_id")


def visible_to(queryset: QuerySet, user, *, tenant_field: str = "tenant_id") -> QuerySet:
    """`queryset` narrowed to the user's tenants: every API view, admin page and export reads through this.

    `tenant_field` is the lookup from the queryset's model to its tenant id (`"id"` for Tenant itself).
    """
    return queryset.filter(**{f"{tenant_field}__in": visible_tenant_ids(user)})


def membership_for(user, tenant_id) -> Membership | None:
    return active_memberships(user).filter(tenant_id=tenant_id).first()


def engaged_switches_of(tenant_ref) -> ArraySubquery:
    """The engaged switches' action types of the tenant `tenant_ref` names (an OuterRef), as a column: for
    the reads that fetch them with something else in one query."""
    return ArraySubquery(KillSwitch.objects.filter(tenant_id=tenant_ref, engaged=True).values("action_type"))


def engaged_kill_switches(tenant_id) -> frozenset[str]:
    """The action types whose switch is on for the tenant ('' = the tenant-wide one), in one query."""
    return frozenset(KillSwitch.objects.filter(tenant_id=tenant_id, engaged=True).values_list("action_type", flat=True))


def killed_by(engaged: frozenset[str], action_type: str = "") -> str:
    """'' when execution may run, else which switch stops it (the global one first, then the tenant's)."""
    if settings.REVPLAN_EXECUTION_DISABLED:
        return "global kill switch REVPLAN_EXECUTION_DISABLED"
    if "" in engaged:
        return "tenant kill switch"
    return f"kill switch for {action_type}" if action_type and action_type in engaged else ""


def execution_killed_by(tenant_id, action_type: str = "") -> str:
    """'' when execution may run, else which switch stops it."""
    if settings.REVPLAN_EXECUTION_DISABLED:
        return killed_by(frozenset())
    return killed_by(engaged_kill_switches(tenant_id), action_type)


# Which other plans of the type conflict (DESIGN §3.5): an approval, and a PAUSED plan's resume, are
# refused while another is APPROVED or ACTIVE; the orchestrator's activation re-check looks at ACTIVE ones
# (a plan approved before the rule came in may still wait APPROVED behind an ACTIVE one).
CONFLICTS_AT_APPROVAL = frozenset({PlanStatus.APPROVED, PlanStatus.ACTIVE})
CONFLICTS_AT_ACTIVATION = frozenset({PlanStatus.ACTIVE})


def owner_is_active_member(user_id: int | None, tenant_id) -> QuerySet[Membership]:
    """The owner's active membership that may own accounts (a queryset: .exists(), or Exists() in a query).
    A user whose login is disabled owns nothing actively either."""
    return Membership.objects.filter(user_id=user_id, tenant_id=tenant_id, is_active=True,
                                     user__is_active=True).exclude(role=Role.VIEWER)


def gate_facts(plan: RevenuePlan, *, now: datetime, approver_role: Role | None = None,
               engaged_switches: frozenset[str] | None = None, owner_active: bool | None = None,
               conflicts_with: frozenset[str] = CONFLICTS_AT_ACTIVATION) -> GateFacts:
    """`engaged_switches`, `owner_active`: the tenant's engaged kill switches and whether the owner is an
    active member, when the caller has just read them (advance_facts).
    `conflicts_with`: the statuses of another plan of the type that conflict with this one."""
    if owner_active is None:
        owner_active = plan.owner_id is not None and owner_is_active_member(plan.owner_id, plan.tenant_id).exists()
    read = plan.__dict__.pop(_CONFLICT_READ_WITH_LOCKS, None) if conflicts_with == CONFLICTS_AT_ACTIVATION else None
    if read is not None:
        conflicting = read if read[0] is not None else None
    else:
        conflicting = _conflicting_plan(conflicts_with).first(account_id=plan.account_id, plan_type=plan.plan_type,
                                                              plan_id=plan.pk)
    conflicting_plan_id, conflicting_status = conflicting or (None, PlanStatus.ACTIVE)
    return GateFacts(
        now=now,
        approver_role=approver_role,
        execution_killed_by=(
            execution_killed_by(plan.tenant_id) if engaged_switches is None else killed_by(engaged_switches)
        ),
        owner_is_active_member=owner_active,
        conflicting_plan_id=conflicting_plan_id,
        conflicting_plan_status=conflicting_status,
    )


@functools.cache
def _conflicting_plan(conflicts_with: frozenset[str]) -> CompiledQuery:
    """Another plan of the account and type in one of these statuses (read by every activation: compiled)."""
    return CompiledQuery(
        lambda account_id, plan_type, plan_id: RevenuePlan.objects.filter(
            account_id=account_id, plan_type=plan_type, plan_status__in=sorted(conflicts_with))
        .exclude(pk=plan_id)
        .order_by("plan_status")  # ACTIVE before APPROVED: name the one that runs
        .values_list("id", "plan_status")[:1],
        account_id=uuid4(), plan_type="(a plan type)", plan_id=uuid4(),
    )


_PLAN_STATUS_AND_SWITCHES = CompiledQuery(
    lambda plan_id: RevenuePlan.objects.filter(pk=plan_id).values_list(
        "plan_status", engaged_switches_of(OuterRef("tenant_id")))[:1],
    plan_id=uuid4(),
)


def plan_status_and_switches(plan_id) -> tuple[str | None, frozenset[str]]:
    """The plan's status and its tenant's engaged kill switches, in one query (compiled once): what a step
    created claimed is checked against after its commit, before its first try (None: no such plan)."""
    row = _PLAN_STATUS_AND_SWITCHES.first(plan_id=plan_id)
    return (row[0], frozenset(row[1])) if row else (None, frozenset())


_PLAN_STEPS = CompiledQuery(lambda plan_id: PlanStep.objects.filter(plan_id=plan_id), plan_id=uuid4())


def plan_steps(plan: RevenuePlan) -> list[PlanStep]:
    """plan.steps.all() (in sequence order, each step's `plan` the one given), compiled once: the engine reads
    a plan's steps on every advance and every outcome."""
    steps = _PLAN_STEPS.all(plan_id=plan.pk)
    for step in steps:
        step.plan = plan
    return steps


def steps_of_plans(plans: list[RevenuePlan]) -> dict:
    """plan_steps of several plans in one read: {plan id: its steps in sequence order}."""
    by_id = {plan.pk: plan for plan in plans}
    steps: dict = {plan.pk: [] for plan in plans}
    for step in PlanStep.objects.filter(plan_id__in=list(by_id)).order_by("plan_id", "sequence"):
        step.plan = by_id[step.plan_id]
        steps[step.plan_id].append(step)
    return steps


class AdvanceFacts(NamedTuple):
    switches: frozenset[str]
    owner_active: bool
    objective_signals: list[SignalFact]


def advance_facts(plan: RevenuePlan) -> AdvanceFacts:
    """The tenant's engaged kill switches, whether the plan's owner is an active member who may own
    accounts, and the account's signals that may meet the plan's objective (objective_signals), in one
    query: what the orchestrator needs before it evaluates the plan and starts its steps. A plan read by
    lock_plan_with_facts carries them, read with its lock: the first advance after it takes those."""
    read_with_lock = plan.__dict__.pop(_FACTS_READ_WITH_LOCK, None)
    if read_with_lock is not None:
        return _facts_of_row(read_with_lock)
    signal_types = _objective_signal_types(plan)
    row = _advance_facts_query(signal_types, has_owner=plan.owner_id is not None).first(
        tenant_id=plan.tenant_id, account_id=plan.account_id, owner_id=plan.owner_id or 0)
    return _facts_of_row(row) if row is not None else AdvanceFacts(frozenset(), False, [])


def read_facts_of_plans(plans: list[RevenuePlan], *, also: Mapping[str, Expression] | None = None) -> None:
    """advance_facts of each of `plans`, whose rows (and accounts) the caller has locked, and the plan at
    activation conflicts with (gate_facts), read in one statement per set of objective signal types (a batch's
    plans are mostly of one type): a batched advance reads them once, not two reads a plan. Read after the locks,
    they are as the lock holders before committed them. `also`: the caller's own columns over each plan's row (as
    for annotate; the same ones for the same names), which each plan then carries as attributes of those names.
    The first advance_facts (and activation gate_facts) of each plan takes what was read."""
    by_objective: dict[tuple[str, ...], list[RevenuePlan]] = {}
    for plan in plans:
        by_objective.setdefault(_objective_signal_types(plan), []).append(plan)
    names = tuple(also or {})
    # Two plans of one account and type in the batch: the first's activation, later in this transaction, is the
    # other's conflict, which this read cannot see — that one reads its conflict when it activates.
    of_account_and_type = Counter((plan.account_id, plan.plan_type) for plan in plans)
    for signal_types, of_type in by_objective.items():
        by_id = {plan.pk: plan for plan in of_type}
        for row in _facts_of_plans_query(signal_types, also or {}).all(plan_ids=list(by_id)):
            plan, facts_end = by_id[row[0]], 1 + len(_FACTS_COLUMNS)
            plan.__dict__[_FACTS_READ_WITH_LOCK] = row[1:facts_end]
            if of_account_and_type[plan.account_id, plan.plan_type] == 1:
                plan.__dict__[_CONFLICT_READ_WITH_LOCKS] = row[facts_end:facts_end + 2]
            plan.__dict__.update(zip(names, row[facts_end + 2:], strict=True))


_CONFLICT_READ_WITH_LOCKS = "_activation_conflict_read_with_locks"
_FACTS_OF_PLANS: dict[tuple, CompiledQuery] = {}


def _facts_of_plans_query(signal_types: tuple[str, ...], also: Mapping[str, Expression]) -> CompiledQuery:
    """read_facts_of_plans' read, compiled once per objective and set of column names."""
    key = (signal_types, tuple(sorted(also)))
    if key not in _FACTS_OF_PLANS:
        columns = _facts_columns(signal_types, tenant=OuterRef("tenant_id"), owner=OuterRef("owner_id"),
                                 account=OuterRef("account_id"))
        conflicting = (RevenuePlan.objects.filter(account_id=OuterRef("account_id"), plan_type=OuterRef("plan_type"),
                                                  plan_status__in=sorted(CONFLICTS_AT_ACTIVATION))
                       .exclude(pk=OuterRef("pk")).order_by("plan_status"))
        _FACTS_OF_PLANS[key] = CompiledQuery(
            lambda plan_ids: RevenuePlan.objects.filter(InArray("pk", plan_ids, UUIDField()))
            .annotate(**dict(zip(_FACTS_COLUMNS, columns, strict=True)),
                      conflicting_id=Subquery(conflicting.values("id")[:1]),
                      conflicting_status=Subquery(conflicting.values("plan_status")[:1]), **also)
            .values_list("pk", *_FACTS_COLUMNS, "conflicting_id", "conflicting_status", *also),
            plan_ids=[uuid4()],
        )
    return _FACTS_OF_PLANS[key]


def lock_plan_with_facts(plan_id, *, like: RevenuePlan, also: Mapping[str, Expression] | None = None) -> RevenuePlan:
    """plans.locking.lock_plan, the plan's advance_facts read in the same statement (a step's outcome is
    recorded and its plan advanced under this lock: a round trip less per step). `like`: the plan as read
    before (its type and version name the objective signals to read); should the locked plan run on another
    version now, its facts are read apart, as for any plan. `also`: the caller's own columns (expressions
    over the plan's row, as for annotate; the same ones for the same names: compiled once), which the plan
    carries as attributes of those names, as an annotation's."""
    signal_types = _objective_signal_types(like)
    plan = _lock_with_facts_query(signal_types, also or {}).first(plan_id=plan_id)
    if plan is None:
        raise NotFound("NOT_FOUND", f"Plan {plan_id} does not exist.")
    facts = tuple(plan.__dict__.pop(name) for name in _FACTS_COLUMNS)
    # The facts are as the statement's snapshot saw them, taken before it waited for the lock, if it did: what
    # the holder committed meanwhile is not in them. A signal that may meet the plan's objective is committed
    # with the plan's wake-up (services.signals.plans_wake: next_run_at now, under this lock), so a plan due
    # already has its facts read afresh; a plan not due was woken by nobody. (A kill switch or a membership
    # changed meanwhile is as if changed a moment later: the check before the step's first try reads them again.)
    not_woken = plan.next_run_at is not None and plan.next_run_at > timezone.now()
    if not_woken and _objective_signal_types(plan) == signal_types:
        plan.__dict__[_FACTS_READ_WITH_LOCK] = facts
    return plan


_FACTS_READ_WITH_LOCK = "_advance_facts_read_with_lock"
_FACTS_COLUMNS = ("facts_switches", "facts_owner_active", "facts_signal_types", "facts_observed_at")


def _objective_signal_types(plan) -> tuple[str, ...]:
    config = plan_type_config_for(plan)
    return tuple(config.objective_signal_types) if config else ()


def _facts_of_row(row) -> AdvanceFacts:
    switches, owner_active, signal_types, observed = row
    return AdvanceFacts(frozenset(switches), bool(owner_active),
                        [SignalFact(signal_type, at) for signal_type, at in zip(signal_types, observed, strict=True)])


def _facts_columns(signal_types: tuple[str, ...], *, tenant, owner, account) -> tuple:
    """advance_facts' columns: the switches, the owner's membership (`owner` None: the plan has none) and the
    objective signals of the tenant, owner and account these name (values or OuterRefs)."""
    if signal_types:
        signals = AccountSignal.objects.filter(account_id=account, signal_type__in=signal_types).order_by("id")
        objective = (ArraySubquery(signals.values("signal_type")), ArraySubquery(signals.values("observed_at")))
    else:  # a plan type or version this deploy does not know (the gate refuses it): no objective to read
        objective = (Value([], output_field=ArrayField(CharField())),
                     Value([], output_field=ArrayField(DateTimeField())))
    owner_active = Exists(owner_is_active_member(owner, tenant)) if owner is not None else Value(False)
    return engaged_switches_of(tenant), owner_active, *objective


@functools.cache
def _advance_facts_query(signal_types: tuple[str, ...], *, has_owner: bool) -> CompiledQuery:
    """advance_facts' read for a plan type's objective signals, compiled once (a read of every advance)."""
    def build(tenant_id, account_id=None, owner_id=None):
        return Tenant.objects.filter(pk=tenant_id).values_list(*_facts_columns(
            signal_types, tenant=OuterRef("pk"), owner=owner_id if has_owner else None, account=account_id))[:1]
    # A plan without an owner compiles no owner_id, one without objective signals no account_id.
    return CompiledQuery(build, tenant_id=uuid4(), **({"account_id": uuid4()} if signal_types else {}),
                         **({"owner_id": 987_654_321} if has_owner else {}))


_LOCK_WITH_FACTS: dict[tuple, CompiledQuery] = {}


def _lock_with_facts_query(signal_types: tuple[str, ...], also: Mapping[str, Expression]) -> CompiledQuery:
    """lock_plan's read (plans.locking) with the facts of the locked row's own tenant, owner and account, and
    the caller's columns; one per objective and set of column names."""
    key = (signal_types, tuple(sorted(also)))
    if key not in _LOCK_WITH_FACTS:
        columns = _facts_columns(signal_types, tenant=OuterRef("tenant_id"), owner=OuterRef("owner_id"),
                                 account=OuterRef("account_id"))
        _LOCK_WITH_FACTS[key] = CompiledQuery(
            lambda plan_id: RevenuePlan.objects.select_for_update(of=("self",)).select_related("account__owner")
            .annotate(**dict(zip(_FACTS_COLUMNS, columns, strict=True)), **also).filter(pk=plan_id)[:1],
            plan_id=uuid4(),
        )
    return _LOCK_WITH_FACTS[key]


# --- API reads: every one is scoped to the caller's tenants ------------------------------------


# Where open_layers_prefetch puts each plan's open pause layers (oldest first), for reads: the writers
# read a plan's layers afresh under its lock (plans.services.layers.open_layers).
OPEN_LAYERS = "open_pause_layers"


def open_layers_prefetch() -> Prefetch:
    return Prefetch("pause_layers", queryset=PauseLayer.objects.filter(lifted_at__isnull=True).order_by("set_at", "id"),
                    to_attr=OPEN_LAYERS)


def release_page(plans) -> None:
    """Cut the links between a page's plans and what was read with them (a step's plan, a plan's steps and open
    layers) once the page is written, so reference counting frees them at once. Left as cycles, a page of 50
    plans (~2,500 objects) waited for the garbage collector's full pass: ~35 ms every ten or so requests, the
    lists' p95. The plans still work afterwards; a relation asked for again is read again."""
    for plan in plans:
        for related in (*getattr(plan, "_prefetched_objects_cache", {}).values(), getattr(plan, OPEN_LAYERS, ())):
            for row in related:
                row._state.fields_cache.clear()
        plan._prefetched_objects_cache = {}
        plan.__dict__.pop(OPEN_LAYERS, None)


def plans_for_user(user) -> QuerySet[RevenuePlan]:
    """The caller's tenants' plans, newest first, with their account (its renewal date is one of an
    approval's facts), their steps and their open pause layers (one extra query a page each)."""
    return (
        visible_to(RevenuePlan.objects.all(), user)
        .select_related("account")
        .prefetch_related("steps", open_layers_prefetch())
        .order_by("-created_at", "id")
    )


def visible_tenant_id_list(user) -> list:
    """The user's tenants (visible_tenant_ids), read now as values: for a list page ordered by an index led by
    the tenant, which PostgreSQL walks in order only for a tenant id it knows (with the subquery it sorts every
    visible row for each page)."""
    return list(visible_tenant_ids(user).order_by("tenant_id").values_list("tenant_id", flat=True))


def plan_list_for_user(user) -> QuerySet[RevenuePlan]:
    """plans_for_user for a list page (newest first): in one tenant, each ordering the API offers reads only the
    page's rows from its index (RevenuePlan.Meta.indexes), however many plans the tenant has."""
    return (
        RevenuePlan.objects.filter(tenant_id__in=visible_tenant_id_list(user))
        .select_related("account")
        .prefetch_related("steps", open_layers_prefetch())
        .order_by("-created_at", "-id")
    )


def plan_for_user(user, plan_id) -> RevenuePlan:
    """One plan with its steps; another tenant's plan does not exist for this user."""
    plan = plans_for_user(user).filter(pk=plan_id).first()
    if plan is None:
        raise NotFound("NOT_FOUND", "The plan does not exist.")
    return plan


def accounts_for_user(user) -> QuerySet[Account]:
    """The caller's tenants' accounts, by name, each with how many of its plans are still open."""
    return (
        visible_to(Account.objects.all(), user)
        .annotate(open_plan_count=Count("plans", filter=Q(plans__plan_status__in=list(NON_TERMINAL))))
        .order_by("name", "id")
    )


def account_for_user(user, account_id) -> Account:
    account = accounts_for_user(user).filter(pk=account_id).first()
    if account is None:
        raise NotFound("NOT_FOUND", "The account does not exist.")
    return account


def ledger_for_plan(plan: RevenuePlan) -> QuerySet[PlanLedgerEntry]:
    return PlanLedgerEntry.objects.filter(plan_id=plan.id).order_by("chain_seq")


def accounts_in_renewal_window(tenant_id, *, plan_type: str, today) -> QuerySet[Account]:
    """Accounts whose renewal is within the plan type's proposal window and past its cut-off (the latest
    version's: the one a new proposal is made on)."""
    config = get_plan_type_config(plan_type)
    return Account.objects.filter(
        tenant_id=tenant_id,
        renewal_date__gt=today + timedelta(days=config.renewal_cutoff_days),
        renewal_date__lte=today + timedelta(days=config.proposal_window_days),
    )


def open_plans_of_type(plan_type: str) -> QuerySet[RevenuePlan]:
    return RevenuePlan.objects.filter(plan_type=plan_type, plan_status__in=NON_TERMINAL)


def accounts_due_for_proposal(tenant_id, *, plan_type: str, today, account_id=None):
    """Accounts in the plan type's renewal window with no open plan of that type, soonest renewal first."""
    accounts = accounts_in_renewal_window(tenant_id, plan_type=plan_type, today=today).exclude(
        id__in=open_plans_of_type(plan_type).values("account_id")
    )
    if account_id is not None:
        accounts = accounts.filter(pk=account_id)
    return accounts.order_by("renewal_date", "name")
