"""manage.py kill_switch: show or flip execution kill switches, with no redeploy.

  kill_switch                                   # list every switch, and the global one
  kill_switch --tenant acme-corp --as acme-admin on --reason "CRM incident"
  kill_switch --tenant acme-corp --action-type ESCALATE_SUPPORT_RISK --as acme-admin off --reason "fixed"
"""
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from plans import services
from plans.errors import DomainError
from plans.models import KillSwitch, Tenant


class Command(BaseCommand):
    help = "List kill switches, or engage/release a tenant's (optionally per action type). Each flip is ledgered."

    def add_arguments(self, parser):
        parser.add_argument("state", nargs="?", choices=["on", "off"], help="on stops execution, off allows it")
        parser.add_argument("--tenant", help="tenant slug")
        parser.add_argument("--action-type", default="", help="only this action type (default: the whole tenant)")
        parser.add_argument("--as", dest="username", help="the TENANT_ADMIN making the change (for the ledger)")
        parser.add_argument("--reason", default="", help="why (written to the ledger)")

    def handle(self, *args, state=None, tenant=None, action_type="", username=None, reason="", **options):
        if state is None:
            global_state = "ON" if settings.REVPLAN_EXECUTION_DISABLED else "off"
            self.stdout.write(f"global (REVPLAN_EXECUTION_DISABLED): {global_state}")
            for switch in KillSwitch.objects.select_related("tenant").order_by("tenant__slug", "action_type"):
                scope = switch.action_type or "(whole tenant)"
                self.stdout.write(f"{switch.tenant.slug} {scope}: {'ON' if switch.engaged else 'off'} "
                                  f"by {switch.updated_by or '-'}: {switch.reason}")
            return
        if not (tenant and username and reason):
            raise CommandError("flipping a switch needs --tenant, --as and --reason")
        tenant_id = Tenant.objects.filter(slug=tenant).values_list("id", flat=True).first()
        user = get_user_model().objects.filter(username=username).first()
        if tenant_id is None or user is None:
            raise CommandError("unknown tenant or user")
        try:
            switch = services.kill_switch_set(
                tenant_id=tenant_id, user=user, engaged=state == "on", reason=reason, action_type=action_type
            )
        except DomainError as error:
            raise CommandError(error.detail) from None
        self.stdout.write(f"{tenant} {switch.action_type or '(whole tenant)'}: {'ON' if switch.engaged else 'off'}")
