"""What waits for a person, counted and paged in SQL (the inbox's first phase, plans.inbox).

At 100,000 plans a tenant has thousands of waits; reading them all to show fifty cost 250 ms, and computing
each one's start and due time from the plans, steps, layers, ledger and accounts still grew with them. Here
each kind of wait is a query over plans.wait_models.PlanWait — one narrow row per wait, kept by plans.waits —
that yields (kind, plan, step, tenant, since, due) rows for exactly the waits the caller may end:
plans.authority's rules as filters (plans.authority_filters), the risk an approval needs, the pause layers a
person lifts (plans.inbox.PERSON_LIFTED_LAYERS; PERSON and POLICY only when nothing else holds the plan), and
the due time as the plan type's SLA in SQL (plans.inbox.due_at's rule, built from the same ApprovalSla). The
kinds are one UNION ALL: one query counts it, one reads a page in due order (the count can say what is overdue
too, for the admin index). tests/plans/test_inbox_waits.py holds the SQL to plans.inbox's Python rules.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection
from django.db.models import Case as SqlCase
from django.db.models import CharField, DateTimeField, ExpressionWrapper, F, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce, Least

from plans.authority import Verb
from plans.authority_filters import PLAN_WAIT_FACTS, allowed_plans
from plans.models import PauseKind, Role
from plans.plan_types import DEFAULT_APPROVAL_SLA, PLAN_TYPES, ApprovalSla
from plans.services.layers import LIFTED_BY_RESUME
from plans.wait_models import PlanWait, WaitSource
from plans.waits import LAYER_COLUMNS

# The columns every kind's query yields, in this order (the UNION's).
COLUMNS = ("wait_kind", "wait_plan", "wait_step", "wait_tenant", "wait_since", "wait_due")


def due_expression(sla_field: str, since, *, plan_type: str, renewal_date):
    """plans.inbox.due_at in SQL: since + the plan type's SLA `sla_field` (an ApprovalSla field), brought forward
    to midnight (UTC) `due_before_renewal_days` before the account's renewal date when the plan type says so."""

    def due_for(sla: ApprovalSla):
        due = ExpressionWrapper(since + Value(getattr(sla, sla_field)), output_field=DateTimeField())
        days = sla.due_before_renewal_days.get(sla_field)
        if days is None:
            return due
        # date - interval is midnight of that day; the connection's time zone is UTC (USE_TZ).
        cutoff = ExpressionWrapper(renewal_date - Value(timedelta(days=days)), output_field=DateTimeField())
        return Least(due, cutoff)  # LEAST ignores NULL: no renewal date, no cut-off

    return SqlCase(*(When(**{plan_type: name}, then=due_for(config.approval_sla))
                     for name, config in PLAN_TYPES.items()),
                   default=due_for(DEFAULT_APPROVAL_SLA), output_field=DateTimeField())


def _rows(queryset: QuerySet, *, kind, since, due) -> QuerySet:
    return queryset.annotate(
        wait_kind=kind if not isinstance(kind, str) else Value(kind, output_field=CharField()),
        wait_plan=F("plan_id"), wait_step=F("step_id"), wait_tenant=F("tenant_id"),
        wait_since=since,
    ).annotate(wait_due=due).order_by().values_list(*COLUMNS)


def _groups(roles: dict[UUID, Role]) -> dict[Role, list[UUID]]:
    """The caller's tenants by their role there: each role's reach is one filter over its tenants."""
    groups: dict[Role, list[UUID]] = {}
    for tenant_id, role in roles.items():
        groups.setdefault(role, []).append(tenant_id)
    return groups


def _may(verb: Verb, role: Role, user_id: int, *, risks: tuple[str, ...] | None = None) -> Q | None:
    allowed = allowed_plans(verb, role, user_id, columns=PLAN_WAIT_FACTS)
    if allowed is None or risks == ():
        return None
    return allowed & Q(risk_level__in=risks) if risks is not None else allowed


def _waits(source: WaitSource, tenant_ids: list[UUID], may: Q) -> QuerySet:
    return PlanWait.objects.filter(may, tenant_id__in=tenant_ids, source=source)


def _due_ordered(waits: QuerySet, *, kind: str, sla_field: str, due_key: str) -> list[tuple[QuerySet, bool]]:
    """A kind's rows as two branches: those whose due time is stored under this process's SLAs, read soonest due
    first from the index (True: a page reads them only as far as it goes), and any others (stored under other
    SLAs: a deploy changed them), computed here. The second is normally empty, found by two index ranges."""
    stored = _rows(waits.filter(due_key=due_key), kind=kind, since=F("since"), due=F("due_at"))
    computed = _rows(waits.filter(Q(due_key__lt=due_key) | Q(due_key__gt=due_key)), kind=kind, since=F("since"),
                     due=due_expression(sla_field, F("since"), plan_type="plan_type", renewal_date=F("renewal_date")))
    return [(stored, True), (computed, False)]


def draft_waits(roles: dict[UUID, Role], user_id: int, *, approvable_risks, due_key: str
                ) -> list[tuple[QuerySet, bool]]:
    found = []
    for role, tenant_ids in _groups(roles).items():
        may = _may(Verb.APPROVE, role, user_id, risks=approvable_risks(role))
        if may is not None:
            # A DRAFT waits since it was proposed or last changed (an edit, a revise back to DRAFT).
            found += _due_ordered(_waits(WaitSource.DRAFT, tenant_ids, may), kind="DRAFT_APPROVAL",
                                  sla_field="draft_approval", due_key=due_key)
    return found


def step_waits(roles: dict[UUID, Role], user_id: int, *, due_key: str) -> list[tuple[QuerySet, bool]]:
    found = []
    for role, tenant_ids in _groups(roles).items():
        may = _may(Verb.APPROVE_STEP, role, user_id)
        if may is not None:
            # Since the engine ledgered STEP_AWAITING_APPROVAL for it (else the plan's activation): plans.waits.
            found += _due_ordered(_waits(WaitSource.STEP, tenant_ids, may), kind="STEP_APPROVAL",
                                  sla_field="step_approval", due_key=due_key)
    return found


def paused_waits(roles: dict[UUID, Role], user_id: int, *, lifted_layers: dict[str, Verb], approvable_risks
                 ) -> list[tuple[QuerySet, bool]]:
    """PAUSED plans held by layers the caller may lift (APPROVAL_STALE when one of those is a stale approval),
    since the earliest of those layers; a PAUSED plan without layers waits for a resume since it was paused."""
    found = []
    for role, tenant_ids in _groups(roles).items():
        liftable = {}
        for layer_kind, verb in lifted_layers.items():
            may = _may(verb, role, user_id, risks=approvable_risks(role) if verb == Verb.REAPPROVE else None)
            if may is not None:
                liftable[layer_kind] = may
        resume = _may(Verb.RESUME, role, user_id)
        if not liftable and resume is None:
            continue
        # A layer counts when the caller may lift it, and (PERSON, POLICY: a resume) nothing else holds the plan.
        counts = {layer_kind: Q(**{f"{LAYER_COLUMNS[layer_kind]}__isnull": False}) & may
                  & (Q(first_not_by_resume__isnull=True) if layer_kind in LIFTED_BY_RESUME else Q())
                  for layer_kind, may in liftable.items()}
        # PAUSED before the layers existed: its stop reason holds it until a resume (plans.why.blocking).
        unlayered = Q(first_held__isnull=True) & resume if resume is not None else None
        held = [*counts.values(), *([unlayered] if unlayered is not None else [])]
        waiting = held[0]
        for condition in held[1:]:
            waiting |= condition
        # Since the earliest layer the caller may lift (LEAST ignores the others' NULL), else since it paused.
        layer_since = [SqlCase(When(condition, then=F(LAYER_COLUMNS[layer_kind])), output_field=DateTimeField())
                       for layer_kind, condition in counts.items()]
        since = Coalesce(*([Least(*layer_since)] if len(layer_since) > 1 else layer_since), F("since"),
                         output_field=DateTimeField())
        stale = counts.get(PauseKind.APPROVAL_STALE)
        kind = (SqlCase(When(stale, then=Value("APPROVAL_STALE")), default=Value("PAUSED"), output_field=CharField())
                if stale is not None else Value("PAUSED", output_field=CharField()))
        kind_due = {kind_name: due_expression(field, F("wait_since"), plan_type="plan_type",
                                              renewal_date=F("renewal_date"))
                    for kind_name, field in (("APPROVAL_STALE", "approval_stale"), ("PAUSED", "paused"))}
        found.append((_rows(_waits(WaitSource.PAUSED, tenant_ids, waiting), kind=kind, since=since,
                            due=SqlCase(When(wait_kind="APPROVAL_STALE", then=kind_due["APPROVAL_STALE"]),
                                        default=kind_due["PAUSED"], output_field=DateTimeField())), False))
    return found


@dataclass(frozen=True)
class Branch:
    """One part of the UNION: its SQL and parameters, and whether its rows come soonest due first from an index."""

    sql: str
    params: tuple
    in_due_order: bool


_ORDER = "ORDER BY wait_due, wait_since, wait_plan, wait_step NULLS FIRST"


def compiled(querysets: list[tuple[QuerySet, bool]]) -> tuple[Branch, ...]:
    branches = []
    for queryset, in_due_order in querysets:
        sql, params = queryset.query.sql_with_params()
        branches.append(Branch(sql, tuple(params), in_due_order))
    return tuple(branches)


def _union(branches: tuple[Branch, ...], *, first: int | None = None) -> tuple[str, list]:
    """The branches as one UNION ALL; with `first`, a branch in due order gives only its first rows."""
    parts, params = [], []
    for branch in branches:
        if first is not None and branch.in_due_order:
            parts.append(f"(SELECT * FROM ({branch.sql}) AS branch {_ORDER} LIMIT %s)")
            params += [*branch.params, first]
        else:
            parts.append(f"({branch.sql})")
            params += branch.params
    return " UNION ALL ".join(parts), params


def counts(branches: tuple[Branch, ...], *, kinds: list[str], due_by: datetime | None = None
           ) -> tuple[int, int | None]:
    """How many waits of `kinds` there are, and with `due_by` how many of them are due at or before it (else
    None: then PostgreSQL computes no start or due time, only which waits there are)."""
    if not branches:
        return 0, (0 if due_by is not None else None)
    sql, params = _union(branches)
    overdue = "count(*) FILTER (WHERE wait_due <= %s)" if due_by is not None else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), {overdue} FROM ({sql}) AS waits WHERE wait_kind = ANY(%s)",
                       [*([due_by] if due_by is not None else []), *params, kinds])
        return cursor.fetchone()


def page(branches: tuple[Branch, ...], *, kinds: list[str], offset: int, limit: int, due_by: datetime
         ) -> tuple[list[tuple], int, int]:
    """Rows `offset` to `offset + limit` of `kinds` in due order (then since, plan, step: stable), with how many
    waits there are in all and how many are due by `due_by`, in one query: the page reads each stored kind
    soonest due first as far as `offset + limit` (an index scan), the counts pass over the rows once."""
    if not branches:
        return [], 0, 0
    every, every_params = _union(branches)
    firsts, firsts_params = _union(branches, first=offset + limit)
    with connection.cursor() as cursor:
        # LEFT JOIN: the counts come back even when the page is past the end.
        cursor.execute(
            f"SELECT page.*, counted.total, counted.due FROM "
            f"(SELECT count(*) AS total, count(*) FILTER (WHERE wait_due <= %s) AS due FROM ({every}) AS waits "
            f"WHERE wait_kind = ANY(%s)) AS counted LEFT JOIN LATERAL "
            f"(SELECT {', '.join(COLUMNS)} FROM ({firsts}) AS waits WHERE wait_kind = ANY(%s) {_ORDER} "
            f"LIMIT %s OFFSET %s) AS page ON true",
            [due_by, *every_params, kinds, *firsts_params, kinds, limit, offset])
        rows = cursor.fetchall()
    total, overdue = rows[0][-2:]
    return [row[:-2] for row in rows if row[0] is not None], total, overdue
