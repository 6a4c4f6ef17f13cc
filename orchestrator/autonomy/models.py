"""What each tenant allows the system to do on its own (DESIGN §5): modes, opt-in and budgets.

Rows, not settings: a change takes effect on the next step decision, with no redeploy, and each
change is in the tenant's ledger chain (orchestrator.autonomy.services writes both).
"""
import uuid

from django.conf import settings
from django.db import models

from plans.models import Account, Tenant


class AutonomyMode(models.TextChoices):
    PROPOSE_ONLY = "PROPOSE_ONLY"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    # A person still approves each step; the policy records beside it what it would have done on its own.
    SHADOW = "SHADOW"
    AUTO_EXECUTE = "AUTO_EXECUTE"
    DISABLED = "DISABLED"


DEFAULT_MODE = AutonomyMode.APPROVAL_REQUIRED


class TenantAutonomy(models.Model):
    """One row per tenant that touched its autonomy settings; no row = never opted in, default budgets."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="autonomy")
    opted_in_at = models.DateTimeField(null=True, blank=True)
    opted_in_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    max_per_account_per_day = models.PositiveIntegerField(default=3)
    # The proposal triggers' cost gate: DRAFTs the system may propose per day, and how long an account
    # it proposed for is left alone (whatever happened to that draft).
    max_proposals_per_day = models.PositiveIntegerField(default=20)
    proposal_cooldown_days = models.PositiveIntegerField(default=7)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "tenant autonomy setting"

    def __str__(self) -> str:
        return f"{self.tenant_id}: {'opted in' if self.opted_in else 'not opted in'}"

    @property
    def opted_in(self) -> bool:
        return self.opted_in_at is not None


class ActionTypeAutonomy(models.Model):
    """A tenant's mode for one action type and how many of it may run on their own per day."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="action_type_autonomy")
    action_type = models.CharField(max_length=64)
    mode = models.CharField(max_length=20, choices=AutonomyMode.choices, default=DEFAULT_MODE)
    max_per_day = models.PositiveIntegerField(default=10)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name = "action type autonomy setting"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "action_type"], name="actiontypeautonomy_tenant_type_unique")
        ]

    def __str__(self) -> str:
        return f"{self.action_type}: {self.mode}"


class AutonomyUsage(models.Model):
    """Autonomous executions taken from one budget on one (UTC) day; incremented only by a conditional UPDATE."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    # One of the two: the per-account budget row, or the per-action-type one.
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    action_type = models.CharField(max_length=64, blank=True, default="")
    used = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "autonomy budget use"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "account"], condition=models.Q(account__isnull=False),
                                    name="autonomyusage_account_day_unique"),
            models.UniqueConstraint(fields=["tenant", "day", "action_type"], condition=models.Q(account__isnull=True),
                                    name="autonomyusage_action_type_day_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.account_id or self.action_type}: {self.used}"


class GateDecision(models.TextChoices):
    ALLOW = "ALLOW"
    DEFER = "DEFER"  # not now (cooldown): the account is looked at again later
    SKIP = "SKIP"  # not this cycle (an open plan already, or the day's budget is spent)


class ProposalDecision(models.Model):
    """One DecisionCostGate verdict on proposing a plan for an account, kept whatever it was."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="proposal_decisions")
    plan_type = models.CharField(max_length=64)
    trigger = models.CharField(max_length=64)
    decision = models.CharField(max_length=8, choices=GateDecision.choices)
    reason = models.CharField(max_length=64)
    explanation = models.TextField()
    facts = models.JSONField(default=dict)
    # For an ALLOW: the DRAFT it led to, or why the proposer produced none.
    plan = models.ForeignKey("plans.RevenuePlan", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "decision", "decided_at"], name="proposaldecision_budget_idx"),
            models.Index(fields=["account", "decision", "decided_at"], name="proposaldecision_cooldown_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} {self.account_id}: {self.reason}"


class AutonomyDigest(models.Model):
    """What autopilot did on one (UTC) day for one tenant, as stored, served and e-mailed."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    summary = models.JSONField()
    text = models.TextField()
    emailed_to = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="autonomydigest_tenant_day_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}"


class PersonDecision(models.TextChoices):
    """What a person did with a step the policy judged in shadow mode ('' while nobody has)."""

    UNDECIDED = "", "undecided"
    APPROVED = "APPROVED"  # approved the step as the policy saw it
    APPROVED_AFTER_EDIT = "APPROVED_AFTER_EDIT"  # approved it after changing it (the content's digest differs)
    SKIPPED = "SKIPPED"
    ABORTED = "ABORTED"  # aborted the plan while the step waited
    NONE = "NONE"  # the plan ended (expired, completed) with nobody deciding: no evidence either way


class ShadowDecision(models.Model):
    """The policy's verdict on a step in SHADOW mode, and beside it what the person then decided.

    Written by the engine when the step comes due (one row per step attempt and content it waits with); the
    person's decision is read from the plan's ledger afterwards (orchestrator.autonomy.shadow.resolve)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    plan = models.ForeignKey("plans.RevenuePlan", on_delete=models.CASCADE, related_name="+")
    step_id = models.UUIDField()
    # The attempt the step waited to make (its attempts + 1 then): a step asks again after a retry.
    attempt = models.PositiveIntegerField()
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    action_type = models.CharField(max_length=64)
    # The policy as if the action type were AUTO_EXECUTE (and the tenant opted in): would it have run?
    would_run = models.BooleanField()
    reason = models.CharField(max_length=64)
    explanation = models.TextField()
    policy_version = models.CharField(max_length=64)
    facts = models.JSONField()
    # The step's content as the policy judged it (plans.services.approvals.digest of step_content).
    content_digest = models.CharField(max_length=64)
    decided_at = models.DateTimeField()
    # The chain position of the wait's STEP_AWAITING_APPROVAL entry: what a person did comes after it in the
    # plan's chain (ledger order, not clocks that may differ between hosts).
    awaiting_seq = models.PositiveIntegerField()
    person_decision = models.CharField(max_length=24, choices=PersonDecision.choices, blank=True, default="")
    person_decided_by = models.IntegerField(null=True, blank=True)
    person_decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "shadow decision"
        constraints = [
            # A step judged again after an edit (its content changed) is a new verdict; the same wait twice is not.
            models.UniqueConstraint(fields=["step_id", "attempt", "content_digest"],
                                    name="shadowdecision_step_attempt_content_unique"),
        ]
        indexes = [
            # Agreement per action type over a window, and the open ones to resolve.
            models.Index(fields=["tenant", "action_type", "decided_at"], name="shadow_tenant_type_idx"),
            models.Index(fields=["tenant", "decided_at"], condition=models.Q(person_decision=""),
                         name="shadow_undecided_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action_type} {'would run' if self.would_run else 'would ask'}: {self.person_decision or '?'}"


class ProposalStatus(models.TextChoices):
    PROPOSED = "PROPOSED"
    CONFIRMED = "CONFIRMED"
    DISMISSED = "DISMISSED"
    SUPERSEDED = "SUPERSEDED"  # the mode changed meanwhile: the evidence was about a mode no longer set


class AutonomyProposal(models.Model):
    """A promotion SHADOW -> AUTO_EXECUTE the daily review proposes on evidence; a tenant admin confirms it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    action_type = models.CharField(max_length=64)
    from_mode = models.CharField(max_length=20, choices=AutonomyMode.choices)
    to_mode = models.CharField(max_length=20, choices=AutonomyMode.choices)
    status = models.CharField(max_length=12, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED)
    # counts, window, thresholds: what the review saw (also in the ledger entry)
    evidence = models.JSONField()
    proposed_at = models.DateTimeField()
    decided_by = models.CharField(max_length=100, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "autonomy proposal"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "action_type"], condition=models.Q(status="PROPOSED"),
                                    name="one_open_autonomy_proposal"),
        ]

    def __str__(self) -> str:
        return f"{self.action_type}: {self.from_mode} -> {self.to_mode} ({self.status})"
