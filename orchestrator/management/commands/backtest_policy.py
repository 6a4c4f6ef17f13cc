"""manage.py backtest_policy --tenant T --from D --to D --settings-file FILE: replay the tenant's recorded step
decisions under candidate settings (orchestrator.autonomy.backtest) and print what would change. Read-only.

The option is --settings-file, not --settings: manage.py reads --settings itself, as the settings module,
before any command runs."""
import json
import sys
from datetime import UTC, datetime, time, timedelta
from uuid import UUID

import pydantic
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from orchestrator.autonomy.backtest import CandidateSettings, backtest, decision_count
from plans.models import Tenant


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _day(text: str) -> datetime:
    try:
        return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time.min, tzinfo=UTC)
    except ValueError:
        raise CommandError(f"{text!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = ("Replay a tenant's step decisions from --from to --to (UTC days, both included) under the settings in "
            "a JSON file ({\"opted_in\": true, \"max_per_account_per_day\": 3, \"action_types\": "
            "{\"PREP_RENEWAL_BRIEF\": {\"mode\": \"AUTO_EXECUTE\", \"max_per_day\": 10}}, \"policy_version\": "
            "\"auto-approval-v1\"}) and print the report as JSON. Changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="the tenant's slug or id")
        parser.add_argument("--from", required=True, dest="start", help="first day, YYYY-MM-DD")
        parser.add_argument("--to", required=True, dest="end", help="last day, YYYY-MM-DD")
        parser.add_argument("--settings-file", required=True, help="the candidate settings, a JSON file")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def handle(self, *args, tenant, start, end, settings_file, no_progress, **options):
        tenant_row = Tenant.objects.filter(slug=tenant).first()
        if tenant_row is None and _is_uuid(tenant):
            tenant_row = Tenant.objects.filter(pk=tenant).first()
        if tenant_row is None:
            raise CommandError(f"no tenant {tenant!r}")
        start_at, end_at = _day(start), _day(end) + timedelta(days=1)
        if end_at <= start_at:
            raise CommandError("--to is before --from")
        try:
            with open(settings_file, encoding="utf-8") as file:
                candidate = CandidateSettings.model_validate(json.load(file))
        except (OSError, ValueError, pydantic.ValidationError) as error:
            raise CommandError(f"settings file: {error}") from None
        total = decision_count(tenant_row.id, start=start_at, end=end_at)
        # sys.stderr itself: the command's wrapper ends every write with a newline, a bar redraws its line
        with tqdm(total=total, unit="decision", disable=no_progress, file=sys.stderr) as progress:
            report = backtest(tenant_row.id, start=start_at, end=end_at, candidate=candidate,
                              on_progress=progress.update)
        self.stdout.write(json.dumps(report, indent=2))
