"""manage.py verify_ledger [--tenant SLUG] [--plan UUID]: walk the hash chains, name the first break."""
import uuid

from django.core.management.base import BaseCommand, CommandError

from plans.ledger import verify_ledger
from plans.models import Tenant


class Command(BaseCommand):
    help = "Verify the ledger's hash chains and digests; exits non-zero naming the first broken entry."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="tenant slug")
        parser.add_argument("--plan", help="plan id")

    def handle(self, *args, tenant=None, plan=None, **options):
        tenant_id = None
        if tenant:
            tenant_id = Tenant.objects.filter(slug=tenant).values_list("id", flat=True).first()
            if tenant_id is None:
                raise CommandError(f"no tenant {tenant!r}")
        if plan:
            try:
                plan = uuid.UUID(plan)
            except ValueError:
                raise CommandError(f"--plan must be a plan id (a UUID), not {plan!r}") from None
        report = verify_ledger(tenant_id=tenant_id, plan_id=plan)
        if not report.ok:
            for problem in report.broken:
                self.stderr.write(f"BROKEN {problem}")
            raise CommandError(
                f"ledger verification failed: {len(report.broken)} problem(s); first: {report.broken[0]}"
            )
        self.stdout.write(f"OK: {report.chains} chain(s), {report.entries} entries verified")
