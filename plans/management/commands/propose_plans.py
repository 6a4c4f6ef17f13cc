"""manage.py propose_plans: draft plans for accounts entering their renewal window.

  propose_plans --tenant acme-corp                 # every eligible account of the tenant
  propose_plans --tenant acme-corp --account acme-corp-003

Eligible: the renewal is within the plan type's proposal window and past its cut-off, and the
account has no open plan of that type. Drafts are created by system:proposal_generator and
never approved here; each one writes PLAN_CREATED with the facts the proposer saw.
"""
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from plans import proposals, selectors
from plans.errors import DomainError
from plans.models import Account, Tenant
from plans.services import SystemActor

ACTOR = SystemActor("proposal_generator")


class Command(BaseCommand):
    help = "Propose DRAFT plans for a tenant's accounts in their renewal window (never approves)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--account", help="only this account (its external id or UUID)")
        parser.add_argument("--plan-type", default="RENEWAL_DEFENSE")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    def handle(self, *args, tenant, account=None, plan_type="RENEWAL_DEFENSE", no_progress=False, **options):
        tenant_id = Tenant.objects.filter(slug=tenant).values_list("id", flat=True).first()
        if tenant_id is None:
            raise CommandError(f"unknown tenant {tenant!r}")
        account_id = None
        if account:
            found = Account.objects.filter(tenant_id=tenant_id, external_id=account).first() or (
                Account.objects.filter(tenant_id=tenant_id, pk=account).first() if _is_uuid(account) else None)
            if found is None:
                raise CommandError(f"unknown account {account!r} in {tenant}")
            account_id = found.id
        accounts = list(selectors.accounts_due_for_proposal(
            tenant_id, plan_type=plan_type, today=timezone.localdate(), account_id=account_id))
        created, refused = 0, []
        for eligible in tqdm(accounts, desc="proposing", unit="account", disable=no_progress or not accounts):
            try:
                proposals.propose_for_account(account_id=eligible.id, actor=ACTOR, plan_type=plan_type,
                                              trigger="propose_plans")
                created += 1
            except DomainError as error:
                refused.append(f"{eligible.external_id}: {error.code}: {error.detail}")
        for line in refused:
            self.stderr.write(line)
        self.stdout.write(f"{created} draft plan(s) proposed, {len(refused)} refused, "
                          f"{len(accounts)} eligible account(s) in {tenant}")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
