"""manage.py migrate_plans --plan-type T --to N [--dry-run] [--keep-approvals --as USER]: move in-flight plans
to version N of their plan type's config (plans.services.plan_versions), printing a report."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from plans.errors import DomainError
from plans.services.plan_versions import MOVED, REFUSED, WOULD_MOVE, plans_migrate_plan_type


class Command(BaseCommand):
    help = ("Move the APPROVED, ACTIVE and PAUSED plans of a plan type to another version of its config. Each "
            "moved plan is ledgered (PLAN_TYPE_MIGRATED) and needs a reapproval unless --keep-approvals; a plan "
            "the new version would make invalid is refused, with the reasons. --dry-run changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("--plan-type", required=True, help="e.g. RENEWAL_DEFENSE")
        parser.add_argument("--to", required=True, type=int, dest="to_version", help="the version to move to")
        parser.add_argument("--dry-run", action="store_true", help="report what would move; change nothing")
        parser.add_argument("--keep-approvals", action="store_true",
                            help="keep the plans' approvals (no APPROVAL_STALE layer): needs --as a TENANT_ADMIN "
                                 "of each plan's tenant")
        parser.add_argument("--as", dest="username", help="the user doing it (the ledger's actor)")

    def handle(self, *args, plan_type, to_version, dry_run, keep_approvals, username=None, **options):
        user = None
        if username:
            user = get_user_model().objects.filter(username=username, is_active=True).first()
            if user is None:
                raise CommandError(f"no active user {username!r}")
        if keep_approvals and user is None:
            raise CommandError("--keep-approvals needs --as USER, a TENANT_ADMIN of the plans' tenants")
        try:
            report = plans_migrate_plan_type(plan_type=plan_type, to_version=to_version, user=user, dry_run=dry_run,
                                             keep_approvals=keep_approvals)
        except DomainError as refused:
            raise CommandError(refused.detail) from None
        self._print(report)
        if report.count(REFUSED):
            raise CommandError(f"{report.count(REFUSED)} plan(s) refused (see above); the others "
                               + ("would move." if dry_run else "moved."))

    def _print(self, report) -> None:
        mode = "DRY RUN: nothing changed" if report.dry_run else "moved"
        self.stdout.write(f"{report.plan_type} -> version {report.to_version} ({mode}"
                          + (", approvals kept" if report.keep_approvals else ", approvals stale") + ")")
        for from_version, changes in sorted(report.changes.items()):
            self.stdout.write(f"  from version {from_version}:")
            for change in changes or [{"field": "(no rule)", "before": "", "after": ""}]:
                self.stdout.write(f"    {change['field']}: {change['before']} -> {change['after']}")
        for plan in report.plans:
            self.stdout.write(f"  {plan.outcome:<10} plan {plan.plan_id} ({plan.tenant_slug}, {plan.account_name}, "
                              f"{plan.plan_status}, version {plan.from_version})")
            for reason in plan.reasons:
                self.stdout.write(f"             {reason.code}: {reason.detail}")
        self.stdout.write(f"{report.count(WOULD_MOVE if report.dry_run else MOVED)} "
                          f"{'would move' if report.dry_run else 'moved'}, {report.count(REFUSED)} refused, "
                          f"{len(report.plans)} in flight not on version {report.to_version}")
