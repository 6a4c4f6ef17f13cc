"""Plans API: every endpoint's success path, every §7 error on a real request, tenant isolation,
refusals that change nothing, and query counts that do not grow with plans or steps."""
import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orchestrator import engine
from orchestrator.execution.models import ActionIntent
from orchestrator.execution.service import intent_create
from plans import services
from plans.models import EventType, KillSwitch, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.proposals import renewal_defense_draft
from plans.schemas import RevenuePlanV1
from tests.api.helpers import assert_error, client_for
from tests.factories import SignalFactory, make_plan

PLANS = "/api/v1/plans/"
MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
# The wire shape is RevenuePlanV1 but for the raw approval record (the API serves what it means instead),
# plus what the API joins in: blocked_by, approval, pause_layers.
PLAN_FIELDS = set(RevenuePlanV1.model_fields) - {"approval_record"} | {"blocked_by", "approval", "pause_layers"}


def propose(world, *, actor=None, signal_types=frozenset()) -> RevenuePlan:
    """A DRAFT the way the product makes one: through the service, by the seller."""
    return services.plan_propose(
        account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
        draft=renewal_defense_draft(signal_types=set(signal_types)), actor=actor or world.seller,
    )


def state_of(*plans) -> tuple:
    """Everything a refused request must leave alone: plan rows, step rows, the whole ledger."""
    plan_ids = [plan.id for plan in plans]
    return (
        list(RevenuePlan.objects.filter(pk__in=plan_ids).order_by("id").values()),
        list(PlanStep.objects.filter(plan_id__in=plan_ids).order_by("plan_id", "sequence").values()),
        RevenuePlan.objects.count(),
        list(PlanLedgerEntry.objects.order_by("id").values_list("id", "entry_hash")),
    )


def events(plan) -> list[str]:
    return list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq").values_list("event_type", flat=True))


def step_body(action_type, **fields) -> dict:
    return {"action_type": action_type, **fields}


# --- auth ------------------------------------------------------------------------------------


def test_token_auth_and_session_auth_both_read_plans(world):
    plan = propose(world)
    token = Token.objects.create(user=world.viewer)
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    by_session = APIClient()
    assert by_session.login(username=world.viewer.username, password="pw")
    for client in (by_token, by_session):
        response = client.get(f"{PLANS}{plan.id}/")
        assert response.status_code == 200
        assert response.json()["plan_id"] == str(plan.id)


def _every_endpoint(plan_id, step_id, account_id):
    return [
        ("get", PLANS, None),
        ("post", PLANS, {"account_id": str(account_id), "plan_type": "RENEWAL_DEFENSE",
                         "steps": [step_body(MEETING)]}),
        ("post", f"{PLANS}propose/", {"account_id": str(account_id)}),
        ("get", f"{PLANS}{plan_id}/", None),
        ("patch", f"{PLANS}{plan_id}/", {"objective": "Keep them"}),
        ("post", f"{PLANS}{plan_id}/approve/", {}),
        ("post", f"{PLANS}{plan_id}/reapprove/", {}),
        ("post", f"{PLANS}{plan_id}/pause/", {}),
        ("post", f"{PLANS}{plan_id}/resume/", {}),
        ("post", f"{PLANS}{plan_id}/abort/", {"reason": "not needed"}),
        ("post", f"{PLANS}{plan_id}/revise/", {}),
        ("post", f"{PLANS}{plan_id}/steps/{step_id}/approve/", {}),
        ("post", f"{PLANS}{plan_id}/steps/{step_id}/skip/", {"reason": "not needed"}),
        ("post", f"{PLANS}{plan_id}/steps/{step_id}/retry/", {}),
        ("get", f"{PLANS}{plan_id}/ledger/", None),
        ("get", f"{PLANS}{plan_id}/why/", None),
    ]


def call(client, method, path, body):
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


def test_every_endpoint_is_401_without_credentials(world):
    plan = propose(world)
    step = plan.steps.first()
    before = state_of(plan)
    for method, path, body in _every_endpoint(plan.id, step.step_id, world.account.id):
        assert_error(call(APIClient(), method, path, body), 401, "NOT_AUTHENTICATED")
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert_error(bad_token.get(PLANS), 401, "AUTHENTICATION_FAILED")
    assert state_of(plan) == before


def test_every_endpoint_hides_another_tenants_plan_and_changes_nothing(world, other_world):
    # given: their plans in every state a verb could apply to; we are their peer's most powerful role
    theirs = {
        status: make_plan(account=other_world.account, status=status, action_types=(MEETING, BRIEF, ESCALATE),
                          created_by=f"user:{other_world.seller.pk}")
        for status in (PlanStatus.DRAFT, PlanStatus.ACTIVE, PlanStatus.PAUSED)
    }
    api = client_for(world.admin)
    before = state_of(*theirs.values())
    for plan in theirs.values():
        step = plan.steps.get(action_type=ESCALATE)
        for method, path, body in _every_endpoint(plan.id, step.step_id, other_world.account.id):
            response = call(api, method, path, body)
            if path == PLANS and method == "get":
                assert response.status_code == 200
                assert response.json()["count"] == 0
                continue
            assert_error(response, 404, "NOT_FOUND")
    # their account does not exist for us either
    assert api.get(PLANS, {"account": str(other_world.account.id)}).json()["count"] == 0
    assert state_of(*theirs.values()) == before


def test_unknown_plan_and_step_ids_are_404(world):
    api = client_for(world.admin)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
    missing = uuid.uuid4()
    assert_error(api.get(f"{PLANS}{missing}/"), 404, "NOT_FOUND")
    assert_error(api.post(f"{PLANS}{missing}/pause/", {}, format="json"), 404, "NOT_FOUND")
    before = state_of(plan)
    assert_error(api.post(f"{PLANS}{plan.id}/steps/{missing}/skip/", {"reason": "x"}, format="json"), 404, "NOT_FOUND")
    assert state_of(plan) == before


# Each write, with a plan in a status its lifecycle allows, so the refusal can only be the role's.
VIEWER_WRITES = {
    "create": ("post", lambda plan, step, account: PLANS, lambda account: {
        "account_id": str(account.id), "plan_type": "RENEWAL_DEFENSE", "steps": [step_body(MEETING)]}),
    "propose": ("post", lambda plan, step, account: f"{PLANS}propose/",
                lambda account: {"account_id": str(account.id)}),
    "edit": ("patch", lambda plan, step, account: f"{PLANS}{plan.id}/", lambda account: {"objective": "Mine"}),
    "approve": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/approve/", lambda account: {}),
    "reapprove": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/reapprove/", lambda account: {}),
    "pause": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/pause/", lambda account: {}),
    "resume": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/resume/", lambda account: {}),
    "abort": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/abort/", lambda account: {"reason": "r"}),
    "revise": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/revise/", lambda account: {}),
    "approve_step": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/steps/{step.step_id}/approve/",
                     lambda account: {}),
    "skip_step": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/steps/{step.step_id}/skip/",
                  lambda account: {"reason": "r"}),
    "retry_step": ("post", lambda plan, step, account: f"{PLANS}{plan.id}/steps/{step.step_id}/retry/",
                   lambda account: {}),
}
VERB_STATUS = {"edit": PlanStatus.DRAFT, "approve": PlanStatus.DRAFT, "resume": PlanStatus.PAUSED,
               "reapprove": PlanStatus.PAUSED}


@pytest.mark.parametrize("verb", sorted(VIEWER_WRITES))
def test_a_viewer_cannot_write_and_nothing_changes(world, verb):
    method, path, body = VIEWER_WRITES[verb]
    plan = make_plan(account=world.account, status=VERB_STATUS.get(verb, PlanStatus.ACTIVE),
                     action_types=(MEETING, BRIEF, ESCALATE), step_status=StepStatus.PENDING_APPROVAL)
    step = plan.steps.get(action_type=ESCALATE if verb == "skip_step" else MEETING)
    before = state_of(plan)
    response = call(client_for(world.viewer), method, path(plan, step, world.account), body(world.account))
    assert_error(response, 403, "NOT_ALLOWED")
    assert state_of(plan) == before


# --- list ------------------------------------------------------------------------------------


def test_list_shows_only_the_callers_tenants_plans_in_the_v1_shape(world, other_world):
    mine = propose(world)
    make_plan(account=other_world.account)
    body = client_for(world.viewer).get(PLANS).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 1
    [row] = body["results"]
    assert row["plan_id"] == str(mine.id)
    assert set(row) == PLAN_FIELDS
    assert [step["action_type"] for step in row["steps"]] == [MEETING, BRIEF]
    assert all(step["latest_execution"] is None for step in row["steps"])


def test_list_filters_by_status_plan_type_account_and_owner(world, db):
    from tests.factories import AccountFactory

    second_account = AccountFactory(tenant=world.tenant, owner=world.approver)
    draft = propose(world)
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    paused = make_plan(account=second_account, status=PlanStatus.PAUSED)
    api = client_for(world.viewer)

    def ids(**params):
        response = api.get(PLANS, params)
        assert response.status_code == 200, response.content
        return {row["plan_id"] for row in response.json()["results"]}

    assert ids(status="DRAFT") == {str(draft.id)}
    assert ids(status=["ACTIVE", "PAUSED"]) == {str(active.id), str(paused.id)}
    assert ids(plan_type="RENEWAL_DEFENSE") == {str(draft.id), str(active.id), str(paused.id)}
    assert ids(account=str(second_account.id)) == {str(paused.id)}
    assert ids(owner=world.approver.pk) == {str(paused.id)}
    assert ids(owner=world.seller.pk, status="ACTIVE") == {str(active.id)}


def test_list_orders_and_pages(world):
    now = timezone.now()
    plans = [make_plan(account=world.account, status=PlanStatus.ABORTED, expires_at=now + timedelta(days=day))
             for day in (3, 1, 2)]
    api = client_for(world.viewer)
    by_expiry = api.get(PLANS, {"ordering": "expires_at"}).json()["results"]
    assert [row["plan_id"] for row in by_expiry] == [str(plans[i].id) for i in (1, 2, 0)]
    by_expiry_desc = api.get(PLANS, {"ordering": "-expires_at"}).json()["results"]
    assert [row["plan_id"] for row in by_expiry_desc] == [str(plans[i].id) for i in (0, 2, 1)]
    first = api.get(PLANS, {"ordering": "expires_at", "page_size": 2}).json()
    assert first["count"] == 3
    assert len(first["results"]) == 2
    second = api.get(first["next"]).json()
    assert [row["plan_id"] for row in second["results"]] == [str(plans[0].id)]


@pytest.mark.parametrize("params", [{"status": "BOGUS"}, {"plan_type": "NOPE"}, {"account": "not-a-uuid"},
                                    {"owner": "abc"}, {"owner": str(2**40)}, {"ordering": "password"}])
def test_list_refuses_unknown_filter_values_with_400(world, params):
    assert_error(client_for(world.viewer).get(PLANS, params), 400, "VALIDATION_ERROR")


def test_list_page_out_of_range_is_404(world):
    assert_error(client_for(world.viewer).get(PLANS, {"page": 99}), 404, "NOT_FOUND")


# --- detail and executions -------------------------------------------------------------------


def test_detail_is_revenue_plan_v1_with_each_steps_current_execution(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    meeting = plan.steps.get(action_type=MEETING)
    # the meeting's second attempt is current; its first attempt must not be reported
    for attempt in (1, 2):
        intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type=MEETING,
                      expires_at=plan.expires_at, approved_by=world.approver, plan_id=plan.id,
                      step_id=meeting.step_id, attempt=attempt)
    PlanStep.objects.filter(pk=meeting.pk).update(attempts=2)
    body = client_for(world.viewer).get(f"{PLANS}{plan.id}/").json()
    assert set(body) == PLAN_FIELDS
    # the plan part round-trips into the pydantic wire model
    plan_part = {key: value for key, value in body.items() if key not in ("blocked_by", "approval", "pause_layers")}
    RevenuePlanV1.model_validate({**plan_part, "steps": [
        {key: value for key, value in step.items() if key not in ("latest_execution", "approval", "preview")}
        for step in body["steps"]]})
    by_type = {step["action_type"]: step for step in body["steps"]}
    current = ActionIntent.objects.get(plan=plan, step_id=meeting.step_id, attempt=2)
    assert by_type[MEETING]["attempts"] == 2
    assert by_type[MEETING]["latest_execution"]["intent_id"] == str(current.id)
    assert by_type[MEETING]["latest_execution"]["attempt"] == 2
    assert by_type[MEETING]["latest_execution"]["status"] == "PENDING"
    assert "waiting to run" in by_type[MEETING]["latest_execution"]["explanation"]
    assert by_type[BRIEF]["latest_execution"] is None
    assert body["plan_status"] == "ACTIVE"
    assert body["version"] == plan.version


def _grow(world, *, plans: int, steps_each: tuple):
    made = []
    for _ in range(plans):
        plan = make_plan(account=world.account, status=PlanStatus.ABORTED, action_types=steps_each)
        for step in plan.steps.all():
            intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type=step.action_type,
                          expires_at=plan.expires_at, approved_by=world.approver, plan_id=plan.id,
                          step_id=step.step_id, attempt=1)
        plan.steps.update(attempts=1)
        made.append(plan)
    return made


def test_list_query_count_is_constant_as_plans_and_steps_grow(world, django_assert_max_num_queries):
    api = client_for(world.viewer)
    _grow(world, plans=1, steps_each=(MEETING,))
    # the caller's tenants, count, plans, steps, intents; blocked_by's why: creation, stops, waiting events, open
    # layers
    with django_assert_max_num_queries(9) as small:
        assert api.get(PLANS).status_code == 200
    _grow(world, plans=30, steps_each=(MEETING, BRIEF, ESCALATE))
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = api.get(PLANS)
    assert response.json()["count"] == 31
    assert all(step["latest_execution"] for row in response.json()["results"] for step in row["steps"])


def test_detail_why_and_ledger_query_counts_are_constant_as_steps_grow(world, django_assert_max_num_queries):
    api = client_for(world.viewer)
    [small_plan] = _grow(world, plans=1, steps_each=(MEETING,))
    [big_plan] = _grow(world, plans=1, steps_each=(MEETING, BRIEF, ESCALATE, BRIEF, ESCALATE, BRIEF))
    for suffix in ("", "why/", "ledger/"):
        with django_assert_max_num_queries(8) as small:
            assert api.get(f"{PLANS}{small_plan.id}/{suffix}").status_code == 200
        with django_assert_max_num_queries(len(small.captured_queries)):
            assert api.get(f"{PLANS}{big_plan.id}/{suffix}").status_code == 200


# --- create and propose ----------------------------------------------------------------------


def test_create_a_draft_with_the_given_steps(world):
    meeting_id = uuid.uuid4()
    body = {
        "account_id": str(world.account.id), "plan_type": "RENEWAL_DEFENSE", "objective": "Renew early",
        "steps": [step_body(MEETING, step_id=str(meeting_id), parameters={"duration_minutes": 30}),
                  step_body(BRIEF, depends_on=[str(meeting_id)])],
    }
    response = client_for(world.seller).post(PLANS, body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["plan_status"] == "DRAFT"
    assert created["objective"] == "Renew early"
    assert created["created_by"] == f"user:{world.seller.pk}"
    assert created["risk_level"] == "MEDIUM"
    assert created["steps"][0]["step_id"] == str(meeting_id)
    assert created["steps"][1]["depends_on"] == [str(meeting_id)]
    plan = RevenuePlan.objects.get(pk=created["plan_id"])
    assert events(plan) == [EventType.PLAN_CREATED]


@pytest.mark.parametrize(
    "change",
    [
        {"steps": []},
        {"steps": [step_body("SEND_GIFT_BASKET")]},
        {"steps": [step_body(MEETING, depends_on=["nope"])]},
        {"steps": [{"action_type": MEETING, "status": "DONE"}]},
        {"plan_type": "UPSELL"},
        {"account_id": "not-a-uuid"},
        {"objective": "x" * 501},
        {"steps": [step_body(MEETING)] * 21},
        {"constraints": {f"k{i}": i for i in range(51)}},
        {"steps": "meeting please"},
        # DRF's UUIDField would turn any integer, booleans included, into a UUID (false: the nil UUID).
        {"steps": [step_body(MEETING, step_id=False)]},
        {"steps": [step_body(MEETING, step_id=0)]},
        {"steps": [step_body(MEETING, depends_on=[1])]},
        {"account_id": False},
        {"steps": [step_body(MEETING, parameters={"duration_minutes": "thirty"})]},
        {"steps": [step_body(MEETING, parameters={"duration_minutes": True})]},
        {"steps": [step_body(MEETING, parameters={"start": "2026-03-02T15:00"})]},
        {"steps": [step_body(MEETING, parameters={"subject": ""})]},
    ],
)
def test_create_refuses_malformed_input_with_400_and_writes_nothing(world, change):
    body = {"account_id": str(world.account.id), "plan_type": "RENEWAL_DEFENSE", "steps": [step_body(MEETING)],
            **change}
    before = state_of()
    assert_error(client_for(world.seller).post(PLANS, body, format="json"), 400, "VALIDATION_ERROR")
    assert state_of() == before


def test_create_against_the_default_sequence_is_422_and_writes_nothing(world):
    body = {"account_id": str(world.account.id), "plan_type": "RENEWAL_DEFENSE",
            "steps": [step_body(BRIEF), step_body(MEETING)]}
    before = state_of()
    error = assert_error(client_for(world.seller).post(PLANS, body, format="json"), 422, "POLICY_GATE_REFUSED")
    assert [reason["code"] for reason in error["reasons"]] == ["STEP_ORDER_VIOLATION"]
    assert state_of() == before


def test_malformed_json_and_huge_bodies_are_refused_before_anything_happens(world, settings):
    plan = propose(world)
    api = client_for(world.seller)
    before = state_of(plan)
    assert_error(api.generic("POST", PLANS, "{not json", content_type="application/json"), 400, "MALFORMED_REQUEST")
    huge = json.dumps({"account_id": str(world.account.id), "plan_type": "RENEWAL_DEFENSE",
                       "steps": [step_body(MEETING, parameters={"note": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})]})
    assert_error(api.generic("POST", PLANS, huge, content_type="application/json"), 413, "REQUEST_TOO_LARGE")
    assert_error(api.generic("PATCH", f"{PLANS}{plan.id}/", huge, content_type="application/json"), 413,
                 "REQUEST_TOO_LARGE")
    assert state_of(plan) == before


def test_propose_drafts_from_the_accounts_signals(world):
    SignalFactory(account=world.account, signal_type="SUPPORT_RISK")
    response = client_for(world.seller).post(f"{PLANS}propose/", {"account_id": str(world.account.id)}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["plan_status"] == "DRAFT"
    assert [step["action_type"] for step in body["steps"]] == [MEETING, BRIEF, ESCALATE]
    assert body["risk_level"] == "HIGH"
    created = PlanLedgerEntry.objects.get(plan_id=body["plan_id"], event_type=EventType.PLAN_CREATED)
    assert created.actor == f"user:{world.seller.pk}"
    assert created.data["trigger"] == "api_propose"
    assert created.data["inputs"]["signal_types"] == ["SUPPORT_RISK"]


def test_propose_for_an_unknown_or_another_tenants_account_is_404(world, other_world):
    api = client_for(world.admin)
    for account_id in (other_world.account.id, uuid.uuid4()):
        assert_error(api.post(f"{PLANS}propose/", {"account_id": str(account_id)}, format="json"), 404, "NOT_FOUND")
    assert RevenuePlan.objects.count() == 0
    assert_error(api.post(f"{PLANS}propose/", {"account_id": str(world.account.id), "plan_type": "UPSELL"},
                          format="json"), 400, "VALIDATION_ERROR")


def test_propose_refused_by_role_never_reaches_the_proposer(world, other_world, settings):
    # given the LLM proposer, served by a stand-in that counts its calls
    from tests.support.llm_server import LlmServer

    server = LlmServer()
    settings.REVPLAN_PROPOSER = "llm"
    settings.REVPLAN_LLM = {"base_url": server.url, "api_key": "sk-test", "model": "test-model",
                            "timeout_seconds": 1.0}
    server.state.content = json.dumps({"objective": "Keep it", "steps": [{"action_type": MEETING}]})
    try:
        # when a VIEWER, and a member of another tenant, ask for a proposal
        viewer = client_for(world.viewer).post(f"{PLANS}propose/", {"account_id": str(world.account.id)},
                                               format="json")
        stranger = client_for(other_world.admin).post(f"{PLANS}propose/", {"account_id": str(world.account.id)},
                                                      format="json")
        # then 403 and 404, and the proposer was never called
        assert_error(viewer, 403, "NOT_ALLOWED")
        assert_error(stranger, 404, "NOT_FOUND")
        assert server.state.requests == []
        # and the seller's request does reach it (the count can move)
        seller = client_for(world.seller).post(f"{PLANS}propose/", {"account_id": str(world.account.id)},
                                               format="json")
        assert seller.status_code == 201, seller.content
        assert len(server.state.requests) == 1
    finally:
        server.close()
    assert RevenuePlan.objects.count() == 1


def test_a_seller_may_not_write_plans_for_someone_elses_account(world):
    from tests.factories import AccountFactory

    theirs = AccountFactory(tenant=world.tenant, owner=world.approver)
    response = client_for(world.seller).post(f"{PLANS}propose/", {"account_id": str(theirs.id)}, format="json")
    assert_error(response, 403, "NOT_ALLOWED")
    assert RevenuePlan.objects.count() == 0


# --- edit ------------------------------------------------------------------------------------


def test_patch_edits_a_draft_and_keeps_steps_when_none_are_sent(world):
    plan = propose(world)
    step_ids = [str(step_id) for step_id in plan.steps.order_by("sequence").values_list("step_id", flat=True)]
    api = client_for(world.seller)
    response = api.patch(f"{PLANS}{plan.id}/", {"objective": "Renew at +5%", "version": plan.version}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["objective"] == "Renew at +5%"
    assert body["version"] == plan.version + 1
    assert [step["step_id"] for step in body["steps"]] == step_ids
    # then replace the steps: keep the meeting, drop the brief
    response = api.patch(f"{PLANS}{plan.id}/", {"steps": [step_body(MEETING, step_id=step_ids[0])]}, format="json")
    assert response.status_code == 200, response.content
    assert [step["step_id"] for step in response.json()["steps"]] == [step_ids[0]]
    assert events(plan) == [EventType.PLAN_CREATED, EventType.PLAN_EDITED, EventType.PLAN_EDITED]


def test_patch_with_a_stale_version_is_409_and_changes_nothing(world):
    plan = propose(world)
    before = state_of(plan)
    response = client_for(world.seller).patch(f"{PLANS}{plan.id}/", {"objective": "Stale", "version": plan.version + 7},
                                              format="json")
    assert_error(response, 409, "VERSION_CONFLICT")
    assert state_of(plan) == before


def test_patch_outside_draft_is_409_invalid_transition(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    before = state_of(plan)
    response = client_for(world.seller).patch(f"{PLANS}{plan.id}/", {"objective": "Late"}, format="json")
    assert_error(response, 409, "INVALID_TRANSITION")
    assert state_of(plan) == before


@pytest.mark.parametrize("body", [{"version": 0}, {"version": "two"}, {"steps": []}, {"objective": ""},
                                  {"steps": [step_body(MEETING, parameters=[1, 2])]},
                                  {"steps": [step_body(MEETING, step_id=False)]},
                                  {"steps": [step_body(MEETING, depends_on=[1])]},
                                  {"steps": [step_body(MEETING, parameters={"duration_minutes": 10_000})]}])
def test_patch_refuses_malformed_input_with_400(world, body):
    plan = propose(world)
    before = state_of(plan)
    assert_error(client_for(world.seller).patch(f"{PLANS}{plan.id}/", body, format="json"), 400, "VALIDATION_ERROR")
    assert state_of(plan) == before


def test_a_step_id_of_another_plan_or_given_twice_is_400_and_changes_nothing(world, other_world):
    # given a plan of this tenant and one of another tenant, each with its steps
    plan, mine = propose(world), propose(world)
    theirs = propose(other_world)
    foreign_ids = [str(plan.steps.first().step_id), str(theirs.steps.first().step_id)]
    own_id = str(mine.steps.get(action_type=MEETING).step_id)
    before = state_of(plan, mine, theirs)
    api = client_for(world.seller)
    for foreign_id in foreign_ids:
        # when a new plan, or an edit, names a step that belongs to another plan
        created = api.post(PLANS, {"account_id": str(world.account.id), "plan_type": "RENEWAL_DEFENSE",
                                   "steps": [step_body(MEETING, step_id=foreign_id)]}, format="json")
        edited = api.patch(f"{PLANS}{mine.id}/", {"steps": [step_body(MEETING, step_id=foreign_id)]}, format="json")
        # then both are refused as bad input, not a 500, and nothing changed
        assert_error(created, 400, "VALIDATION_ERROR")
        assert_error(edited, 400, "VALIDATION_ERROR")
    twice = api.patch(f"{PLANS}{mine.id}/", {"steps": [step_body(MEETING, step_id=own_id),
                                                       step_body(BRIEF, step_id=own_id)]}, format="json")
    assert_error(twice, 400, "VALIDATION_ERROR")
    assert state_of(plan, mine, theirs) == before


def test_patch_whose_steps_break_the_gate_is_422_and_changes_nothing(world):
    plan = propose(world)
    before = state_of(plan)
    response = client_for(world.seller).patch(f"{PLANS}{plan.id}/", {"steps": [step_body(BRIEF), step_body(MEETING)]},
                                              format="json")
    assert_error(response, 422, "POLICY_GATE_REFUSED")
    assert state_of(plan) == before


# --- the verbs -------------------------------------------------------------------------------


def test_approve_a_draft(world):
    plan = propose(world)
    response = client_for(world.approver).post(f"{PLANS}{plan.id}/approve/", {"version": plan.version}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["plan_status"] == "APPROVED"
    assert body["approved_by"] == world.approver.pk
    assert events(plan)[-1] == EventType.PLAN_APPROVED


def test_the_creator_may_not_approve_their_own_plan(world):
    plan = propose(world, actor=world.approver)
    before = state_of(plan)
    body = assert_error(client_for(world.approver).post(f"{PLANS}{plan.id}/approve/", format="json"), 403,
                        "CREATOR_CANNOT_APPROVE")
    assert body["reasons"][0]["code"] == "CREATOR_CANNOT_APPROVE"
    assert state_of(plan) == before


def test_a_gate_refusal_is_422_with_reasons_and_only_the_refusal_is_written(world):
    # given: a HIGH-risk plan (support escalation); a PLAN_APPROVER is not enough
    plan = propose(world, signal_types={"SUPPORT_RISK"})
    before_rows = state_of(plan)[:3]
    before_events = events(plan)
    response = client_for(world.approver).post(f"{PLANS}{plan.id}/approve/", {}, format="json")
    body = assert_error(response, 422, "POLICY_GATE_REFUSED")
    assert [reason["code"] for reason in body["reasons"]] == ["RISK_REQUIRES_ELEVATED_AUTHORITY"]
    assert state_of(plan)[:3] == before_rows
    assert events(plan) == [*before_events, EventType.POLICY_REJECTED]
    # and the tenant admin may
    assert client_for(world.admin).post(f"{PLANS}{plan.id}/approve/", {}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("verb", "status", "body"),
    [
        ("approve", PlanStatus.ACTIVE, {}),
        ("pause", PlanStatus.DRAFT, {}),
        ("resume", PlanStatus.ACTIVE, {}),
        ("revise", PlanStatus.DRAFT, {}),
        ("abort", PlanStatus.COMPLETED, {"reason": "done anyway"}),
        ("pause", PlanStatus.EXPIRED, {}),
    ],
)
def test_a_move_the_lifecycle_forbids_is_409_and_changes_nothing(world, verb, status, body):
    plan = make_plan(account=world.account, status=status)
    before = state_of(plan)
    response = client_for(world.admin).post(f"{PLANS}{plan.id}/{verb}/", body, format="json")
    assert_error(response, 409, "INVALID_TRANSITION")
    assert state_of(plan) == before


@pytest.mark.parametrize("verb", ["approve", "pause", "resume", "revise", "abort"])
def test_every_verb_checks_the_version(world, verb):
    status = {"approve": PlanStatus.DRAFT, "resume": PlanStatus.PAUSED}.get(verb, PlanStatus.ACTIVE)
    plan = make_plan(account=world.account, status=status)
    before = state_of(plan)
    body = {"version": plan.version + 1, **({"reason": "r"} if verb in ("pause", "revise", "abort") else {})}
    response = client_for(world.admin).post(f"{PLANS}{plan.id}/{verb}/", body, format="json")
    assert_error(response, 409, "VERSION_CONFLICT")
    assert state_of(plan) == before


def test_pause_then_resume(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    api = client_for(world.seller)  # the plan's owner
    paused = api.post(f"{PLANS}{plan.id}/pause/", {"reason": "Customer asked for a week"}, format="json").json()
    assert paused["plan_status"] == "PAUSED"
    assert paused["stop_reason"] == {"code": "PAUSED_BY_USER", "detail": "Customer asked for a week"}
    resumed = api.post(f"{PLANS}{plan.id}/resume/", {"version": paused["version"]}, format="json").json()
    assert resumed["plan_status"] == "ACTIVE"
    assert resumed["stop_reason"] is None
    # the pause set the PERSON layer the resume lifted
    assert events(plan)[-4:] == [EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED, EventType.PAUSE_LAYER_LIFTED,
                                 EventType.PLAN_RESUMED]


def test_resume_into_a_conflict_is_409_and_a_killed_tenant_is_422(world):
    paused = make_plan(account=world.account, status=PlanStatus.PAUSED)
    make_plan(account=world.account, status=PlanStatus.ACTIVE)
    api = client_for(world.admin)
    before = state_of(paused)[:3]
    body = assert_error(api.post(f"{PLANS}{paused.id}/resume/", {}, format="json"), 409, "CONFLICT_ACTIVE_PLAN_EXISTS")
    assert body["reasons"][0]["code"] == "CONFLICT_ACTIVE_PLAN_EXISTS"
    assert state_of(paused)[:3] == before
    # given: no conflict any more, but the tenant's execution is switched off
    other = make_plan(account=world.account, status=PlanStatus.PAUSED)
    RevenuePlan.objects.filter(plan_status=PlanStatus.ACTIVE).update(plan_status=PlanStatus.ABORTED)
    KillSwitch.objects.create(tenant=world.tenant, engaged=True, reason="incident")
    body = assert_error(api.post(f"{PLANS}{other.id}/resume/", {}, format="json"), 422, "POLICY_GATE_REFUSED")
    assert [reason["code"] for reason in body["reasons"]] == ["PRECONDITION_FAILED"]
    assert RevenuePlan.objects.get(pk=other.id).plan_status == PlanStatus.PAUSED


def test_abort_needs_a_reason(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    api = client_for(world.seller)
    before = state_of(plan)
    for body in ({}, {"reason": ""}, {"reason": "x" * 1001}):
        assert_error(api.post(f"{PLANS}{plan.id}/abort/", body, format="json"), 400, "VALIDATION_ERROR")
    assert state_of(plan) == before
    aborted = api.post(f"{PLANS}{plan.id}/abort/", {"reason": "Customer churned"}, format="json").json()
    assert aborted["plan_status"] == "ABORTED"
    assert aborted["stop_reason"] == {"code": "ABORTED_BY_USER", "detail": "Customer churned"}


def test_revise_sends_an_approved_plan_back_to_draft(world):
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED, approved_by=world.approver)
    body = client_for(world.approver).post(f"{PLANS}{plan.id}/revise/", {"reason": "Add a step"}, format="json").json()
    assert body["plan_status"] == "DRAFT"
    assert body["approved_by"] is None
    assert events(plan)[-1] == EventType.PLAN_REVISED


def test_approve_a_step_waiting_for_a_person(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, step_status=StepStatus.PENDING_APPROVAL)
    step = plan.steps.get(action_type=MEETING)
    response = client_for(world.seller).post(f"{PLANS}{plan.id}/steps/{step.step_id}/approve/", {}, format="json")
    assert response.status_code == 200, response.content
    meeting = next(s for s in response.json()["steps"] if s["step_id"] == str(step.step_id))
    assert meeting["status"] == "PENDING"
    assert meeting["approved_by"] == world.seller.pk
    assert events(plan)[-1] == EventType.STEP_APPROVED
    # a second approval finds nothing waiting
    before = state_of(plan)
    again = client_for(world.seller).post(f"{PLANS}{plan.id}/steps/{step.step_id}/approve/", {}, format="json")
    assert_error(again, 409, "STEP_NOT_AWAITING_APPROVAL")
    assert state_of(plan) == before


def test_skip_an_optional_step_but_never_a_required_one(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
    escalate, meeting = plan.steps.get(action_type=ESCALATE), plan.steps.get(action_type=MEETING)
    api = client_for(world.approver)
    before = state_of(plan)
    assert_error(api.post(f"{PLANS}{plan.id}/steps/{escalate.step_id}/skip/", {}, format="json"), 400,
                 "VALIDATION_ERROR")
    assert_error(api.post(f"{PLANS}{plan.id}/steps/{meeting.step_id}/skip/", {"reason": "no"}, format="json"), 409,
                 "REQUIRED_STEP")
    assert state_of(plan) == before
    response = api.post(f"{PLANS}{plan.id}/steps/{escalate.step_id}/skip/", {"reason": "Support is on it"},
                        format="json")
    assert response.status_code == 200, response.content
    skipped = next(s for s in response.json()["steps"] if s["step_id"] == str(escalate.step_id))
    assert (skipped["status"], skipped["skip_reason"]) == ("SKIPPED", "Support is on it")


# --- ledger and why --------------------------------------------------------------------------


def test_ledger_lists_the_plans_chain_in_order(world):
    plan = propose(world)
    services.plan_approve(plan_id=plan.id, user=world.approver)
    api = client_for(world.viewer)
    body = api.get(f"{PLANS}{plan.id}/ledger/").json()
    assert body["count"] == 2
    first, second = body["results"]
    assert (first["event_type"], second["event_type"]) == ("PLAN_CREATED", "PLAN_APPROVED")
    assert (first["chain_seq"], second["chain_seq"]) == (1, 2)
    assert second["prev_hash"] == first["entry_hash"]
    assert second["actor"] == f"user:{world.approver.pk}"
    only = api.get(f"{PLANS}{plan.id}/ledger/", {"event_type": "PLAN_APPROVED"}).json()
    assert [row["event_type"] for row in only["results"]] == ["PLAN_APPROVED"]
    assert_error(api.get(f"{PLANS}{plan.id}/ledger/", {"event_type": "NOPE"}), 400, "VALIDATION_ERROR")


def test_why_a_draft_exists_and_what_it_waits_for(world):
    response = client_for(world.seller).post(f"{PLANS}propose/", {"account_id": str(world.account.id)}, format="json")
    plan_id = response.json()["plan_id"]
    why = client_for(world.viewer).get(f"{PLANS}{plan_id}/why/").json()
    assert why["plan_status"] == "DRAFT"
    assert f"user:{world.seller.pk} proposed this RENEWAL_DEFENSE plan" in why["exists"]["sentence"]
    assert "api_propose" in why["exists"]["sentence"]
    assert [entry["event_type"] for entry in why["exists"]["entries"]] == ["PLAN_CREATED"]
    assert why["stopped"] is None
    assert [answer["code"] for answer in why["waiting"]] == ["AWAITING_PLAN_APPROVAL"]


def test_why_a_refused_approval_is_part_of_what_the_draft_waits_for(world):
    plan = propose(world, signal_types={"SUPPORT_RISK"})
    client_for(world.approver).post(f"{PLANS}{plan.id}/approve/", {}, format="json")
    why = client_for(world.viewer).get(f"{PLANS}{plan.id}/why/").json()
    refused = next(answer for answer in why["waiting"] if answer["code"] == "RISK_REQUIRES_ELEVATED_AUTHORITY")
    assert "refused by the policy gate" in refused["sentence"]
    assert "only a tenant admin may approve it" in refused["sentence"]
    assert [entry["event_type"] for entry in refused["entries"]] == ["POLICY_REJECTED"]


def test_why_an_active_plan_waits_for_a_step_approval(world):
    # given: a real run — approved, activated and advanced by the orchestrator's engine
    plan = propose(world)
    services.plan_approve(plan_id=plan.id, user=world.approver)
    engine.advance_plan(plan.id)
    assert RevenuePlan.objects.get(pk=plan.id).plan_status == PlanStatus.ACTIVE
    meeting = plan.steps.get(action_type=MEETING)
    assert PlanStep.objects.get(pk=meeting.pk).status == StepStatus.PENDING_APPROVAL
    why = client_for(world.viewer).get(f"{PLANS}{plan.id}/why/").json()
    [waiting] = why["waiting"]
    assert waiting["step_id"] == str(meeting.step_id)
    assert waiting["sentence"].startswith(f"Step 1 ({MEETING}) waits for a person's approval")
    assert [entry["event_type"] for entry in waiting["entries"]] == ["STEP_AWAITING_APPROVAL"]


def test_why_a_step_waits_for_its_next_retry(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    retry_at = timezone.now() + timedelta(minutes=10)
    PlanStep.objects.filter(plan=plan, action_type=MEETING).update(
        attempts=1, last_error="calendar timed out", next_attempt_at=retry_at)
    why = client_for(world.viewer).get(f"{PLANS}{plan.id}/why/").json()
    [waiting] = why["waiting"]
    assert waiting["code"] == "STEP_RETRY_SCHEDULED"
    assert "failed on attempt 1 (calendar timed out); attempt 2 is scheduled" in waiting["sentence"]


def test_why_a_plan_stopped(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    services.plan_pause(plan_id=plan.id, user=world.seller, reason="Customer asked for a week")
    why = client_for(world.viewer).get(f"{PLANS}{plan.id}/why/").json()
    assert why["stopped"]["code"] == "PAUSED_BY_USER"
    assert "Customer asked for a week" in why["stopped"]["sentence"]
    assert f"by user:{world.seller.pk}" in why["stopped"]["sentence"]
    assert [entry["event_type"] for entry in why["stopped"]["entries"]] == ["PLAN_PAUSED"]
    services.plan_abort(plan_id=plan.id, user=world.seller, reason="Churned")
    why = client_for(world.viewer).get(f"{PLANS}{plan.id}/why/").json()
    assert why["stopped"]["code"] == "ABORTED_BY_USER"
    assert why["waiting"] == []
