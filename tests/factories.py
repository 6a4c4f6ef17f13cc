"""factory_boy factories for the plan domain. They write rows directly: test setup, not app code."""
import uuid
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from plans.models import Account, AccountSignal, Membership, PlanStatus, PlanStep, RevenuePlan, Role, StepStatus, Tenant
from plans.plan_types import ACTION_TYPES, highest_risk


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}-{uuid.uuid4().hex[:6]}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user-{n}-{uuid.uuid4().hex[:6]}")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.SELLER


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Account {n}")
    external_id = factory.Sequence(lambda n: f"ext-{n}")
    renewal_date = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=90))


class SignalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccountSignal

    account = factory.SubFactory(AccountFactory)
    signal_type = "SUPPORT_RISK"
    observed_at = factory.LazyFunction(timezone.now)


DEFAULT_ACTION_TYPES = ("REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF")


def make_plan(
    *,
    account: Account,
    status: str = PlanStatus.DRAFT,
    action_types=DEFAULT_ACTION_TYPES,
    created_by: str = "system:tests",
    step_status: str = StepStatus.PENDING,
    **fields,
) -> RevenuePlan:
    """A plan with steps in the given status, as if it had got there through the services."""
    now = timezone.now()
    risk = highest_risk(ACTION_TYPES[a].risk_level for a in action_types if a in ACTION_TYPES)
    defaults = {
        "tenant_id": account.tenant_id,
        "account": account,
        "plan_type": "RENEWAL_DEFENSE",
        "objective": "Secure renewal before day -30",
        "plan_status": status,
        "constraints": {"no_external_contact_without_approval": True},
        "owner_id": account.owner_id,
        "risk_level": risk,
        "expires_at": now + timedelta(days=30),
        "created_at": now - timedelta(minutes=5),
        "updated_at": now - timedelta(minutes=5),
        "created_by": created_by,
    }
    if status not in (PlanStatus.DRAFT,):
        defaults["approved_at"] = now - timedelta(minutes=1)
    defaults.update(fields)
    plan = RevenuePlan.objects.create(**defaults)
    for sequence, action_type in enumerate(action_types):
        spec = ACTION_TYPES.get(action_type)
        PlanStep.objects.create(
            plan=plan,
            sequence=sequence,
            action_type=action_type,
            status=step_status,
            required=spec.required if spec else False,
            risk_level=spec.risk_level if spec else "LOW",
        )
    return plan


def allow_autopilot(tenant, *action_types: str, max_per_day: int = 10_000, max_per_account_per_day: int = 10_000):
    """Opt the tenant in and let these action types run on their own (test set-up, not the audited path)."""
    from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyMode, TenantAutonomy

    TenantAutonomy.objects.update_or_create(
        tenant=tenant, defaults={"opted_in_at": timezone.now(), "max_per_account_per_day": max_per_account_per_day}
    )
    for action_type in action_types or ("PREP_RENEWAL_BRIEF",):
        ActionTypeAutonomy.objects.update_or_create(
            tenant=tenant, action_type=action_type,
            defaults={"mode": AutonomyMode.AUTO_EXECUTE, "max_per_day": max_per_day},
        )
