"""The approvers' console in a real browser (Playwright driving Debian's headless chromium)."""
import os
import re
import shutil
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from plans.models import Account, EventType, PlanLedgerEntry, PlanStatus, RevenuePlan, RiskLevel, StepStatus
from tests.factories import make_plan

CHROMIUM = os.environ.get("REVPLAN_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
PASSWORD = "browser-test-password"
BROWSER_SECONDS = 90

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(150)]


@pytest.fixture
def demo(settings):
    settings.DEMO_PASSWORD = PASSWORD
    call_command("seed_demo", verbosity=0)


def in_browser(steps: Callable[[Page], None]) -> None:
    """Run `steps` in a fresh headless chromium, on a thread of its own: Playwright's sync API keeps
    an event loop running in its thread, and the test's own ORM calls must not run under it."""
    failures: list[BaseException] = []

    def run():
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
                try:
                    page = browser.new_page()
                    page.set_default_timeout(15_000)
                    steps(page)
                finally:
                    browser.close()
        except BaseException as failure:  # re-raised in the test's thread
            failures.append(failure)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BROWSER_SECONDS)
    assert not thread.is_alive(), f"the browser steps took over {BROWSER_SECONDS} s"
    if failures:
        raise failures[0]


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def a_draft() -> RevenuePlan:
    return (RevenuePlan.objects.filter(tenant__slug="acme-corp", plan_status=PlanStatus.DRAFT)
            .exclude(created_by__startswith="user:").order_by("account__name").first())


def a_draft_the_approver_may_approve() -> RevenuePlan:
    """A seeded acme DRAFT a plan approver may approve: not HIGH risk (that needs a tenant admin)."""
    return (RevenuePlan.objects.filter(tenant__slug="acme-corp", plan_status=PlanStatus.DRAFT)
            .exclude(risk_level=RiskLevel.HIGH).order_by("account__name").first())


def test_approver_approves_a_draft_and_sees_it_in_the_ledger(demo, live_server, tmp_path):
    plan = a_draft()
    plan_url = f"{live_server.url}/admin/plans/revenueplan/{plan.pk}/change/"
    screenshot = tmp_path / "approved.png"
    steps = list(plan.steps.all())
    step_count, dependency_count = len(steps), sum(len(step.depends_on) for step in steps)

    def approve(page: Page) -> None:
        log_in(page, live_server.url, "acme-approver")
        page.goto(plan_url)
        expect(page.locator("#plan-why")).to_contain_text("it waits for a plan approver")
        # The step graph: a node per step, drawn (it has a size on the page), an edge per dependency.
        expect(page.locator("#plan-step-graph svg g.node")).to_have_count(step_count)
        expect(page.locator("#plan-step-graph svg g.edge")).to_have_count(dependency_count)
        assert page.locator("#plan-step-graph svg").bounding_box()["width"] > 200
        page.click("a.plan-action[data-action=approve]")
        page.click("#confirm-action input[type=submit]")
        expect(page.locator("ul.messagelist")).to_contain_text("Approve: done.")
        expect(page.locator("tr.ledger-entry[data-event=PLAN_APPROVED]")).to_have_count(1)
        page.screenshot(path=str(screenshot), full_page=True)

    in_browser(approve)

    assert screenshot.stat().st_size > 10_000
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.APPROVED
    assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.PLAN_APPROVED).count() == 1


def test_seller_sees_no_approve_action(demo, live_server, tmp_path):
    plan = a_draft()
    screenshot = tmp_path / "seller.png"

    def look(page: Page) -> None:
        log_in(page, live_server.url, "acme-seller")
        page.goto(f"{live_server.url}/admin/plans/revenueplan/{plan.pk}/change/")
        expect(page.locator("#plan-steps")).to_be_visible()
        expect(page.locator("a.plan-action[data-action=approve]")).to_have_count(0)
        page.goto(f"{live_server.url}/admin/plans/revenueplan/")
        expect(page.locator("#result_list")).to_be_visible()
        expect(page.locator("select[name=action] option[value=approve_selected]")).to_have_count(0)
        page.screenshot(path=str(screenshot), full_page=True)

    in_browser(look)

    assert screenshot.stat().st_size > 10_000
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.DRAFT


def a_waiting_step() -> RevenuePlan:
    """An ACTIVE acme plan whose meeting step waits for a person (as the engine leaves it), on an account
    the seed gave no plan."""
    account = Account.objects.filter(tenant__slug="acme-corp").exclude(plans__isnull=False).order_by("name").first()
    return make_plan(account=account, status=PlanStatus.ACTIVE, action_types=("REQUEST_RENEWAL_MEETING",),
                     step_status=StepStatus.PENDING_APPROVAL, activated_at=timezone.now() - timedelta(hours=3))


def test_approver_works_through_needs_your_input(demo, live_server, tmp_path):
    draft, active = a_draft_the_approver_may_approve(), a_waiting_step()
    step = active.steps.get()
    shots = {name: tmp_path / f"{name}.png" for name in ("index", "inbox", "approved", "step", "after")}

    def work(page: Page) -> None:
        log_in(page, live_server.url, "acme-approver")
        # the index is the landing page: what waits comes first, with a link to all of it
        expect(page.locator("#needs-your-input")).to_contain_text("Needs your input")
        page.screenshot(path=str(shots["index"]), full_page=True)
        page.click("#needs-your-input h2 a")
        draft_row = page.locator(f"tr.inbox-item[data-plan='{draft.pk}']")
        step_row = page.locator(f"tr.inbox-item[data-step='{step.step_id}']")
        expect(draft_row).to_have_attribute("data-kind", "DRAFT_APPROVAL")
        expect(draft_row).to_contain_text("Approve the plan")
        expect(step_row).to_contain_text("waiting 3 h, due in 21 h")
        page.screenshot(path=str(shots["inbox"]), full_page=True)
        # the DRAFT, through its confirmation page: the plan page then shows it APPROVED
        draft_row.locator("a.inbox-action[data-verb=approve]").click()
        page.click("#confirm-action input[type=submit]")
        expect(page.locator("ul.messagelist")).to_contain_text("Approve: done.")
        expect(page.locator(".field-plan_status .readonly")).to_have_text(re.compile(r"^\s*approved\s*$", re.I))
        page.screenshot(path=str(shots["approved"]), full_page=True)
        # the waiting step, likewise: the step moves on, its approval on record
        page.goto(f"{live_server.url}{reverse('admin:plans_revenueplan_inbox')}")
        expect(page.locator(f"tr.inbox-item[data-plan='{draft.pk}']")).to_have_count(0)
        step_row.locator("a.inbox-action[data-verb=approve_step]").click()
        page.click("#confirm-action input[type=submit]")
        expect(page.locator("ul.messagelist")).to_contain_text("Approve step: done.")
        step_on_page = page.locator(f"tr.plan-step[data-step='{step.step_id}']")
        expect(step_on_page).not_to_contain_text("PENDING_APPROVAL")
        expect(step_on_page.locator(".step-approval")).to_have_text("CURRENT")
        expect(page.locator("tr.ledger-entry[data-event=STEP_APPROVED]")).to_have_count(1)
        page.screenshot(path=str(shots["step"]), full_page=True)
        # and neither waits any more
        page.goto(f"{live_server.url}{reverse('admin:plans_revenueplan_inbox')}")
        expect(page.locator(f"tr.inbox-item[data-plan='{draft.pk}']")).to_have_count(0)
        expect(page.locator(f"tr.inbox-item[data-step='{step.step_id}']")).to_have_count(0)
        page.screenshot(path=str(shots["after"]), full_page=True)

    in_browser(work)

    assert all(shot.stat().st_size > 10_000 for shot in shots.values())
    draft.refresh_from_db()
    step.refresh_from_db()
    assert draft.plan_status == PlanStatus.APPROVED
    assert (step.status, step.approved_by.username) == (StepStatus.PENDING, "acme-approver")
