"""The alert rules (deploy/prometheus/alerts.yml) are valid and do what their unit tests say
(deploy/prometheus/alerts_test.yml), checked by promtool; and every metric they page on is one revplan serves."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
PROMTOOL = os.environ.get("REVPLAN_PROMTOOL") or shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed: `make test` installs it (scripts/ensure-promtool.sh, "
                             "Debian's prometheus package), or set REVPLAN_PROMTOOL")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_the_rules_are_valid():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_the_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_the_rules_use_is_served_on_metrics(client, settings):
    # A renamed metric would leave its alert silent forever: each name in an expr must appear on /metrics
    # (the gauges set only by a job's run are registered at import, so their HELP line is there from the start).
    # Imported for their registration: the breaker gauges, and the deadline and stuck-plan gauges.
    import orchestrator.breakers.metrics
    import orchestrator.deadlines.metrics  # noqa: F401

    settings.REVPLAN_METRICS_TOKEN = ""
    served = client.get("/metrics").content.decode()
    exprs = re.findall(r"expr: (?:>\n)?((?:.+\n)+?)\s+for:", (RULES_DIR / "alerts.yml").read_text())
    used = {name for expr in exprs for name in re.findall(r"\brevplan_[a-z_]+", expr)}
    assert used
    # A histogram's series carry suffixes; the family's HELP line names it without them.
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    missing = sorted(family for family in families if f"# HELP {family} " not in served)
    assert missing == []
