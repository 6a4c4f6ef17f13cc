"""manage.py import_signals: load a CSV or JSON Lines file of signals into a tenant (plans.services.signal_import).

  import_signals signals.csv --tenant acme-corp
  import_signals export.ndjson --tenant acme-corp --format jsonl --as acme-seller

The whole file is checked first: one bad row and nothing is imported (exit status 1, each bad line named).
Re-running a file is harmless: a row whose (source, external_id) is already recorded counts as a duplicate.
"""
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from plans import services
from plans.errors import DomainError
from plans.services.signal_import import BATCH_SIZE, FORMATS

# Lines named in the summary at most; the counts are always complete.
SHOWN_LINES = 50


def _lines(lines: list[int]) -> str:
    shown = ", ".join(str(line) for line in lines[:SHOWN_LINES])
    return shown + (f" … and {len(lines) - SHOWN_LINES} more" if len(lines) > SHOWN_LINES else "")


class Command(BaseCommand):
    help = "Import signals (CSV or JSON Lines) into a tenant; a file with one bad row imports nothing."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--format", choices=FORMATS, help="default: from the file's extension")
        parser.add_argument("--as", dest="username", help="a SELLER or above of the tenant, named in the ledger "
                                                          "(default: system:import_signals)")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def handle(self, *args, file: Path, tenant: str, format=None, username=None, batch_size=BATCH_SIZE,
               no_progress=False, **options):
        if not file.is_file():
            raise CommandError(f"no file {file}")
        actor = None
        if username:
            actor = get_user_model().objects.filter(username=username).first()
            if actor is None:
                raise CommandError(f"unknown user {username!r}")
        bar = tqdm(total=0, unit="row", file=sys.stderr, disable=no_progress, desc="importing")

        def checked(rows: int) -> None:
            bar.total = rows
            bar.refresh()

        try:
            report = services.signals_import(tenant_slug=tenant, path=file, fmt=format, actor=actor,
                                             batch_size=max(1, batch_size), progress=bar.update, on_checked=checked)
        except DomainError as error:
            raise CommandError(error.detail) from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text") from None
        finally:
            bar.close()
        if report.problems:
            for problem in report.problems[:SHOWN_LINES]:
                self.stderr.write(f"line {problem.line}: {problem.detail}")
            lines = sorted({problem.line for problem in report.problems})
            raise CommandError(f"nothing imported: {len(lines)} bad line(s) of {report.rows} row(s): {_lines(lines)}")
        self.stdout.write(f"taken: {report.taken}")
        self.stdout.write(f"duplicate: {len(report.duplicate_lines)}"
                          + (f" (lines {_lines(report.duplicate_lines)})" if report.duplicate_lines else ""))
        self.stdout.write(f"refused: {len(report.refused)}"
                          + (f" (lines {_lines([problem.line for problem in report.refused])})"
                             if report.refused else ""))
        for problem in report.refused[:SHOWN_LINES]:
            self.stdout.write(f"  line {problem.line}: {problem.detail}")
