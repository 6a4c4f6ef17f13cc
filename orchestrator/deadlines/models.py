"""What the deadline job and the stuck-plan detector did, so each happens once (a row per item and stage, a
row per stuck episode) and an operator can list it."""
from django.db import models

from plans.models import RevenuePlan, Tenant


class DeadlineStage(models.TextChoices):
    REMINDED = "REMINDED"  # due soon: the person the item waits on was reminded
    ESCALATED = "ESCALATED"  # overdue: the tenant's admins were told too
    MISSED = "MISSED"  # past the final deadline: the plan type's rule was applied


class DeadlineNotice(models.Model):
    """One stage of one wait. `item_key` names the wait (kind, plan, step, since when), so a wait that ends and
    begins again (a DRAFT edited, a step waiting a second time) is a new item with stages of its own."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(RevenuePlan, on_delete=models.PROTECT, related_name="deadline_notices")
    item_key = models.CharField(max_length=200)
    kind = models.CharField(max_length=20)  # plans.inbox.InboxKind
    step_id = models.UUIDField(null=True, blank=True)
    stage = models.CharField(max_length=10, choices=DeadlineStage.choices)
    waiting_since = models.DateTimeField()
    due_at = models.DateTimeField()
    final_at = models.DateTimeField()
    noticed_at = models.DateTimeField()
    recipient_ids = models.JSONField(default=list, blank=True)  # user ids mailed (not addresses: the ledger's rule)
    outcome = models.CharField(max_length=300, blank=True, default="")  # MISSED: what the rule did
    ledger_entry_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            # The "once": two runs (two beats) racing for the same stage cannot both insert it.
            models.UniqueConstraint(fields=["item_key", "stage"], name="deadline_notice_once_per_stage"),
        ]
        indexes = [models.Index(fields=["plan", "stage"], name="deadline_notice_plan_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.stage} ({self.plan_id})"


class StuckEpisode(models.Model):
    """An ACTIVE plan that nothing moved for a while although it waited on no person and no clock. One row
    per episode: the plan as last seen (its version and newest ledger entry); a move of the plan starts a
    new episode, and the detector re-drives each episode once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(RevenuePlan, on_delete=models.PROTECT, related_name="stuck_episodes")
    plan_version = models.PositiveIntegerField()
    last_seen_seq = models.PositiveIntegerField()  # the plan's newest ledger entry (chain_seq) when detected
    last_progress_at = models.DateTimeField()
    detected_at = models.DateTimeField()
    redriven_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)  # the plan moved (or finished) since
    last_seen = models.JSONField(default=dict, blank=True)  # what STUCK_DETECTED recorded

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "plan_version", "last_seen_seq"], name="stuck_episode_once"),
        ]
        indexes = [models.Index(fields=["plan"], condition=models.Q(resolved_at__isnull=True),
                                name="stuck_episode_open_idx")]

    def __str__(self) -> str:
        return f"stuck {self.plan_id} since {self.last_progress_at:%Y-%m-%d %H:%M}"
