"""The inbox's first phase in SQL (plans.inbox_waits, plans.authority_filters) held to the Python rules it
stands for: plans.authority.denial, plans.inbox.liftable_layers and plans.inbox.due_at — on real rows."""
import dataclasses
from datetime import date, timedelta
from itertools import combinations, product

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from plans.authority import Subject, Verb, denial
from plans.authority_filters import allowed_plans
from plans.due import due_at
from plans.inbox import InboxKind, _approvable_risks, inbox_entries, liftable_layers
from plans.models import Membership, PauseKind, PauseLayer, PlanStatus, RevenuePlan, Role, StepStatus
from plans.plan_types import RENEWAL_DEFENSE, catalogue_with
from plans.services.common import plan_subject
from tests.factories import AccountFactory, MembershipFactory, UserFactory, make_plan

pytestmark = pytest.mark.django_db

MEETING = "REQUEST_RENEWAL_MEETING"


@pytest.fixture
def facts_plans(world):
    """A DRAFT for every combination of the four facts the rules read, relative to world.seller / .approver."""
    me, other = world.approver, world.seller
    plans = []
    for account_owner in (me, other):
        account = AccountFactory(tenant=world.tenant, owner=account_owner)
        for plan_owner in (me, other, None):
            for created_by in (f"user:{me.pk}", f"user:{other.pk}", "system:tests"):
                for editors in ([], [me.pk], [other.pk, me.pk]):
                    plans.append(make_plan(account=account, owner_id=plan_owner.pk if plan_owner else None,
                                           created_by=created_by, edited_by_since_approval=editors))
    return plans


@pytest.mark.parametrize("verb", [Verb.APPROVE, Verb.REAPPROVE, Verb.APPROVE_STEP, Verb.RESUME, Verb.RETRY_STEP,
                                  Verb.TRANSFER_ACCOUNT, Verb.ABORT])
@pytest.mark.parametrize("role", list(Role))
def test_the_filter_allows_exactly_what_denial_allows(world, facts_plans, verb, role):
    for user in (world.approver, world.seller):
        allowed = allowed_plans(verb, role, user.pk)
        found = set() if allowed is None else set(
            RevenuePlan.objects.filter(allowed, tenant_id=world.tenant.id).values_list("id", flat=True))
        expected = {plan.id for plan in facts_plans
                    if denial(verb, role=role, user_id=user.pk, subject=plan_subject(plan)) is None}
        assert found == expected, (verb, role, user)


def test_denial_reads_a_subject_only_relative_to_the_caller():
    """The truth table holds only if no rule compares two of a subject's fields with each other or with a
    particular user: for subjects whose other people are different users, denial says what it says for the
    four facts alone."""
    me, others = 1, (2, 3, None)
    for verb in Verb:
        for role in Role:
            for account_owner, plan_owner in product((me, *others), repeat=2):
                for created_by in ("user:1", "user:2", "user:3", "system:tests"):
                    for editors in (frozenset(), frozenset({1}), frozenset({2}), frozenset({1, 3})):
                        subject = Subject(account_owner_id=account_owner, plan_owner_id=plan_owner,
                                          plan_created_by=created_by, plan_editors=editors)
                        facts = Subject(account_owner_id=me if account_owner == me else 2,
                                        plan_owner_id=me if plan_owner == me else 2,
                                        plan_created_by="user:1" if created_by == "user:1" else "user:2",
                                        plan_editors=frozenset({1}) if me in editors else frozenset())
                        assert ((denial(verb, role=role, user_id=me, subject=subject) is None)
                                == (denial(verb, role=role, user_id=me, subject=facts) is None)), (verb, role, subject)


def test_a_changed_role_membership_or_sla_is_seen_at_once(world):
    """The compiled UNION is keyed by what it depends on: a role, a membership or a plan type's SLA that
    changes gives the new answer on the next call."""
    draft = make_plan(account=world.account, updated_at=timezone.now() - timedelta(hours=1))
    membership = Membership.objects.get(user=world.approver, tenant=world.tenant)
    assert [entry.plan_id for entry in inbox_entries(world.approver)] == [draft.id]

    membership.role = Role.VIEWER
    membership.save(update_fields=["role"])
    assert list(inbox_entries(world.approver)) == []
    membership.role, membership.is_active = Role.PLAN_APPROVER, False
    membership.save(update_fields=["role", "is_active"])
    assert list(inbox_entries(world.approver)) == []
    membership.is_active = True
    membership.save(update_fields=["is_active"])
    [entry] = inbox_entries(world.approver)

    hurried = dataclasses.replace(RENEWAL_DEFENSE.approval_sla, draft_approval=timedelta(minutes=5))
    with catalogue_with(dataclasses.replace(RENEWAL_DEFENSE, version=RENEWAL_DEFENSE.version + 1,
                                            approval_sla=hurried)):
        [hurried_entry] = inbox_entries(world.approver)
        assert hurried_entry.due_at == entry.waiting_since + timedelta(minutes=5)
    [after] = inbox_entries(world.approver)
    assert after.due_at == entry.due_at


def paused(account, kinds, *, minutes_ago=(), **fields):
    plan = make_plan(account=account, status=PlanStatus.PAUSED, paused_at=timezone.now() - timedelta(hours=9),
                     **fields)
    now = timezone.now()
    for index, kind in enumerate(kinds):
        ago = minutes_ago[index] if index < len(minutes_ago) else 10 * (index + 1)
        PauseLayer.objects.create(plan=plan, kind=kind, scope="", reason_code=kind, explanation="For a test.",
                                  set_by="system:tests", set_at=now - timedelta(minutes=ago))
    return plan


LAYER_KINDS = [PauseKind.PERSON, PauseKind.POLICY, PauseKind.RETRY_LIMIT, PauseKind.APPROVAL_STALE,
               PauseKind.OWNER_INACTIVE, PauseKind.KILL_SWITCH, PauseKind.BREAKER]


def test_paused_waits_follow_liftable_layers_for_every_role(world):
    """Every set of up to three open layers (and none), for a plan the seller owns and one they don't: the SQL
    finds the plans, kinds and start times plans.inbox.liftable_layers gives each role."""
    other_seller = UserFactory()
    MembershipFactory(user=other_seller, tenant=world.tenant, role=Role.SELLER)
    accounts = [AccountFactory(tenant=world.tenant, owner=world.seller),
                AccountFactory(tenant=world.tenant, owner=other_seller)]
    sets = [(), *[combo for size in (1, 2, 3) for combo in combinations(LAYER_KINDS, size)]]
    plans = [paused(account, kinds) for account in accounts for kinds in sets]
    # A HIGH-risk one: only a tenant admin may reapprove it.
    plans.append(paused(accounts[0], [PauseKind.APPROVAL_STALE], risk_level="HIGH"))
    for role, user in world.users.items():
        expected = {}
        for plan in plans:
            layers = list(PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True))
            if not layers:
                if denial(Verb.RESUME, role=role, user_id=user.pk, subject=plan_subject(plan)) is None:
                    expected[plan.id] = (InboxKind.PAUSED, plan.paused_at)
                continue
            lifted = liftable_layers(layers, role=role, user_id=user.pk, subject=plan_subject(plan),
                                     risk_level=plan.risk_level)
            if lifted:
                stale = any(layer.kind == PauseKind.APPROVAL_STALE for layer in lifted)
                expected[plan.id] = (InboxKind.APPROVAL_STALE if stale else InboxKind.PAUSED,
                                     min(layer.set_at for layer in lifted))
        found = {entry.plan_id: (entry.kind, entry.waiting_since)
                 for entry in inbox_entries(user, kinds=frozenset({InboxKind.PAUSED, InboxKind.APPROVAL_STALE}))}
        assert found == expected, role
        stale_only = {entry.plan_id for entry in inbox_entries(user, kinds=frozenset({InboxKind.APPROVAL_STALE}))}
        assert stale_only == {plan_id for plan_id, (kind, _) in expected.items() if kind == InboxKind.APPROVAL_STALE}


def test_due_times_are_due_at_in_sql(world):
    """Each kind's due time from SQL is plans.inbox.due_at's: the SLA, and the renewal cut-off where it applies
    (an account renewing soon brings the due time forward; none without a renewal date)."""
    today = timezone.now().date()
    renewals = [None, today + timedelta(days=400), today + timedelta(days=30), date(2020, 1, 1)]
    for renewal in renewals:
        account = AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=renewal)
        make_plan(account=account, updated_at=timezone.now() - timedelta(hours=30))
        make_plan(account=account, status=PlanStatus.ACTIVE, action_types=(MEETING,),
                  step_status=StepStatus.PENDING_APPROVAL, activated_at=timezone.now() - timedelta(hours=3))
        paused(account, [PauseKind.PERSON])
        paused(account, [PauseKind.APPROVAL_STALE])
    entries = list(inbox_entries(world.admin))
    assert {entry.kind for entry in entries} == set(InboxKind)
    assert len(entries) == 4 * len(renewals)
    for entry in entries:
        plan = RevenuePlan.objects.select_related("account").get(pk=entry.plan_id)
        assert entry.due_at == due_at(entry.kind, plan.plan_type, entry.waiting_since, plan.account.renewal_date)
    assert [entry.sort_key for entry in entries] == sorted(entry.sort_key for entry in entries)


def test_pages_count_and_overdue_in_constant_queries(world):
    for index in range(12):
        make_plan(account=world.account, updated_at=timezone.now() - timedelta(hours=index * 5))
    everything = list(inbox_entries(world.approver))
    overdue = sum(1 for entry in everything if entry.due_at <= timezone.now())
    entries = inbox_entries(world.approver)
    with CaptureQueriesContext(connection) as queries:
        assert (len(entries), entries.overdue) == (12, overdue)
        pages = [entries[start:start + 5] for start in (0, 5, 10)]
    assert len(queries) == 4  # the counts, a query a page
    assert [entry for chunk in pages for entry in chunk] == everything
    assert entries[20:25] == []
    with pytest.raises(TypeError):
        entries[3]  # an entry is read a page at a time

    # The page a list will show, read with the counts: one query for all three.
    for window, expected in (((0, 5), everything[:5]), ((10, 5), everything[10:]), ((5, 5), everything[5:10])):
        windowed = inbox_entries(world.approver, window=window)
        with CaptureQueriesContext(connection) as queries:
            assert (len(windowed), windowed.overdue) == (12, overdue)
            # as Django's Paginator asks for the last page: only as far as the count
            assert windowed[window[0]:min(window[0] + window[1], 12)] == expected
        assert len(queries) == 1, window
    past_the_end = inbox_entries(world.approver, window=(50, 5))
    assert (len(past_the_end), past_the_end[50:55]) == (12, [])


def test_approval_risks_match_the_gate():
    assert _approvable_risks(Role.PLAN_APPROVER) == ("LOW", "MEDIUM")
    assert _approvable_risks(Role.TENANT_ADMIN) == ("LOW", "MEDIUM", "HIGH")
