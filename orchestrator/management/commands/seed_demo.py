"""manage.py seed_demo: idempotent demo tenants, users, accounts, signals, routes, autonomy and DRAFT plans (DESIGN §8).

In orchestrator/ because the demo sets up both apps (connector routes and autonomy are the
orchestrator's), and plans/ imports nothing from orchestrator/.
"""
import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from orchestrator.autonomy import services as autonomy
from orchestrator.execution.models import ActionRoute, ConnectorName
from plans import services
from plans.lifecycle import NON_TERMINAL
from plans.models import Account, Membership, RevenuePlan, Role, Tenant
from plans.proposals import renewal_defense_draft

TENANTS = {
    "acme-corp": ("Acme Corp", {"viewer": Role.VIEWER, "seller": Role.SELLER,
                                "approver": Role.PLAN_APPROVER, "admin": Role.TENANT_ADMIN}),
    "globex": ("Globex", {"seller": Role.SELLER, "admin": Role.TENANT_ADMIN}),
}
ACCOUNT_NAMES = [
    "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent", "Aperture",
    "Gringotts", "Oscorp", "Wonka", "Dunder", "Pied Piper", "Monarch", "Massive Dynamic", "Nakatomi", "Buy n Large",
    "Blue Sun",
]
ACCOUNTS_PER_TENANT = 20
SUPPORT_RISK_EVERY = 4  # every 4th account has a support-risk signal
DRAFTS_PER_TENANT = 4
# Acme lets the LOW-risk brief run on its own (opted in, through the audited services); every step of Globex
# waits for a person, its brief in shadow mode: the policy's verdict is recorded beside each person's decision.
AUTOPILOT = {"acme-corp": {"PREP_RENEWAL_BRIEF": 50}}
SHADOW = {"globex": ["PREP_RENEWAL_BRIEF"]}
CONSOLE_GROUP = "revplan console"
CONSOLE_MODELS = ["tenant", "account", "accountsignal", "killswitch", "revenueplan", "planledgerentry"]
# Memberships and connector settings: everyone may look; a change is saved through the services,
# which let only the tenant's admins (so a seller's or approver's save is refused as a form error).
CONSOLE_PLANS_WRITE_PERMISSIONS = ["add_membership", "change_membership", "view_membership"]
# Autonomy pages: everyone may look; a change is saved through the services, which let only tenant admins.
CONSOLE_AUTONOMY_PERMISSIONS = [
    *(f"view_{model}" for model in ("tenantautonomy", "actiontypeautonomy", "proposaldecision", "autonomydigest",
                                    "autonomyusage", "stuckepisode", "deadlinenotice")),
    "add_tenantautonomy", "change_tenantautonomy", "add_actiontypeautonomy", "change_actiontypeautonomy",
    *(f"{verb}_{model}" for verb in ("view", "add", "change", "delete")
      for model in ("connectorconfig", "actionroute")),
]


def _stable_offset(key: str, low: int, high: int) -> int:
    """A day offset that is the same on every run, so re-seeding changes nothing."""
    return low + int(hashlib.sha256(key.encode()).hexdigest(), 16) % (high - low + 1)


class Command(BaseCommand):
    help = "Create (or complete) the demo tenants, users, accounts, signals and DRAFT plans. Safe to re-run."

    @transaction.atomic
    def handle(self, *args, **options):
        password = settings.DEMO_PASSWORD
        today = timezone.localdate()
        # The admin shows staff only the models they may view; rows are scoped to their tenants there.
        console, _ = Group.objects.get_or_create(name=CONSOLE_GROUP)
        console.permissions.set(
            Permission.objects.filter(
                content_type__app_label="plans",
                codename__in=[*(f"view_{model}" for model in CONSOLE_MODELS), *CONSOLE_PLANS_WRITE_PERMISSIONS],
            ) | Permission.objects.filter(
                content_type__app_label="orchestrator", codename__in=CONSOLE_AUTONOMY_PERMISSIONS
            )
        )
        for slug, (name, roles) in TENANTS.items():
            tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
            users = {}
            for suffix, role in roles.items():
                user, created = get_user_model().objects.get_or_create(username=f"{slug.split('-')[0]}-{suffix}")
                if created or not user.check_password(password):
                    user.set_password(password)
                    user.is_staff = True  # every demo user may log into the approvers' console
                    user.save()
                user.groups.add(console)
                Membership.objects.update_or_create(
                    user=user, tenant=tenant, defaults={"role": role, "is_active": True}
                )
                users[role] = user
            seller = users[Role.SELLER]
            if not settings.REVPLAN_CONNECTOR_DEFAULTS["crm"]["base_url"]:
                # No CRM to send escalations to: they become internal tasks for the support lead (DESIGN §8).
                ActionRoute.objects.get_or_create(
                    tenant=tenant, action_type="ESCALATE_SUPPORT_RISK", defaults={"connector": ConnectorName.INTERNAL}
                )
            for action_type, per_day in AUTOPILOT.get(slug, {}).items():
                admin = users[Role.TENANT_ADMIN]
                autonomy.tenant_autonomy_set(tenant_id=tenant.id, user=admin, opted_in=True)
                autonomy.action_type_autonomy_set(tenant_id=tenant.id, user=admin, action_type=action_type,
                                                  mode="AUTO_EXECUTE", max_per_day=per_day)
            for action_type in SHADOW.get(slug, []):
                autonomy.action_type_autonomy_set(tenant_id=tenant.id, user=users[Role.TENANT_ADMIN],
                                                  action_type=action_type, mode="SHADOW")
            accounts = []
            for index, account_name in enumerate(ACCOUNT_NAMES[:ACCOUNTS_PER_TENANT]):
                external_id = f"{slug}-{index:03d}"
                account, _ = Account.objects.get_or_create(
                    tenant=tenant,
                    external_id=external_id,
                    defaults={
                        "name": f"{account_name} ({name})",
                        "owner": seller,
                        "renewal_date": today + timedelta(days=_stable_offset(external_id, 40, 120)),
                        "posture": {"arr_usd": 10_000 * _stable_offset(external_id + "arr", 5, 80), "health": "watch"},
                    },
                )
                if index % SUPPORT_RISK_EVERY == 0:
                    # Named by source and external id, as a support desk would: a re-run finds it.
                    services.signal_record(
                        account_id=account.id, signal_type="SUPPORT_RISK", source="seed_demo",
                        external_id=f"{external_id}:support-risk", payload={"open_p1_tickets": 2},
                        actor=services.SystemActor("seed_demo"),
                    )
                accounts.append(account)
            for index, account in enumerate(accounts[:DRAFTS_PER_TENANT]):
                has_open_plan = RevenuePlan.objects.filter(
                    account=account, plan_type="RENEWAL_DEFENSE", plan_status__in=NON_TERMINAL
                ).exists()
                if has_open_plan:
                    continue
                signal_types = set(account.signals.values_list("signal_type", flat=True))
                actor = seller if index % 2 else services.SystemActor("proposal_generator")
                services.plan_propose(
                    account_id=account.id,
                    plan_type="RENEWAL_DEFENSE",
                    draft=renewal_defense_draft(signal_types=signal_types),
                    actor=actor,
                    trigger="seed_demo",
                    inputs_summary={"signal_types": sorted(signal_types), "renewal_date": str(account.renewal_date)},
                )
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"Password for every demo user: {password}")
        for slug, (_, roles) in TENANTS.items():
            for suffix, role in roles.items():
                self.stdout.write(f"  {slug.split('-')[0]}-{suffix:<9} {role:<14} ({slug})")
