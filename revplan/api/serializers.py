"""API serializers: input validation, the RevenuePlanV1 wire shape, intents, ledger entries, accounts.

Output serializers describe shapes that plans.schemas (pydantic) already produced; input
serializers only check form (types, sizes, known values). Rules stay in plans.services.
"""
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orchestrator.execution.explain import explain_intent, outcome_sentence
from orchestrator.execution.models import ActionIntent, AttemptOutcome, ExecutionAttempt, FailureClass, IntentStatus
from plans.models import EventType, PauseKind, PlanStatus, RiskLevel, StepStatus
from plans.plan_types import ACTION_TYPE_NAMES, PLAN_TYPES
from plans.schemas import MAX_JSON_KEYS, MAX_STEPS
from revplan.api.common import StrictSerializer, UuidStringField

MAX_REASON_LENGTH = 1000


# --- plans out: RevenuePlanV1 plus each step's current execution ----------------------------


class LastTrySerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="When the last connector call ended.")
    outcome = serializers.ChoiceField(choices=AttemptOutcome.choices)


class TriesSummarySerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Connector calls made for this attempt.")
    last_try = LastTrySerializer(allow_null=True, help_text="The last call; null before any (and, in a plan's "
                                 "`latest_execution`, while it runs or when its worker was lost: see the status API).")


class ActionIntentSerializer(serializers.Serializer):
    """An action intent: one attempt of a plan step (or a standalone action) through the execution spine.

    The one shape of an intent everywhere: a step's `latest_execution`, the status API, the executions list.
    """

    intent_id = serializers.UUIDField(source="id")
    account_id = serializers.UUIDField()
    plan_id = serializers.UUIDField(allow_null=True)
    step_id = serializers.UUIDField(allow_null=True)
    attempt = serializers.IntegerField(allow_null=True, help_text="The step attempt this intent carries out.")
    action_type = serializers.CharField()
    status = serializers.ChoiceField(choices=IntentStatus.choices)
    outcome = serializers.SerializerMethodField(help_text=(
        "One sentence for where it ended up, its tries summarised: \"Succeeded on the 3rd try, 2 min after it was "
        "approved to run.\", \"Failed: the CRM answered HTTP 503 (server error) on all 4 tries; the plan is PAUSED "
        "now.\", a lost worker (WORKER_LOST) explained. Never quotes what the other side answered."))
    explanation = serializers.SerializerMethodField(help_text="The state now, as a sentence (kept for existing "
                                                    "clients; `outcome` summarises better).")
    connector = serializers.CharField()
    external_ids = serializers.DictField()
    failure_class = serializers.ChoiceField(choices=[("", ""), *FailureClass.choices])
    failure_reason = serializers.CharField(allow_blank=True, help_text="A classified sentence of revplan's own, never "
                                           "the connector's raw answer.")
    tries = serializers.SerializerMethodField(help_text="The connector calls made for this attempt: how many, and the "
                                              "last one's time and outcome. Each one: `?include=tries` on the "
                                              "status API and the executions list.")
    approving_policy = serializers.CharField(allow_blank=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    compensated_at = serializers.DateTimeField(allow_null=True)

    def get_explanation(self, intent: ActionIntent) -> str:
        return explain_intent(intent)

    @extend_schema_field(serializers.CharField())
    def get_outcome(self, intent: ActionIntent) -> str:
        return outcome_sentence(intent, _prefetched_tries(intent))

    @extend_schema_field(TriesSummarySerializer)
    def get_tries(self, intent: ActionIntent) -> dict:
        tries = _prefetched_tries(intent)
        if tries:
            last_try = {"at": tries[-1].finished_at, "outcome": tries[-1].outcome}
        else:
            # Not read (a step's latest_execution in a plan page): the try that finished the intent is known
            # from the intent itself; a running one's, or a lost worker's, only from the tries.
            outcome = _LAST_TRY_OF_FINISH.get(intent.failure_class or intent.status)
            last_try = {"at": intent.finished_at, "outcome": outcome} if outcome and intent.attempts else None
        return {"count": intent.attempts, "last_try": last_try}


_LAST_TRY_OF_FINISH = {
    IntentStatus.SUCCEEDED: AttemptOutcome.SUCCEEDED,
    FailureClass.TRANSIENT: AttemptOutcome.TRANSIENT_ERROR,
    FailureClass.PERMANENT: AttemptOutcome.PERMANENT_ERROR,
}


def _prefetched_tries(intent: ActionIntent) -> list[ExecutionAttempt]:
    """The intent's connector tries if the read prefetched them (the status API and lists do), else none:
    a step's latest_execution inside a plan costs no query per step."""
    prefetched = getattr(intent, "_prefetched_objects_cache", {}).get("execution_attempts")
    return sorted(prefetched, key=lambda attempt: attempt.number) if prefetched is not None else []


class ConnectorTrySerializer(serializers.ModelSerializer):
    error = serializers.CharField(allow_blank=True, help_text="The try's failure as a classified sentence of "
                                  "revplan's own (\"The CRM answered HTTP 503 (server error).\"), never the raw "
                                  "answer; blank when it succeeded.")

    class Meta:
        model = ExecutionAttempt
        fields = ["number", "outcome", "error", "delay_before_seconds", "started_at", "finished_at", "external_ids"]


INCLUDE_TRIES = "tries"


class ActionIntentDetailSerializer(ActionIntentSerializer):
    """An intent as the status API and the executions list show it; each connector call only when asked."""

    try_history = ConnectorTrySerializer(source="execution_attempts", many=True, required=False, help_text=(
        "Each connector call, oldest first: only with `?include=tries`."))

    def to_representation(self, intent):
        data = super().to_representation(intent)
        if INCLUDE_TRIES not in self.context.get("include", ()):
            data.pop("try_history", None)
        return data


class ApprovalChangeSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="What changed: a content field (`parameters`, `steps.<id>.action_type`, "
                                  "`step_order` …) or a fact (`owner_id`, `renewal_date`, `risk_level`, "
                                  "`plan_type_version`).")
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class ApprovalSerializer(serializers.Serializer):
    """What an approval covered, and whether it still holds (DESIGN §3.3)."""

    state = serializers.ChoiceField(choices=["CURRENT", "VOID", "STALE"], help_text=(
        "CURRENT: it covers the content as it is, on facts that still hold. VOID: the content changed since (or the "
        "plan was revised back to DRAFT): a new approval is needed. STALE (plans only): the facts it was given on "
        "drifted (owner, renewal date, risk, config version): a reapproval is needed."))
    approved_by = serializers.IntegerField(allow_null=True)
    approved_at = serializers.DateTimeField(allow_null=True)
    changed_since = ApprovalChangeSerializer(many=True, help_text="What changed since the approval, field by field.")


class StepPreviewSerializer(serializers.Serializer):
    """What the step will send when it runs, described by its connector without sending (plans.previews)."""

    connector = serializers.ChoiceField(choices=["internal", "calendar", "crm", ""], help_text=(
        "The connector that will carry it out (the tenant's route, else the catalogue's); blank when none does."))
    summary = serializers.CharField(help_text=(
        "A sentence: what will be sent, where and to whom; when unavailable, why, naming the setting to fill in."))
    target = serializers.CharField(allow_blank=True, help_text=(
        "Where it goes: the calendar, the CRM request line (POST <base_url>/tasks), a record in revplan; blank "
        "when unavailable."))
    body = serializers.JSONField(allow_null=True, help_text=(
        "Exactly what would be sent, built by the code that sends it. crm: the task request's JSON body "
        "(subject, account_external_id, account_name, action_type, details). calendar: the draft event's uid, "
        "summary, start, end (ISO 8601), description, status (TENTATIVE), calendar and calendar_url. internal: "
        "the record's kind, title and body. A meeting without a start parameter is put two weekdays after the "
        "step runs; a brief lists the account's latest signals when written. null when unavailable. Never a "
        "secret."))
    unavailable = serializers.BooleanField(help_text=(
        "True when the step cannot be described (its connector is not configured, or would refuse a parameter)."))


class PlanStepV1Serializer(serializers.Serializer):
    step_id = serializers.UUIDField()
    sequence = serializers.IntegerField(min_value=0)
    action_type = serializers.CharField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    depends_on = serializers.ListField(child=serializers.UUIDField())
    required = serializers.BooleanField()
    parameters = serializers.DictField()
    attempts = serializers.IntegerField(min_value=0)
    attempts_before_series = serializers.IntegerField(min_value=0, help_text=(
        "Attempts made before the current series: a person's retry starts a new series of retry_limit attempts; "
        "attempt numbers keep counting."))
    last_error = serializers.CharField(allow_blank=True)
    skip_reason = serializers.CharField(allow_blank=True)
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    approved_at = serializers.DateTimeField(allow_null=True)
    approved_by = serializers.IntegerField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    approval = ApprovalSerializer(allow_null=True, help_text="The step's approval by a person; null if it never "
                                  "had one.")
    latest_execution = ActionIntentSerializer(
        allow_null=True, help_text="The execution of the current attempt (attempt = attempts); null before any."
    )
    preview = StepPreviewSerializer(allow_null=True, help_text=(
        "What the step will send, for a step yet to run (PENDING, PENDING_APPROVAL; FAILED: what a retry would "
        "send) of a plan that has not ended, so a person approves what will be sent; null for the others."))


class StopReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)


class BlockingLayerSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=PauseKind.choices)
    scope = serializers.CharField(allow_blank=True, help_text="The switch's action type, the failed step's id; "
                                  "blank when the cause is tenant-wide.")
    reason_code = serializers.CharField()
    set_by = serializers.CharField()


class PauseLayerSerializer(serializers.Serializer):
    """One open reason the plan is PAUSED (DESIGN §3.2); the plan runs again when none is left."""

    kind = serializers.ChoiceField(choices=PauseKind.choices)
    scope = serializers.CharField(allow_blank=True, help_text="Which instance of the cause: the kill switch's action "
                                  "type, the failed step's id; blank when tenant-wide or unscoped.")
    reason_code = serializers.CharField()
    explanation = serializers.CharField()
    set_by = serializers.CharField(help_text="Who or what set it: user:<id>, system:<component>.")
    set_at = serializers.DateTimeField()
    lifted_by = serializers.CharField(help_text="Who or what lifts it, as a sentence.")
    lifted_by_verb = serializers.CharField(allow_null=True, help_text=(
        "The verb that lifts it: resume (PERSON, POLICY), release_kill_switch, retry_step (or skip the step if "
        "optional), reapprove, transfer_account; null when no one calls anything: the operator turning "
        "REVPLAN_EXECUTION_DISABLED off (the next tick lifts it), a circuit breaker closing."))


class BlockedBySerializer(serializers.Serializer):
    """One thing that keeps the plan from moving (orchestrator.blocked_by; the same source as /why/)."""

    code = serializers.ChoiceField(choices=[
        *PauseKind.choices, "AWAITING_PLAN_APPROVAL", "GATE_REFUSED", "AWAITING_ACTIVATION", "ACTIVATION_BLOCKED",
        "AWAITING_STEP_APPROVAL", "STEP_RETRY_SCHEDULED", "STEP_RUNNING", "STEP_FAILED", "PAUSED",
    ], help_text="A pause layer's kind, or what the plan or one of its steps waits for.")
    detail = serializers.CharField(help_text="A sentence: what holds it, and who or what ends the wait.")
    since = serializers.DateTimeField(allow_null=True)
    layer = BlockingLayerSerializer(allow_null=True, help_text="The pause layer that holds the plan, if one does.")
    step_id = serializers.UUIDField(allow_null=True, help_text="The step the wait is about, if one.")
    waits_on = serializers.ChoiceField(choices=["PERSON", "TIME", "SYSTEM"],
                                       help_text="What ends it: a person's act, a clock, or the system's own work.")
    who_can_act = serializers.ListField(child=serializers.CharField(), help_text=(
        "Tenant roles that may end it; PLAN_OWNER is the plan's owner whatever their role, OPERATOR whoever runs "
        "the deployment. Empty when no one needs to act."))
    verb = serializers.CharField(allow_null=True, help_text=(
        "The verb that ends it: approve, approve_step, resume, retry_step, reapprove, edit, revise, "
        "release_kill_switch, transfer_account; null when it ends on its own."))


class RevenuePlanV1Serializer(serializers.Serializer):
    """A plan in the RevenuePlanV1 shape (DESIGN §3.1); steps carry their current execution."""

    plan_id = serializers.UUIDField()
    tenant_id = serializers.UUIDField()
    account_id = serializers.UUIDField()
    plan_type = serializers.CharField()
    plan_type_version = serializers.IntegerField()
    objective = serializers.CharField()
    plan_status = serializers.ChoiceField(choices=PlanStatus.choices)
    steps = PlanStepV1Serializer(many=True)
    constraints = serializers.DictField()
    owner_id = serializers.IntegerField(allow_null=True)
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    approved_at = serializers.DateTimeField(allow_null=True)
    approved_by = serializers.IntegerField(allow_null=True)
    activated_at = serializers.DateTimeField(allow_null=True)
    paused_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    aborted_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    completion_reason = serializers.CharField(allow_blank=True)
    stop_reason = StopReasonSerializer(allow_null=True)
    next_run_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField()
    version = serializers.IntegerField(help_text="Bumped on every change; send it back to write optimistically.")
    approval = ApprovalSerializer(allow_null=True, help_text="The plan's last approval; null if it was never approved.")
    edited_by_since_approval = serializers.ListField(
        child=serializers.IntegerField(), help_text="Users who edited the plan since its last approval (none of "
        "them may approve or reapprove it).")
    pause_layers = PauseLayerSerializer(many=True, help_text=(
        "The open pause layers, oldest first: each reason the plan is PAUSED and what lifts it. Empty unless PAUSED."))
    blocked_by = BlockedBySerializer(many=True, help_text=(
        "What keeps the plan from moving now: each pause layer, a step waiting for a person or a clock, an "
        "attempt running. Empty only when the plan can move on its own, or has finished."))


# --- plans in --------------------------------------------------------------------------------


def _bounded_object(value: dict, *, name: str) -> dict:
    if len(value) > MAX_JSON_KEYS:
        raise serializers.ValidationError(f"{name} may have at most {MAX_JSON_KEYS} keys.")
    return value


class StepInputSerializer(StrictSerializer):
    """A step as a person writes it: the service fills status, risk, required and attempts."""

    step_id = UuidStringField(required=False, help_text="Keep a step's identity across edits; omit for new.")
    action_type = serializers.ChoiceField(choices=ACTION_TYPE_NAMES)
    depends_on = serializers.ListField(child=UuidStringField(), max_length=MAX_STEPS, required=False)
    parameters = serializers.DictField(required=False)

    def validate_parameters(self, value):
        return _bounded_object(value, name="parameters")


class _DraftFieldsSerializer(StrictSerializer):
    objective = serializers.CharField(min_length=1, max_length=500, required=False)
    constraints = serializers.DictField(required=False)

    def validate_constraints(self, value):
        return _bounded_object(value, name="constraints")


class PlanCreateSerializer(_DraftFieldsSerializer):
    account_id = UuidStringField()
    plan_type = serializers.ChoiceField(choices=sorted(PLAN_TYPES))
    steps = StepInputSerializer(many=True, min_length=1, max_length=MAX_STEPS)


class PlanProposeSerializer(StrictSerializer):
    account_id = UuidStringField()
    plan_type = serializers.ChoiceField(choices=sorted(PLAN_TYPES), default="RENEWAL_DEFENSE")


class VersionField(serializers.IntegerField):
    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**31 - 1)
        kwargs.setdefault("help_text", "The plan version this write is based on; a mismatch is a 409.")
        super().__init__(**kwargs)


class PlanEditSerializer(_DraftFieldsSerializer):
    """PATCH: every field optional; omitted steps stay as they are."""

    steps = StepInputSerializer(many=True, min_length=1, max_length=MAX_STEPS, required=False)
    version = VersionField()


class VersionInputSerializer(StrictSerializer):
    version = VersionField()


class OptionalReasonInputSerializer(VersionInputSerializer):
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, required=False, allow_blank=True)


class RequiredReasonInputSerializer(VersionInputSerializer):
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH)


# --- ledger and why --------------------------------------------------------------------------


class LedgerEntrySerializer(serializers.Serializer):
    entry_id = serializers.IntegerField(source="id")
    chain_seq = serializers.IntegerField()
    event_type = serializers.ChoiceField(choices=EventType.choices)
    step_id = serializers.UUIDField(allow_null=True)
    actor = serializers.CharField()
    reason_code = serializers.CharField(allow_blank=True)
    explanation = serializers.CharField(allow_blank=True)
    data = serializers.DictField()
    occurred_at = serializers.DateTimeField()
    prev_hash = serializers.CharField()
    entry_hash = serializers.CharField()


class WhyAnswerSerializer(serializers.Serializer):
    code = serializers.CharField()
    sentence = serializers.CharField()
    step_id = serializers.UUIDField(allow_null=True)
    entries = LedgerEntrySerializer(many=True, help_text="The ledger entries the sentence is drawn from.")


class PlanWhySerializer(serializers.Serializer):
    plan_id = serializers.UUIDField(source="plan.id")
    plan_status = serializers.ChoiceField(source="plan.plan_status", choices=PlanStatus.choices)
    exists = WhyAnswerSerializer(help_text="Why did this plan exist?")
    stopped = WhyAnswerSerializer(allow_null=True, help_text="Why did it stop? Null unless PAUSED or finished.")
    waiting = WhyAnswerSerializer(
        many=True, help_text="Why is it waiting? Step approvals, retries, gate refusals; empty once it finished."
    )
    held = WhyAnswerSerializer(
        many=True, help_text="What holds it PAUSED: one answer per open pause layer, oldest first, each saying who "
        "or what lifts it. Empty unless PAUSED."
    )


# --- accounts --------------------------------------------------------------------------------


class AccountSerializer(serializers.Serializer):
    account_id = serializers.UUIDField(source="id")
    tenant_id = serializers.UUIDField()
    name = serializers.CharField()
    external_id = serializers.CharField()
    owner_id = serializers.IntegerField(allow_null=True)
    renewal_date = serializers.DateField(allow_null=True)
    posture = serializers.DictField()
    open_plan_count = serializers.IntegerField(help_text="Plans of the account not yet COMPLETED, ABORTED or EXPIRED.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
