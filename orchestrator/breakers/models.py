"""The circuit breaker's state of record: one row per (tenant, connector), changed only by breakers.machine."""
from django.db import models
from django.db.models import Q

from orchestrator.execution.models import ConnectorName


class BreakerState(models.TextChoices):
    CLOSED = "CLOSED"  # steps are sent; the window counts their tries
    OPEN = "OPEN"  # nothing is sent; the plans that need the connector are held [BREAKER]
    HALF_OPEN = "HALF_OPEN"  # one probe is let through; its outcome closes or re-opens the breaker


class CircuitBreaker(models.Model):
    """A (tenant, connector) with no row is CLOSED. The sliding window of tries lives in Redis (window.py):
    it is counted on every try and worth nothing once old; the state and each change of it live here and
    in the tenant's ledger chain."""

    tenant = models.ForeignKey("plans.Tenant", on_delete=models.CASCADE, related_name="circuit_breakers")
    connector = models.CharField(max_length=32, choices=ConnectorName.choices)
    state = models.CharField(max_length=16, choices=BreakerState.choices, default=BreakerState.CLOSED)
    # Forced open by a tenant admin: it does not half-open on its own, only a forced close ends it.
    forced = models.BooleanField(default=False)
    changed_at = models.DateTimeField()
    changed_by = models.CharField(max_length=100)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    explanation = models.TextField(blank=True, default="")
    # The window's counts (and the thresholds) at the last change: why it opened.
    evidence = models.JSONField(default=dict, blank=True)
    # OPEN: when the cool-down ends and the breaker may half-open.
    retry_at = models.DateTimeField(null=True, blank=True)
    # HALF_OPEN: the plan (or a planless intent) let through as the probe; '' until one is chosen.
    probe_holder = models.CharField(max_length=64, blank=True, default="")
    times_opened = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "circuit breaker"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "connector"], name="one_breaker_per_tenant_connector"),
        ]
        indexes = [
            # The sweep reads the breakers that are not CLOSED: a few rows of however many.
            models.Index(fields=["state"], condition=~Q(state="CLOSED"), name="breaker_not_closed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.connector} breaker of {self.tenant_id}: {self.state}{' (forced)' if self.forced else ''}"
