"""What may wait for a person, one row per wait, kept by plans.waits: the facts of an open plan that the inbox
filters, counts and sorts by, copied from the plan, its step, its open pause layers and its account, so that a
page of the inbox reads one narrow table however many plans the tenant has (DESIGN §9; issue 20).

Derived data, never the truth: PostgreSQL triggers (migration 0016) mark a plan whenever something the rows
copy changes — whoever changed it, the ORM, a bulk update or plain SQL — and plans.waits.refresh rebuilds the
marked plans' rows before the inbox is read. Who may act on a wait is still decided per caller when it is read
(plans.inbox_waits), from these facts, by plans.authority's rules.
"""
from django.db import models


class WaitSource(models.TextChoices):
    DRAFT = "DRAFT"  # a DRAFT waiting for its approval, since it was proposed or last changed
    STEP = "STEP"  # a step of an ACTIVE plan PENDING_APPROVAL, since the engine set it waiting
    PAUSED = "PAUSED"  # a PAUSED plan: its open layers (the kinds a person lifts, first set when)


class PlanWait(models.Model):
    # Plain ids, no foreign keys: a row's insert would take a key-share lock on the plan's row, which conflicts
    # with the FOR UPDATE the engine holds while it runs a step.
    tenant_id = models.UUIDField()
    plan_id = models.UUIDField()
    source = models.CharField(max_length=8, choices=WaitSource.choices)
    step_id = models.UUIDField(null=True, blank=True)
    # The plan's facts plans.authority judges by (plans.authority_filters.PLAN_WAIT_FACTS) and its SLA's inputs.
    plan_type = models.CharField(max_length=64)
    risk_level = models.CharField(max_length=8)
    created_by = models.CharField(max_length=100)
    edited_by_since_approval = models.JSONField(default=list, blank=True)
    owner_id = models.IntegerField(null=True, blank=True)
    account_owner_id = models.IntegerField(null=True, blank=True)
    renewal_date = models.DateField(null=True, blank=True)
    # DRAFT and STEP: when the wait began, and when it is due (plans.due.due_at) under the SLAs named `due_key`
    # (plans.due.sla_fingerprint; a process with other SLAs computes its own). PAUSED: when the plan was paused
    # (its wait when no layer holds it); its due time depends on which layers the caller may lift.
    since = models.DateTimeField()
    due_at = models.DateTimeField(null=True, blank=True)
    due_key = models.CharField(max_length=16, blank=True, default="")
    # PAUSED: the earliest open layer of each kind a person lifts (plans.inbox.PERSON_LIFTED_LAYERS), of any
    # kind, and of any kind a resume does not lift (plans.services.layers.LIFTED_BY_RESUME).
    first_person = models.DateTimeField(null=True, blank=True)
    first_policy = models.DateTimeField(null=True, blank=True)
    first_retry_limit = models.DateTimeField(null=True, blank=True)
    first_approval_stale = models.DateTimeField(null=True, blank=True)
    first_owner_inactive = models.DateTimeField(null=True, blank=True)
    first_held = models.DateTimeField(null=True, blank=True)
    first_not_by_resume = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan_id", "source", "step_id"], nulls_distinct=False,
                                    name="planwait_one_per_wait"),
        ]
        # A page in due order reads each kind's rows from here, soonest first, as far as the page goes.
        indexes = [models.Index(fields=["tenant_id", "source", "due_key", "due_at"], name="planwait_tenant_due_idx")]

    def __str__(self) -> str:
        return f"{self.source} {self.plan_id}"


class PlanWaitMark(models.Model):
    """A plan whose waits may have changed since its rows were built (written by the triggers only).
    `generation` is new at every mark: a mark of a plan already marked is a real update, so a writer waits
    for the refresh that holds the mark's row and then leaves a new one (plans.waits.refresh)."""

    plan_id = models.UUIDField(primary_key=True)
    tenant_id = models.UUIDField()
    generation = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["tenant_id"], name="planwaitmark_tenant_idx")]

    def __str__(self) -> str:
        return f"{self.plan_id} ({self.generation})"
