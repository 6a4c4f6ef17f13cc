"""Execution data: what was approved to happen (ActionIntent), each try at it, connector settings, drafts."""
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from plans.models import Account, RevenuePlan, Tenant


class IntentStatus(models.TextChoices):
    PENDING = "PENDING"
    EXECUTING = "EXECUTING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


FINISHED_INTENT_STATUSES = frozenset(
    {IntentStatus.SUCCEEDED, IntentStatus.FAILED, IntentStatus.EXPIRED, IntentStatus.CANCELLED}
)


class FailureClass(models.TextChoices):
    TRANSIENT = "TRANSIENT"  # retries ran out
    PERMANENT = "PERMANENT"
    WORKER_LOST = "WORKER_LOST"  # the worker died on every delivery
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class Outcome(models.TextChoices):
    """The outcome taxonomy shared with proposals and learning (DESIGN §5)."""

    IDEA_REJECTED = "IDEA_REJECTED"
    IDEA_EDITED = "IDEA_EDITED"
    EXECUTION_FAILED = "EXECUTION_FAILED"
    EXECUTION_SUCCEEDED = "EXECUTION_SUCCEEDED"
    NO_RESPONSE = "NO_RESPONSE"
    NEGATIVE_RESPONSE = "NEGATIVE_RESPONSE"


class ActionIntent(models.Model):
    """An approved thing to do. Its id is the idempotency key: one execution per intent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="action_intents")
    action_type = models.CharField(max_length=64)
    parameters = models.JSONField(default=dict, blank=True)
    plan = models.ForeignKey(RevenuePlan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    step_id = models.UUIDField(null=True, blank=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approving_policy = models.CharField(max_length=100, blank=True, default="")
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=IntentStatus.choices, default=IntentStatus.PENDING)
    # What the connector sends outside as its idempotency key (see effect_key_for).
    effect_key = models.CharField(max_length=100)
    connector = models.CharField(max_length=32, blank=True, default="")
    external_ids = models.JSONField(default=dict, blank=True)
    failure_class = models.CharField(max_length=12, choices=FailureClass.choices, blank=True, default="")
    failure_reason = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    # The claim of the worker executing it: finishing needs the same token, so a worker paused
    # past its lease cannot overwrite what the one that took over recorded.
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    compensated_at = models.DateTimeField(null=True, blank=True)
    # How many times a worker started on it; bounded so a message that kills its worker cannot loop.
    deliveries = models.PositiveIntegerField(default=0)
    # Why it may run on its own or after a person's approval: {decision, reason, explanation, policy_version}.
    autonomy_decision = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "step_id", "attempt"],
                condition=Q(plan__isnull=False),
                name="intent_one_per_plan_step_attempt",
            ),
            models.CheckConstraint(
                condition=Q(approved_by__isnull=False) | ~Q(approving_policy=""), name="intent_is_approved"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "status", "created_at"], name="intent_account_status_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="intent_status_lease_idx"),
            # The admin's list, newest first, in the tenant's rows only.
            models.Index(fields=["tenant", "created_at", "id"], name="intent_tenant_created_idx"),
            # The same list filtered by status, and its bounded count: the walk above would read the tenant's
            # intents of every status to find a page of a rare one (FAILED among 100,000 SUCCEEDED).
            models.Index(fields=["tenant", "status", "created_at", "id"], name="intent_tenant_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action_type} {self.id} ({self.status})"


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "SUCCEEDED"
    TRANSIENT_ERROR = "TRANSIENT_ERROR"
    PERMANENT_ERROR = "PERMANENT_ERROR"


class ExecutionAttempt(models.Model):
    """One call to a connector for an intent, with the delay that preceded it."""

    intent = models.ForeignKey(ActionIntent, on_delete=models.PROTECT, related_name="execution_attempts")
    number = models.PositiveIntegerField()
    delay_before_seconds = models.FloatField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error = models.TextField(blank=True, default="")
    external_ids = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["intent", "number"], name="attempt_intent_number_unique")]

    def __str__(self) -> str:
        return f"{self.intent_id}#{self.number} {self.outcome}"


class ConnectorName(models.TextChoices):
    INTERNAL = "internal"
    CALENDAR = "calendar"
    CRM = "crm"


class ConnectorConfig(models.Model):
    """A tenant's own connector settings and credentials. Setting an endpoint means using only these (plus
    the deployment's timeout); without one the deployment's endpoint and credentials are used
    (connectors/config.py). Writers call full_clean(): clean() applies the SSRF guard and those rules."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="connector_configs")
    connector = models.CharField(max_length=32, choices=ConnectorName.choices)
    settings = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "connector"], name="connector_config_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.connector}"

    def clean(self) -> None:
        # Imported here: the connectors package imports this module.
        from orchestrator.execution.connectors.config import validate_connector_settings

        try:
            validate_connector_settings(self.connector, self.settings)
        except ValidationError as error:
            raise ValidationError({"settings": error.messages}) from None


class ActionRoute(models.Model):
    """Sends a tenant's action type to another connector than the catalogue's default."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="action_routes")
    action_type = models.CharField(max_length=64)
    connector = models.CharField(max_length=32, choices=ConnectorName.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "action_type"], name="action_route_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.action_type}->{self.connector}"


class InternalRecordKind(models.TextChoices):
    TASK = "TASK"
    NOTE = "NOTE"
    BRIEF = "BRIEF"


class InternalRecord(models.Model):
    """What the internal connector writes: a draft task, note or renewal brief on an account."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="internal_records")
    kind = models.CharField(max_length=8, choices=InternalRecordKind.choices)
    effect_key = models.CharField(max_length=100)
    title = models.CharField(max_length=300)
    body = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # The connector's idempotency: one record per effect, however often it is asked.
            models.UniqueConstraint(fields=["tenant", "effect_key"], name="internal_record_effect_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"
