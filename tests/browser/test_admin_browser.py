"""The approvers' console in a real browser (Playwright driving Debian's headless chromium)."""
import os
import shutil
import threading
from collections.abc import Callable

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect, sync_playwright

from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan

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


def test_approver_approves_a_draft_and_sees_it_in_the_ledger(demo, live_server, tmp_path):
    plan = a_draft()
    plan_url = f"{live_server.url}/admin/plans/revenueplan/{plan.pk}/change/"
    screenshot = tmp_path / "approved.png"

    def approve(page: Page) -> None:
        log_in(page, live_server.url, "acme-approver")
        page.goto(plan_url)
        expect(page.locator("#plan-why")).to_contain_text("it waits for a plan approver")
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
