"""Row locks for plan writes, in one fixed order everywhere: account, then its plans by id.

Call inside `transaction.atomic()`. A plan's ledger chain is serialised by its row lock, so two
plans never wait for each other.
"""
from collections.abc import Mapping
from uuid import UUID, uuid4

from django.db import connection
from django.db.models import Expression

from plans.errors import NotFound
from plans.models import Account, RevenuePlan
from revplan.compiled import CompiledQuery

# of=("self",): the join must not lock the account too, or plans of one account would queue. The account's
# owner comes along: a step run under this lock hands both to its connector. Compiled once: it is a step's
# most frequent read.
_LOCK_PLAN = CompiledQuery(
    lambda plan_id: RevenuePlan.objects.select_for_update(of=("self",)).select_related("account__owner")
    .filter(pk=plan_id)[:1],
    plan_id=uuid4(),
)


def lock_plan(plan_id: UUID) -> RevenuePlan:
    try:
        plan = _LOCK_PLAN.first(plan_id=plan_id)
    except ValueError:  # not a UUID
        plan = None
    if plan is None:
        raise NotFound("NOT_FOUND", f"Plan {plan_id} does not exist.")
    return plan


def lock_plans(plan_ids, *, also: Mapping[str, Expression] | None = None) -> list[RevenuePlan]:
    """lock_plan of several plans in one statement, locked in id order (as lock_open_plans_of_account); a plan
    that does not exist is left out. `also`: the caller's own columns, as for annotate (as of the statement's
    snapshot, which is older than the lock if it waited for one)."""
    return list(RevenuePlan.objects.select_for_update(of=("self",)).select_related("account__owner")
                .annotate(**(also or {})).filter(pk__in=list(plan_ids)).order_by("pk"))


def share_plan_key(plan_id: UUID) -> None:
    """The plan's KEY SHARE lock, for a transaction that writes a row pointing at the plan twice (PostgreSQL then
    checks that row's foreign keys at commit, taking this lock there): taken first, the order is plan before its
    intents, as everywhere, and a writer holding the plan's FOR UPDATE is waited for instead of deadlocked with."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM plans_revenueplan WHERE id = %s FOR KEY SHARE", [plan_id])


def lock_account(account_id: UUID) -> Account:
    try:
        # NO KEY UPDATE: serialises the account's writers and moves into ACTIVE, but not the inserts of
        # rows that point at the account (intents, signals, budget units), which take KEY SHARE.
        return Account.objects.select_for_update(no_key=True).get(pk=account_id)
    except (Account.DoesNotExist, ValueError):
        raise NotFound("NOT_FOUND", f"Account {account_id} does not exist.") from None


def lock_accounts(account_ids) -> None:
    """lock_account of several accounts in one statement, in id order: a caller locking plans of several
    accounts (a batched advance) takes all their accounts first, then the plans."""
    account_ids = sorted(set(account_ids))
    if account_ids:
        list(Account.objects.select_for_update(no_key=True).filter(pk__in=account_ids).order_by("pk")
             .values_list("pk", flat=True))


def lock_account_then_plan(plan_id: UUID) -> RevenuePlan:
    """For moves into ACTIVE: the account lock serialises the one-ACTIVE-plan check per account."""
    account_id = RevenuePlan.objects.filter(pk=plan_id).values_list("account_id", flat=True).first()
    if account_id is None:
        raise NotFound("NOT_FOUND", f"Plan {plan_id} does not exist.")
    lock_account(account_id)
    return lock_plan(plan_id)


def lock_open_plans_of_account(account_id: UUID) -> list[RevenuePlan]:
    from plans.lifecycle import NON_TERMINAL

    return list(
        RevenuePlan.objects.select_for_update()
        .filter(account_id=account_id, plan_status__in=NON_TERMINAL)
        .order_by("id")
    )
