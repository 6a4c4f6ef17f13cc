"""Every registered admin model shows a staff user of tenant A nothing of tenant B (issue 13 §2, §6).

The walk goes over django.contrib.admin.site._registry, not a hand list: a model registered without
scoping fails here, and so does a tenant model the fixture has no tenant-B row of (add one). A model
with no path to a tenant (Group) must be refused to a staff user outright. For each model, as a staff
user of acme-corp, the changelist lists no globex row, no page (changelist, add, change, history,
delete) names a globex slug, user, account or id — which covers list filter and foreign-key choices —
and a globex object's pages are "does not exist".
"""
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from orchestrator.autonomy.models import (
    ActionTypeAutonomy,
    AutonomyDigest,
    AutonomyProposal,
    AutonomyUsage,
    ProposalDecision,
    ShadowDecision,
    TenantAutonomy,
)
from orchestrator.breakers.services import breaker_force
from orchestrator.deadlines.models import DeadlineNotice, StuckEpisode
from orchestrator.execution.models import (
    ActionIntent,
    ActionRoute,
    ConnectorConfig,
    ExecutionAttempt,
    InternalRecord,
)
from plans import services
from plans.admin import AccountAdmin
from plans.models import Account, RevenuePlan, Role, Tenant

pytestmark = pytest.mark.django_db

MINE, THEIRS = "acme-corp", "globex"


def tenant_path(model) -> str | None:
    """The lookup from `model` to its tenant: forward foreign keys first, a user through its memberships."""
    user_model = get_user_model()
    if model is Tenant:
        return "id"
    if issubclass(model, user_model):
        return "memberships__tenant"
    queue, seen, through_user = [(model, "")], {model}, None
    while queue:
        current, prefix = queue.pop(0)
        for field in current._meta.get_fields():
            if not (field.is_relation and field.concrete and (field.many_to_one or field.one_to_one)):
                continue
            if field.related_model is Tenant:
                return prefix + field.name
            if issubclass(field.related_model, user_model):
                through_user = through_user or f"{prefix}{field.name}__memberships__tenant"
            elif field.related_model not in seen:
                seen.add(field.related_model)
                queue.append((field.related_model, f"{prefix}{field.name}__"))
    return through_user


def admin_url(model, view: str, *args) -> str | None:
    try:
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)
    except NoReverseMatch:
        return None


def demo_rows_for(tenant: Tenant) -> None:
    """What seed_demo leaves out, for both tenants: every registered model has rows of each."""
    admin_user = get_user_model().objects.get(memberships__tenant=tenant, memberships__role=Role.TENANT_ADMIN)
    account = Account.objects.filter(tenant=tenant).order_by("external_id").first()
    now = timezone.now()
    ConnectorConfig.objects.create(tenant=tenant, connector="crm",
                                   settings={"base_url": f"https://crm.{tenant.slug}.example", "api_key": "sk"})
    ActionRoute.objects.get_or_create(tenant=tenant, action_type="ESCALATE_SUPPORT_RISK",
                                      defaults={"connector": "internal"})
    services.kill_switch_set(tenant_id=tenant.id, user=admin_user, engaged=True, reason="drill",
                             action_type="ESCALATE_SUPPORT_RISK")
    intent = ActionIntent.objects.create(tenant=tenant, account=account, action_type="PREP_RENEWAL_BRIEF",
                                         approved_by=admin_user, expires_at=now + timedelta(days=1),
                                         effect_key=f"scoping-{tenant.slug}")
    ExecutionAttempt.objects.create(intent=intent, number=1, started_at=now, finished_at=now, outcome="SUCCEEDED")
    InternalRecord.objects.create(tenant=tenant, account=account, kind="NOTE", effect_key=f"scoping-{tenant.slug}",
                                  title=f"Note for {account.name}")
    ProposalDecision.objects.create(tenant=tenant, account=account, plan_type="RENEWAL_DEFENSE", trigger="daily",
                                    decision="SKIP", reason="OPEN_PLAN", explanation="An open plan exists.",
                                    decided_at=now)
    AutonomyDigest.objects.create(tenant=tenant, day=now.date(), summary={}, text=f"Digest of {tenant.slug}")
    AutonomyUsage.objects.create(tenant=tenant, day=now.date(), account=account, used=1)
    TenantAutonomy.objects.get_or_create(tenant=tenant)
    ActionTypeAutonomy.objects.get_or_create(tenant=tenant, action_type="PREP_RENEWAL_BRIEF")
    services.integration_token_create(tenant_id=tenant.id, name=f"crm sync of {tenant.slug}", user=admin_user)
    breaker_force(tenant_id=tenant.id, connector="crm", state="OPEN", user=admin_user, reason="drill")
    plan = RevenuePlan.objects.filter(tenant=tenant).order_by("created_at").first()
    AutonomyProposal.objects.create(tenant=tenant, action_type="PREP_RENEWAL_BRIEF", from_mode="SHADOW",
                                    to_mode="AUTO_EXECUTE", evidence={"agreed": 20, "decisions": 20}, proposed_at=now)
    ShadowDecision.objects.create(tenant=tenant, plan=plan, step_id=uuid.uuid4(), attempt=1, account=plan.account,
                                  action_type="PREP_RENEWAL_BRIEF", would_run=True, reason="AUTONOMY_ALLOWED",
                                  explanation="-", policy_version="auto-approval-v1", facts={}, content_digest="-",
                                  decided_at=now, awaiting_seq=1)
    StuckEpisode.objects.create(tenant=tenant, plan=plan, plan_version=plan.version, last_seen_seq=1,
                                last_progress_at=now, detected_at=now, last_seen={"plan": str(plan.id)})
    DeadlineNotice.objects.create(tenant=tenant, plan=plan, item_key=f"DRAFT_APPROVAL:{plan.id}:-:x",
                                  kind="DRAFT_APPROVAL",
                                  stage="REMINDED", waiting_since=now, due_at=now, final_at=now, noticed_at=now)


@pytest.fixture
def demo(settings):
    call_command("seed_demo", verbosity=0)
    for slug in (MINE, THEIRS):
        demo_rows_for(Tenant.objects.get(slug=slug))
    return Tenant.objects.get(slug=MINE), Tenant.objects.get(slug=THEIRS)


def staff_client(username: str, *, every_permission: bool) -> Client:
    """A demo user (staff, in seed_demo's console group); `every_permission`: also every permission of
    every registered model, the most a staff user who is not a superuser can hold."""
    user = get_user_model().objects.get(username=username)
    if every_permission:
        content_types = [ContentType.objects.get_for_model(model, for_concrete_model=False)
                         for model in admin.site._registry]
        user.user_permissions.add(*Permission.objects.filter(content_type__in=content_types))
    client = Client()
    client.force_login(user)
    return client


def their_markers(theirs: Tenant) -> set[str]:
    """Text that names tenant B: its slug (in its accounts' and users' names too) and its rows' UUIDs."""
    markers = {theirs.slug}
    for model in admin.site._registry:
        path = tenant_path(model)
        if path and isinstance(model._meta.pk, type(Tenant._meta.pk)):
            rows = model._default_manager.filter(**{path: theirs.pk})
            markers |= {str(pk) for pk in rows.values_list("pk", flat=True)}
    return markers


def problems_with(client: Client, mine: Tenant, theirs: Tenant) -> Iterator[str]:
    markers = their_markers(theirs)

    def leaks(url: str, response) -> Iterator[str]:
        if response.status_code == 200:
            page = response.content.decode().lower()
            for marker in sorted(markers):
                if marker.lower() in page:
                    yield f"{url} names tenant B ({marker})"

    index = reverse("admin:index")
    yield from leaks(index, client.get(index))
    for model in admin.site._registry:
        name = f"{model._meta.app_label}.{model._meta.model_name}"
        path = tenant_path(model)
        changelist_url = admin_url(model, "changelist")
        changelist = client.get(changelist_url)
        if path is None:
            if changelist.status_code != 403:
                yield f"{name} belongs to no tenant but a staff user may list it ({changelist.status_code})"
            continue
        manager = model._default_manager
        theirs_only = manager.filter(**{path: theirs.pk}).exclude(pk__in=manager.filter(**{path: mine.pk}).values("pk"))
        their_rows = list(theirs_only)
        if not their_rows:
            yield f"{name}: the fixture has no row of tenant B; add one to demo_rows_for"
            continue
        their_pks = {row.pk for row in their_rows}
        for url in (changelist_url, f"{changelist_url}?tenant={theirs.pk}", f"{changelist_url}?q={theirs.slug}"):
            response = changelist if url == changelist_url else client.get(url)
            assert response.status_code in (200, 302, 403), (url, response.status_code)
            if response.status_code == 200:
                shown = {row.pk for row in response.context["cl"].result_list} & their_pks
                if shown:
                    yield f"{url} lists tenant B's rows {sorted(map(str, shown))}"
            if url == changelist_url:  # the others repeat the search term or filter value in their links
                yield from leaks(url, response)
        add_url = admin_url(model, "add")
        if add_url:
            yield from leaks(add_url, client.get(add_url))
        mine_row = manager.filter(**{path: mine.pk}).first()
        if mine_row is not None:
            for view in ("change", "history"):
                url = admin_url(model, view, mine_row.pk)
                yield from leaks(url, client.get(url))
        for view in ("change", "history", "delete"):
            url = admin_url(model, view, their_rows[0].pk)
            response = client.get(url)
            if response.status_code == 302 and response.url == index:
                # Django admin's "… doesn't exist. Perhaps it was deleted?", shown (and so consumed) on the index.
                notes = [str(message) for message in client.get(index).context["messages"]]
                if not any("doesn\u2019t exist" in note for note in notes):
                    yield f"{url} redirects without saying the object does not exist ({notes})"
                continue
            if response.status_code not in (403, 404):
                yield f"{url} shows tenant B's object ({response.status_code})"


@pytest.mark.parametrize(("username", "every_permission"), [
    ("acme-approver", False),  # as seen in a browser: the demo's console permissions
    ("acme-admin", False),
    ("acme-admin", True),  # add and change pages too: every foreign-key choice
])
def test_no_admin_page_shows_another_tenants_rows_names_or_choices(demo, username, every_permission):
    mine, theirs = demo
    client = staff_client(username, every_permission=every_permission)

    problems = list(problems_with(client, mine, theirs))
    assert problems == [], "\n".join(problems)


def test_the_walk_finds_a_model_registered_without_scoping(demo, monkeypatch):
    mine, theirs = demo
    # AccountAdmin as plain Django would have it: every tenant's accounts, every tenant in the filter.
    monkeypatch.setattr(AccountAdmin, "get_queryset", admin.ModelAdmin.get_queryset)
    monkeypatch.setattr(AccountAdmin, "list_filter", ["tenant"])
    client = staff_client("acme-approver", every_permission=False)

    problems = list(problems_with(client, mine, theirs))

    assert any("lists tenant B's rows" in problem and "/plans/account/" in problem for problem in problems)
    assert any("names tenant B (globex)" in problem and "/plans/account/" in problem for problem in problems)


def test_every_registered_model_is_walked(demo):
    """Guards the walk itself: each model has a tenant path or is refused, and none is skipped."""
    _, theirs = demo
    paths = {f"{model._meta.app_label}.{model._meta.model_name}": tenant_path(model)
             for model in admin.site._registry}

    assert paths["plans.accountsignal"] == "tenant"  # its own (denormalised) tenant since plans/0011
    assert paths["auth.user"] == "memberships__tenant"
    assert paths["auth.group"] is None
    assert all(admin_url(model, "changelist") for model in admin.site._registry)
    assert isinstance(theirs.pk, uuid.UUID)
