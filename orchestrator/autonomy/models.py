"""What each tenant allows the system to do on its own (DESIGN §5): modes, opt-in and budgets.

Rows, not settings: a change takes effect on the next step decision, with no redeploy, and each
change is in the tenant's ledger chain (orchestrator.autonomy.services writes both).
"""
from django.conf import settings
from django.db import models

from plans.models import Account, Tenant


class AutonomyMode(models.TextChoices):
    PROPOSE_ONLY = "PROPOSE_ONLY"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
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
