"""GET /api/v1/inbox/: the caller's waits, by due time, paged like the other lists, filtered by kind and
tenant (a bad value 400, another tenant 404), empty for a viewer, in constant queries."""
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from plans.inbox import inbox_items
from plans.models import PauseKind, PauseLayer, PlanStatus, StepStatus
from revplan.api.inbox import InboxItemSerializer, inbox_output
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory, make_plan

INBOX = "/api/v1/inbox/"
ITEM_FIELDS = {"kind", "plan", "step", "waiting_since", "age_seconds", "due_at", "due_in_seconds", "overdue",
               "waiting_for", "verbs", "previews"}


def waiting_step_plan(world, **fields):
    return make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                     action_types=("REQUEST_RENEWAL_MEETING",), step_status=StepStatus.PENDING_APPROVAL,
                     **{"activated_at": timezone.now(), **fields})


def paused_by_a_person(world):
    plan = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.PAUSED,
                     paused_at=timezone.now())
    PauseLayer.objects.create(plan=plan, kind=PauseKind.PERSON, reason_code="PAUSED_BY_USER",
                              explanation="Paused for a test.", set_by="user:1", set_at=timezone.now())
    return plan


def test_an_approver_sees_their_waits_with_ages_due_times_verbs_and_previews(world):
    draft = make_plan(account=world.account, updated_at=timezone.now() - timedelta(hours=3))
    step_plan = waiting_step_plan(world, activated_at=timezone.now() - timedelta(hours=30))

    response = client_for(world.approver).get(INBOX)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    overdue_step, draft_item = body["results"]  # the step is 6 h overdue; the DRAFT is due in 45 h
    assert set(overdue_step) == ITEM_FIELDS
    assert (overdue_step["kind"], overdue_step["plan"]["plan_id"]) == ("STEP_APPROVAL", str(step_plan.id))
    assert overdue_step["step"]["action_type"] == "REQUEST_RENEWAL_MEETING"
    assert overdue_step["overdue"] is True
    assert overdue_step["due_in_seconds"] < 0
    assert overdue_step["verbs"] == ["approve_step", "abort"]
    assert (draft_item["kind"], draft_item["plan"]["plan_id"]) == ("DRAFT_APPROVAL", str(draft.id))
    assert draft_item["plan"]["account_name"] == world.account.name
    assert draft_item["plan"]["risk_level"] == "MEDIUM"
    assert 3 * 3600 - 60 < draft_item["age_seconds"] < 3 * 3600 + 60
    assert draft_item["overdue"] is False
    assert draft_item["verbs"] == ["approve", "abort"]
    assert [preview["action_type"] for preview in draft_item["previews"]] == ["REQUEST_RENEWAL_MEETING",
                                                                              "PREP_RENEWAL_BRIEF"]
    assert "waits for a plan approver" in draft_item["waiting_for"]
    # what approving lets happen, as each step's connector describes it (plans.previews)
    assert all(preview["preview"]["summary"] for preview in draft_item["previews"])
    assert overdue_step["previews"][0]["preview"]["connector"] == "calendar"


def test_a_viewer_sees_nothing_and_a_seller_only_their_own_plans_waits(world):
    make_plan(account=world.account)
    step_plan = waiting_step_plan(world)

    viewer = client_for(world.viewer).get(INBOX).json()
    seller = client_for(world.seller).get(INBOX).json()

    assert (viewer["count"], viewer["results"]) == (0, [])
    assert [(item["kind"], item["plan"]["plan_id"]) for item in seller["results"]] == [
        ("STEP_APPROVAL", str(step_plan.id))]


def test_the_approver_does_not_see_a_draft_they_created_or_edited(world):
    make_plan(account=world.account, created_by=f"user:{world.approver.pk}")
    make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
              edited_by_since_approval=[world.approver.pk])

    assert client_for(world.approver).get(INBOX).json()["count"] == 0
    assert client_for(world.admin).get(INBOX).json()["count"] == 2


def test_filtered_by_kind_and_paged(world):
    for _ in range(3):
        make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller))
    waiting_step_plan(world)
    paused_by_a_person(world)
    api = client_for(world.admin)

    drafts = api.get(INBOX, {"kind": "DRAFT_APPROVAL", "page_size": 2}).json()
    page_two = api.get(INBOX, {"kind": "DRAFT_APPROVAL", "page_size": 2, "page": 2}).json()
    two_kinds = api.get(f"{INBOX}?kind=STEP_APPROVAL&kind=PAUSED").json()

    assert (drafts["count"], len(drafts["results"]), len(page_two["results"])) == (3, 2, 1)
    assert drafts["next"]
    assert page_two["previous"]
    assert {item["plan"]["plan_id"] for item in drafts["results"]}.isdisjoint(
        {item["plan"]["plan_id"] for item in page_two["results"]})
    assert sorted(item["kind"] for item in two_kinds["results"]) == ["PAUSED", "STEP_APPROVAL"]
    assert two_kinds["results"][[item["kind"] for item in two_kinds["results"]].index("PAUSED")]["verbs"] == [
        "resume", "abort"]


def test_bad_filters_are_400_and_another_tenant_is_404(world, other_world):
    make_plan(account=other_world.account)
    api = client_for(world.admin)

    assert_error(api.get(INBOX, {"kind": "EVERYTHING"}), 400, "VALIDATION_ERROR")
    assert_error(api.get(INBOX, {"tenant": "not-a-uuid"}), 400, "VALIDATION_ERROR")
    assert_error(api.get(INBOX, {"page": 0}), 404, "NOT_FOUND")
    refused = api.get(INBOX, {"tenant": str(other_world.tenant.id)})
    assert_error(refused, 404, "NOT_FOUND")
    assert str(other_world.tenant.id) not in refused.content.decode()
    assert api.get(INBOX, {"tenant": str(world.tenant.id)}).json()["count"] == 0
    assert api.get(INBOX).json()["count"] == 0  # another tenant's DRAFT is nobody's business here


def test_unauthenticated_is_401():
    assert_error(APIClient().get(INBOX), 401, "NOT_AUTHENTICATED")


def test_the_same_number_of_queries_for_1_and_20_items_of_each_kind(world):
    api = client_for(world.admin)
    counts = []
    for added in (1, 19):
        for _ in range(added):
            make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller))
            waiting_step_plan(world)
            paused_by_a_person(world)
        with CaptureQueriesContext(connection) as queries:
            response = api.get(INBOX, {"page_size": 100})
        assert response.status_code == 200
        counts.append((response.json()["count"], len(queries)))

    assert [count for count, _ in counts] == [3, 60]
    assert counts[0][1] == counts[1][1], counts


def test_the_page_is_exactly_what_the_serializer_writes(world):
    """The compiled output (revplan.api.output) against DRF's own pass, on every kind of item: a DRAFT with
    previews, a waiting step, a person's pause, a failed step's retry, a stale approval."""
    make_plan(account=world.account, updated_at=timezone.now() - timedelta(hours=3))
    waiting_step_plan(world)
    paused_by_a_person(world)
    failed = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.PAUSED,
                       paused_at=timezone.now(), action_types=("PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"))
    step = failed.steps.get(action_type="ESCALATE_SUPPORT_RISK")
    type(step).objects.filter(pk=step.pk).update(status=StepStatus.FAILED, attempts=3)
    for plan, kind, scope in ((failed, PauseKind.RETRY_LIMIT, str(step.step_id)),
                              (paused_by_a_person(world), PauseKind.APPROVAL_STALE, "")):
        PauseLayer.objects.create(plan=plan, kind=kind, scope=scope, reason_code=kind, explanation="For a test.",
                                  set_by="system:tests", set_at=timezone.now())
    items = inbox_items(world.admin, now=timezone.now())
    assert {item.kind for item in items} == {"DRAFT_APPROVAL", "STEP_APPROVAL", "PAUSED", "APPROVAL_STALE"}
    assert any(item.step is not None and item.kind == "PAUSED" for item in items)

    assert JSONRenderer().render(inbox_output(items)) == JSONRenderer().render(
        InboxItemSerializer(items, many=True).data)
    response = client_for(world.admin).get(INBOX)
    assert response.status_code == 200
    assert [set(item) for item in response.json()["results"]] == [ITEM_FIELDS] * len(items)


def test_pages_of_the_inbox_read_with_their_count(world):
    """Each page is read with the count (revplan.api.pagination.requested_window); the paging's answers stay
    the lists': the last page, a page past the end (404), a page or size that is no number (400)."""
    for hours in (1, 2, 3):
        make_plan(account=world.account, updated_at=timezone.now() - timedelta(hours=hours))
    client = client_for(world.approver)
    first, second = (client.get(INBOX, {"page_size": 2, "page": page}).json() for page in (1, 2))
    assert (first["count"], len(first["results"]), second["count"], len(second["results"])) == (3, 2, 3, 1)
    assert first["next"]
    assert not second["next"]
    assert client.get(INBOX, {"page_size": 2, "page": "last"}).json()["results"] == second["results"]
    assert client.get(INBOX, {"page_size": 2, "page": 3}).status_code == 404
    for bad in ({"page": "false"}, {"page_size": "0"}, {"page": "-1"}):
        assert_error(client.get(INBOX, bad), 400, "VALIDATION_ERROR")
    with CaptureQueriesContext(connection) as queries:
        assert client.get(INBOX, {"page_size": 2, "page": 2}).status_code == 200
    waits_queries = [query for query in queries.captured_queries if "wait_kind" in query["sql"]]
    assert len(waits_queries) == 1  # the page and its count in one
