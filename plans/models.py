"""Plan domain data: tenants, accounts, signals, plans, steps and the append-only ledger."""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from plans.errors import LedgerImmutable


class Role(models.TextChoices):
    VIEWER = "VIEWER"
    SELLER = "SELLER"
    PLAN_APPROVER = "PLAN_APPROVER"
    TENANT_ADMIN = "TENANT_ADMIN"


class RiskLevel(models.TextChoices):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class PlanStatus(models.TextChoices):
    DRAFT = "DRAFT"
    APPROVED = "APPROVED"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    ABORTED = "ABORTED"
    EXPIRED = "EXPIRED"


class StepStatus(models.TextChoices):
    PENDING = "PENDING"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    AUTO_EXECUTED = "AUTO_EXECUTED"
    DONE = "DONE"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"


FINISHED_STEP_STATUSES = frozenset({StepStatus.DONE, StepStatus.AUTO_EXECUTED, StepStatus.SKIPPED})


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_unique")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.tenant_id}:{self.role}"


class Account(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="accounts")
    name = models.CharField(max_length=200)
    external_id = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_accounts"
    )
    renewal_date = models.DateField(null=True, blank=True)
    posture = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="account_tenant_external_id_unique")
        ]
        indexes = [models.Index(fields=["tenant", "renewal_date"], name="account_tenant_renewal_idx")]

    def __str__(self) -> str:
        return self.name


class AccountSignal(models.Model):
    """Something observed about an account (support risk, renewal committed, an action's outcome).

    The taxonomy of signal_type is plans.signals; rows are written by plans.services.signal_record and
    the bulk import. A signal from outside names its source system and that system's id for it: the same
    (tenant, source, external_id) is the same signal, however often it is sent.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="signals")
    # The account's tenant, copied so that an external id is unique per tenant (a constraint cannot
    # reach through the account) and the tenant's signals are read without a join.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    signal_type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    observed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Where it came from: "crm", "zendesk", "seed_demo" ... or "system" for what revplan itself observed.
    source = models.CharField(max_length=64, default="system")
    # The source's own id for it; '' when the source has none (then every record is a new signal).
    external_id = models.CharField(max_length=200, blank=True, default="")
    # Who recorded it, as the ledger names actors: user:<id>, integration:<token id>, system:<component>.
    recorded_by = models.CharField(max_length=100, default="system")

    class Meta:
        indexes = [
            models.Index(fields=["account", "signal_type", "observed_at"], name="signal_account_type_idx"),
            models.Index(fields=["account", "-observed_at"], name="signal_account_observed_idx"),
        ]
        constraints = [
            # Idempotency of signals from outside: the guard an INSERT ... ON CONFLICT DO NOTHING relies on.
            models.UniqueConstraint(fields=["tenant", "source", "external_id"], condition=~Q(external_id=""),
                                    name="signal_tenant_source_external_id_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.signal_type}@{self.observed_at:%Y-%m-%d}"

    def save(self, *args, **kwargs):
        # The denormalised tenant always follows the account (callers that only name the account).
        if self.tenant_id is None and self.account_id is not None:
            self.tenant_id = Account.objects.values_list("tenant_id", flat=True).get(pk=self.account_id)
        super().save(*args, **kwargs)


class KillSwitch(models.Model):
    """A tenant-wide (action_type '') or per-action-type stop for execution and activation.

    The global switch is the REVPLAN_EXECUTION_DISABLED setting, so it also works when the
    database is the thing in trouble.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="kill_switches")
    action_type = models.CharField(max_length=64, blank=True, default="")
    engaged = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name_plural = "kill switches"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "action_type"], name="killswitch_tenant_action_unique")
        ]

    def __str__(self) -> str:
        scope = self.action_type or "tenant"
        return f"{self.tenant_id}:{scope} {'ENGAGED' if self.engaged else 'released'}"


class RevenuePlan(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="plans")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="plans")
    plan_type = models.CharField(max_length=64)
    plan_type_version = models.PositiveIntegerField(default=1)
    objective = models.CharField(max_length=500)
    # Only plans.services.plan_transition assigns this, from plans.lifecycle.MOVES (STYLE §4).
    plan_status = models.CharField(max_length=16, choices=PlanStatus.choices, default=PlanStatus.DRAFT)
    constraints = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    risk_level = models.CharField(max_length=8, choices=RiskLevel.choices, default=RiskLevel.LOW)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    aborted_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    completion_reason = models.CharField(max_length=32, blank=True, default="")
    stop_reason_code = models.CharField(max_length=64, blank=True, default="")
    stop_reason_detail = models.TextField(blank=True, default="")
    next_run_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    # What the last approval covered and the facts it was given on (DESIGN §3.3):
    # {"digest", "content", "facts"}; {} while no approval holds. Written by plans.services.approvals only.
    approval_record = models.JSONField(default=dict, blank=True)
    # Users who edited the plan since its last approval: none of them may approve or reapprove it.
    edited_by_since_approval = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            # The conflict invariant's last line of defence (DESIGN §3.5).
            models.UniqueConstraint(
                fields=["account", "plan_type"],
                condition=Q(plan_status="ACTIVE"),
                name="one_active_plan_per_account_and_type",
            ),
        ]
        indexes = [
            models.Index(fields=["plan_status", "next_run_at"], name="plan_status_next_run_idx"),
            models.Index(fields=["account", "plan_type"], name="plan_account_type_idx"),
            models.Index(fields=["plan_status", "expires_at"], name="plan_status_expires_idx"),
            # A list page reads only its rows: one index, led by the tenant, per ordering the API and the admin
            # offer (the key, then its tie-breakers in the key's direction: revplan.api.plans.PlanOrdering).
            # The status one also serves a status filter in the default order, and the inbox's candidates.
            models.Index(fields=["tenant", "plan_status", "created_at", "id"], name="plan_tenant_status_idx"),
            models.Index(fields=["tenant", "created_at", "id"], name="plan_tenant_created_idx"),
            models.Index(fields=["tenant", "updated_at", "id"], name="plan_tenant_updated_idx"),
            models.Index(fields=["tenant", "expires_at", "id"], name="plan_tenant_expires_idx"),
            models.Index(fields=["tenant", "next_run_at", "id"], name="plan_tenant_next_run_idx"),
            models.Index(fields=["tenant", "risk_level", "created_at", "id"], name="plan_tenant_risk_idx"),
            # The console's Active plans page: the open plans, newest first, however many finished ones there are.
            models.Index(fields=["tenant", "-created_at", "-id"], condition=Q(plan_status__in=["ACTIVE", "PAUSED"]),
                         name="plan_tenant_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.plan_type} {self.id} ({self.plan_status})"


class PlanStep(models.Model):
    step_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(RevenuePlan, on_delete=models.CASCADE, related_name="steps")
    sequence = models.PositiveIntegerField()
    action_type = models.CharField(max_length=64)
    # Only plans.services.step_transition assigns this, from plans.lifecycle.STEP_MOVES (STYLE §4).
    status = models.CharField(max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING)
    depends_on = models.JSONField(default=list, blank=True)
    required = models.BooleanField(default=False)
    parameters = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    skip_reason = models.TextField(blank=True, default="")
    risk_level = models.CharField(max_length=8, choices=RiskLevel.choices, default=RiskLevel.LOW)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A retried step waits until then (exponential backoff between step attempts).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # What the step's approval covered: {"digest", "content"}; {} while none holds. A change of the
    # step's content voids it ({"voided": [{field, before, after}]} says what changed).
    approval_record = models.JSONField(default=dict, blank=True)
    # Attempts made before the current series: a person's retry (a redrive) starts a new series of
    # retry_limit attempts; attempt numbers keep counting, so each (plan, step, attempt) stays unique.
    attempts_before_series = models.PositiveIntegerField(default=0)
    # Set only when the plan's end closed the step (a waiting step of a finished plan is SKIPPED with
    # the plan's reason); the only way a required step can be SKIPPED.
    closed_with_plan = models.BooleanField(default=False)

    class Meta:
        ordering = ["sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "sequence"], name="step_plan_sequence_unique", deferrable=models.Deferrable.DEFERRED
            ),
            models.CheckConstraint(
                condition=~Q(required=True, status="SKIPPED", closed_with_plan=False),
                name="required_step_skipped_only_with_its_plan",
            ),
        ]
        # The inbox's steps waiting for a person: few rows of a large table.
        indexes = [models.Index(fields=["plan"], condition=Q(status="PENDING_APPROVAL"),
                                name="step_pending_approval_idx")]

    def __str__(self) -> str:
        return f"{self.sequence}. {self.action_type} ({self.status})"

    @property
    def attempts_in_series(self) -> int:
        """Attempts made in the current series (what the retry limit counts)."""
        return self.attempts - self.attempts_before_series

    @property
    def attempt_out(self) -> bool:
        """An attempt of the current series started and its outcome is not recorded yet: starting an
        attempt clears next_attempt_at and a failure sets it again; a person's retry starts a series
        with none made."""
        return self.status == StepStatus.PENDING and self.attempts_in_series > 0 and self.next_attempt_at is None


class PauseKind(models.TextChoices):
    """Why a PAUSED plan is held, each lifted only by what can clear it (DESIGN §3.2)."""

    PERSON = "PERSON"  # a person paused it; a person's resume lifts it
    KILL_SWITCH = "KILL_SWITCH"  # a tenant or action-type switch; releasing that switch lifts it
    GLOBAL_KILL_SWITCH = "GLOBAL_KILL_SWITCH"  # REVPLAN_EXECUTION_DISABLED; the tick lifts it once off
    RETRY_LIMIT = "RETRY_LIMIT"  # a step failed at its limit; a retry or skip of that step lifts it
    POLICY = "POLICY"  # the autonomy policy or the gate refused; a person's resume lifts it (re-checked)
    APPROVAL_STALE = "APPROVAL_STALE"  # the approval's facts drifted; reapprove lifts it
    OWNER_INACTIVE = "OWNER_INACTIVE"  # the owner left the tenant; a transfer turns it into APPROVAL_STALE
    BREAKER = "BREAKER"  # a connector's circuit breaker is open; its closing lifts it


class PauseLayer(models.Model):
    """One reason a plan is PAUSED. Open while lifted_at is null; at most one open layer per cause."""

    plan = models.ForeignKey("RevenuePlan", on_delete=models.CASCADE, related_name="pause_layers")
    kind = models.CharField(max_length=24, choices=PauseKind.choices)
    # Which instance of the cause: the kill switch's action type ('' tenant-wide), the failed step's id.
    scope = models.CharField(max_length=64, blank=True, default="")
    reason_code = models.CharField(max_length=64)
    explanation = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    set_by = models.CharField(max_length=100)
    set_at = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "kind", "scope"], condition=Q(lifted_at__isnull=True),
                                    name="one_open_pause_layer_per_cause"),
        ]
        indexes = [
            # Releasing a switch and the tick's global lift find their open layers without a scan.
            models.Index(fields=["kind", "scope"], condition=Q(lifted_at__isnull=True), name="pauselayer_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}{f'({self.scope})' if self.scope else ''} on {self.plan_id}"


class EventType(models.TextChoices):
    PLAN_CREATED = "PLAN_CREATED"
    PLAN_EDITED = "PLAN_EDITED"
    PLAN_APPROVED = "PLAN_APPROVED"
    PLAN_ACTIVATED = "PLAN_ACTIVATED"
    PLAN_PAUSED = "PLAN_PAUSED"
    PLAN_RESUMED = "PLAN_RESUMED"
    PLAN_REVISED = "PLAN_REVISED"
    PLAN_ABORTED = "PLAN_ABORTED"
    PLAN_EXPIRED = "PLAN_EXPIRED"
    PLAN_COMPLETED = "PLAN_COMPLETED"
    PLAN_OWNER_CHANGED = "PLAN_OWNER_CHANGED"
    POLICY_REJECTED = "POLICY_REJECTED"
    ACTIVATION_BLOCKED = "ACTIVATION_BLOCKED"
    STEP_APPROVED = "STEP_APPROVED"
    STEP_SKIPPED = "STEP_SKIPPED"
    ACCOUNT_OWNER_CHANGED = "ACCOUNT_OWNER_CHANGED"
    KILL_SWITCH_FLIPPED = "KILL_SWITCH_FLIPPED"
    LEDGER_DIGEST = "LEDGER_DIGEST"
    ACTION_RETRY_SCHEDULED = "ACTION_RETRY_SCHEDULED"
    ACTION_EXECUTED = "ACTION_EXECUTED"
    ACTION_FAILED = "ACTION_FAILED"
    ACTION_BLOCKED = "ACTION_BLOCKED"
    ACTION_EXPIRED = "ACTION_EXPIRED"
    ACTION_CANCELLED = "ACTION_CANCELLED"
    ACTION_COMPENSATED = "ACTION_COMPENSATED"
    ACTION_COMPENSATION_FAILED = "ACTION_COMPENSATION_FAILED"
    STEP_ATTEMPT_STARTED = "STEP_ATTEMPT_STARTED"
    STEP_AWAITING_APPROVAL = "STEP_AWAITING_APPROVAL"
    STEP_RETRY_SCHEDULED = "STEP_RETRY_SCHEDULED"
    AUTONOMY_CHANGED = "AUTONOMY_CHANGED"
    CONNECTOR_CONFIG_CHANGED = "CONNECTOR_CONFIG_CHANGED"
    ACTION_ROUTE_CHANGED = "ACTION_ROUTE_CHANGED"
    MEMBERSHIP_CHANGED = "MEMBERSHIP_CHANGED"
    PAUSE_LAYER_ADDED = "PAUSE_LAYER_ADDED"
    PAUSE_LAYER_LIFTED = "PAUSE_LAYER_LIFTED"
    APPROVAL_VOIDED = "APPROVAL_VOIDED"
    PLAN_REAPPROVED = "PLAN_REAPPROVED"
    STEP_RETRIED = "STEP_RETRIED"
    STEP_CLOSED = "STEP_CLOSED"
    SIGNAL_RECORDED = "SIGNAL_RECORDED"
    SIGNALS_IMPORTED = "SIGNALS_IMPORTED"
    INTEGRATION_TOKEN_CREATED = "INTEGRATION_TOKEN_CREATED"
    INTEGRATION_TOKEN_ROTATED = "INTEGRATION_TOKEN_ROTATED"
    INTEGRATION_TOKEN_REVOKED = "INTEGRATION_TOKEN_REVOKED"
    BREAKER_OPENED = "BREAKER_OPENED"
    BREAKER_HALF_OPENED = "BREAKER_HALF_OPENED"
    BREAKER_CLOSED = "BREAKER_CLOSED"
    BREAKER_FORCED = "BREAKER_FORCED"
    DEADLINE_REMINDED = "DEADLINE_REMINDED"
    DEADLINE_ESCALATED = "DEADLINE_ESCALATED"
    DEADLINE_MISSED = "DEADLINE_MISSED"
    STUCK_DETECTED = "STUCK_DETECTED"
    INCIDENT_REDRIVEN = "INCIDENT_REDRIVEN"
    PLAN_TYPE_MIGRATED = "PLAN_TYPE_MIGRATED"


class LedgerQuerySet(models.QuerySet):
    """Refuses every bulk write that could change or remove history."""

    def update(self, **kwargs):
        raise LedgerImmutable("ledger entries cannot be updated")

    def delete(self):
        raise LedgerImmutable("ledger entries cannot be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise LedgerImmutable("ledger entries cannot be updated")

    def bulk_create(self, objs, *args, **kwargs):
        raise LedgerImmutable("ledger entries are appended one at a time through plans.ledger")

    def update_or_create(self, *args, **kwargs):
        raise LedgerImmutable("ledger entries cannot be updated")


class PlanLedgerEntry(models.Model):
    """One link of a hash chain: a plan's chain (plan set) or its tenant's chain (plan null)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(RevenuePlan, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger")
    step_id = models.UUIDField(null=True, blank=True)
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    actor = models.CharField(max_length=100)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    explanation = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    chain_seq = models.PositiveIntegerField()
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        constraints = [
            # A chain cannot fork: two appends racing for the same position cannot both commit.
            models.UniqueConstraint(
                fields=["plan", "chain_seq"], condition=Q(plan__isnull=False), name="ledger_plan_chain_seq_unique"
            ),
            models.UniqueConstraint(
                fields=["tenant", "chain_seq"], condition=Q(plan__isnull=True), name="ledger_tenant_chain_seq_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "occurred_at"], name="ledger_tenant_occurred_idx"),
            models.Index(fields=["plan", "event_type"], name="ledger_plan_event_idx"),
            # The admin's list filtered by event type, newest first (its order: -occurred_at, -id), and its bounded
            # count: without it both read the tenant's entries of every type (a seq scan of 66,000 rows at 100,000
            # plans for the 10,001 PLAN_CREATED ones the count stops at).
            models.Index(fields=["tenant", "event_type", "occurred_at", "id"], name="ledger_tenant_event_idx"),
        ]
        verbose_name_plural = "plan ledger entries"

    def __str__(self) -> str:
        return f"{self.event_type} #{self.chain_seq} ({self.chain_label})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerImmutable("ledger entries cannot be changed once written")
        if not self.entry_hash:
            raise LedgerImmutable("ledger entries are appended through plans.ledger")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutable("ledger entries cannot be deleted")

    @property
    def chain_label(self) -> str:
        return f"plan {self.plan_id}" if self.plan_id else f"tenant {self.tenant_id}"


class IntegrationToken(models.Model):
    """A tenant's credential for a system that feeds it signals (a CRM, a support desk): it may write
    signals and nothing else. Only the sha256 of the secret is kept; the secret is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="integration_tokens")
    name = models.CharField(max_length=100)
    # The secret's first characters, to tell tokens apart in lists and logs without revealing them.
    key_prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], condition=Q(revoked_at__isnull=True),
                                    name="integrationtoken_tenant_live_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"


# The inbox's derived rows (plans.waits keeps them); imported here so Django finds the models.
from plans.wait_models import PlanWait, PlanWaitMark  # noqa: E402,F401
