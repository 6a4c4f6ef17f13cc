"""The read side at 100,000 plans (`make bench`; BENCH_SCALE=0.1 for a quick run): every list a person or a UI
pages through, timed through Django's test client in process as the tenant grows from 1,000 to 10,000 to
100,000 plans, with their steps, ledger entries, pause layers and action intents in the proportions of a
tenant that has run for a while (most plans finished, a few hundred waiting for a person per 10,000).

Each page: one warm-up request whose queries are counted, then REPS timed requests (p50 / p95). Targets
(issue 20): API lists p95 < 50 ms at 100,000 plans and at most 1.5x their 1,000-plan p95; the admin pages
an approver uses p95 < 250 ms, same growth; no more queries at 100,000 plans than at 1,000. Admin text search and the
detail pages are reported, not bound. The report goes to var/bench/read_side.json (and the shared table).
"""
import json
import os
import statistics
import time

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from plans.waits import refresh
from revplan.memory import freeze_startup_heap
from tests.bench.conftest import ROOT, SCALE, check_targets, record, scaled, target
from tests.conftest import build_world

# 20 timed requests a page at full scale; fewer on a quick run (BENCH_SCALE < 1), which checks the shape.
REPS = int(os.environ.get("BENCH_READ_REPS", "20" if SCALE >= 1 else "5"))
REPORT = ROOT / "var" / "bench" / "read_side.json"
API_P95_MS, ADMIN_P95_MS, GROWTH = 50, 250, 1.5
# The ledger page's plan: a long-running plan with this many entries.
LONG_LEDGER = 1000

# --- bulk loading: plain SQL, numbered rows (n), so each size adds to the one before ------------------

# Out of 100 plans: 60 COMPLETED, 8 ABORTED, 6 EXPIRED (a tenant that has run for a while), 18 ACTIVE
# (one in six of them with a step waiting for a person's approval), 3 PAUSED (a person's pause), 4 DRAFT
# (half proposed by the system, half by the seller), 1 APPROVED waiting to start.
_STATUS = """CASE WHEN n %% 100 < 60 THEN 'COMPLETED' WHEN n %% 100 < 68 THEN 'ABORTED'
                  WHEN n %% 100 < 74 THEN 'EXPIRED' WHEN n %% 100 < 92 THEN 'ACTIVE' WHEN n %% 100 < 95 THEN 'PAUSED'
                  WHEN n %% 100 < 99 THEN 'DRAFT' ELSE 'APPROVED' END"""

_ACCOUNTS = """
INSERT INTO plans_account (id, tenant_id, name, external_id, owner_id, renewal_date, posture, created_at, updated_at)
SELECT md5('rs-acct-' || n)::uuid, %(tenant)s, 'Read account ' || n, 'rs-' || n, %(owner)s,
       (now() + (n %% 300) * interval '1 day')::date, '{}'::jsonb, now(), now()
FROM generate_series(%(first)s, %(last)s) AS n
"""
_PLANS = f"""
INSERT INTO plans_revenueplan (
    id, tenant_id, account_id, plan_type, plan_type_version, objective, plan_status, constraints, owner_id,
    risk_level, expires_at, created_at, updated_at, approved_at, approved_by_id, activated_at, paused_at,
    completed_at, aborted_at, expired_at, completion_reason, stop_reason_code, stop_reason_detail, next_run_at,
    created_by, version, approval_record, edited_by_since_approval)
SELECT md5('rs-plan-' || n)::uuid, %(tenant)s, md5('rs-acct-' || n)::uuid, 'RENEWAL_DEFENSE', 1,
       'Secure renewal before day -30', status, '{{"no_external_contact_without_approval": true}}'::jsonb,
       %(owner)s, (ARRAY['LOW', 'LOW', 'MEDIUM', 'HIGH'])[n %% 4 + 1], born + interval '40 days', born,
       born + interval '3 hours', CASE WHEN status <> 'DRAFT' THEN born + interval '1 hour' END,
       CASE WHEN status <> 'DRAFT' THEN %(approver)s END,
       CASE WHEN status NOT IN ('DRAFT', 'APPROVED') THEN born + interval '2 hours' END,
       CASE WHEN status = 'PAUSED' THEN born + interval '3 hours' END,
       CASE WHEN status = 'COMPLETED' THEN born + interval '3 hours' END,
       CASE WHEN status = 'ABORTED' THEN born + interval '3 hours' END,
       CASE WHEN status = 'EXPIRED' THEN born + interval '3 hours' END,
       CASE WHEN status = 'COMPLETED' THEN 'all_steps_done' ELSE '' END,
       CASE WHEN status = 'ABORTED' THEN 'ABORTED_BY_USER' WHEN status = 'PAUSED' THEN 'PAUSED_BY_USER' ELSE '' END,
       '', CASE WHEN status = 'ACTIVE' AND n %% 6 <> 0 THEN now() + n %% 5000 * interval '1 minute' END,
       CASE WHEN n %% 2 = 0 THEN 'system:proposal_generator' ELSE 'user:' || %(owner)s END, 2, '{{}}'::jsonb,
       '[]'::jsonb
FROM (SELECT n, {_STATUS} AS status,
             now() - interval '5 minutes' - (%(last_all)s - n) * interval '7 minutes' AS born
      FROM generate_series(%(first)s, %(last)s) AS n) AS rows
"""
# Three steps a plan (brief, meeting, escalation); their statuses follow the plan's.
_STEPS = f"""
INSERT INTO plans_planstep (
    step_id, plan_id, sequence, action_type, status, depends_on, required, parameters, attempts, last_error,
    skip_reason, risk_level, approved_at, approved_by_id, next_attempt_at, approval_record, attempts_before_series,
    closed_with_plan)
SELECT md5('rs-step-' || n || '-' || seq)::uuid, md5('rs-plan-' || n)::uuid, seq,
       (ARRAY['PREP_RENEWAL_BRIEF', 'REQUEST_RENEWAL_MEETING', 'ESCALATE_SUPPORT_RISK'])[seq + 1],
       CASE WHEN status = 'COMPLETED' THEN (CASE WHEN seq = 2 THEN 'SKIPPED' ELSE 'DONE' END)
            WHEN status IN ('ABORTED', 'EXPIRED') THEN (CASE WHEN seq = 0 THEN 'DONE' ELSE 'SKIPPED' END)
            WHEN status IN ('ACTIVE', 'PAUSED') AND seq = 0 THEN 'DONE'
            WHEN status = 'ACTIVE' AND seq = 1 AND n %% 6 = 0 THEN 'PENDING_APPROVAL'
            ELSE 'PENDING' END,
       '[]'::jsonb, seq < 2, '{{}}'::jsonb, CASE WHEN seq = 0 AND status <> 'DRAFT' THEN 1 ELSE 0 END, '', '',
       CASE WHEN seq = 1 THEN 'MEDIUM' ELSE 'LOW' END, NULL, NULL, NULL, '{{}}'::jsonb, 0,
       status IN ('ABORTED', 'EXPIRED') AND seq > 0
FROM (SELECT n, {_STATUS} AS status FROM generate_series(%(first)s, %(last)s) AS n) AS rows,
     generate_series(0, 2) AS seq
"""
# A plan's chain: created, then per status what its life wrote (6 to 9 entries for a finished plan).
_LEDGER = f"""
INSERT INTO plans_planledgerentry (tenant_id, plan_id, step_id, event_type, actor, reason_code, explanation, data,
                                   occurred_at, chain_seq, prev_hash, entry_hash)
SELECT %(tenant)s, md5('rs-plan-' || n)::uuid, NULL, events[seq], 'system:bench', '', 'Loaded by the benchmark.',
       '{{}}'::jsonb, now() - (%(last_all)s - n) * interval '7 minutes' + seq * interval '1 minute', seq,
       md5('prev-' || n || '-' || seq) || md5('p' || n || '-' || seq), md5('entry-' || n || '-' || seq) || md5('e' || n)
FROM (SELECT n, CASE
        WHEN status = 'DRAFT' THEN ARRAY['PLAN_CREATED']
        WHEN status = 'APPROVED' THEN ARRAY['PLAN_CREATED', 'PLAN_APPROVED']
        WHEN status = 'ACTIVE' THEN ARRAY['PLAN_CREATED', 'PLAN_APPROVED', 'PLAN_ACTIVATED', 'STEP_ATTEMPT_STARTED',
                                          'ACTION_EXECUTED', 'STEP_AWAITING_APPROVAL']
        WHEN status = 'PAUSED' THEN ARRAY['PLAN_CREATED', 'PLAN_APPROVED', 'PLAN_ACTIVATED', 'STEP_ATTEMPT_STARTED',
                                          'ACTION_EXECUTED', 'PLAN_PAUSED', 'PAUSE_LAYER_ADDED']
        WHEN status = 'COMPLETED' THEN ARRAY['PLAN_CREATED', 'PLAN_APPROVED', 'PLAN_ACTIVATED', 'STEP_ATTEMPT_STARTED',
                                             'ACTION_EXECUTED', 'STEP_ATTEMPT_STARTED', 'ACTION_EXECUTED',
                                             'STEP_CLOSED', 'PLAN_COMPLETED']
        ELSE ARRAY['PLAN_CREATED', 'PLAN_APPROVED', 'PLAN_ACTIVATED', 'STEP_ATTEMPT_STARTED', 'ACTION_EXECUTED',
                   'PLAN_ABORTED'] END AS events
      FROM (SELECT n, {_STATUS} AS status FROM generate_series(%(first)s, %(last)s) AS n) AS s) AS rows,
     LATERAL generate_series(1, array_length(events, 1)) AS seq
"""
_LAYERS = f"""
INSERT INTO plans_pauselayer (plan_id, kind, scope, reason_code, explanation, evidence, set_by, set_at, lifted_at,
                              lifted_by)
SELECT md5('rs-plan-' || n)::uuid, 'PERSON', '', 'PAUSED_BY_USER', 'Paused by a person.', '{{}}'::jsonb,
       'user:' || %(owner)s, now() - (%(last_all)s - n) * interval '7 minutes' + interval '3 hours', NULL, ''
FROM (SELECT n, {_STATUS} AS status FROM generate_series(%(first)s, %(last)s) AS n) AS rows
WHERE status = 'PAUSED'
"""
# One intent per executed brief (the first step of every plan that ran).
_INTENTS = f"""
INSERT INTO orchestrator_actionintent (
    id, tenant_id, account_id, action_type, parameters, plan_id, step_id, attempt, approved_by_id, approving_policy,
    expires_at, status, effect_key, connector, external_ids, failure_class, failure_reason, attempts, lease_token,
    lease_expires_at, compensated_at, deliveries, autonomy_decision, created_at, started_at, finished_at)
SELECT md5('rs-intent-' || n)::uuid, %(tenant)s, md5('rs-acct-' || n)::uuid, 'PREP_RENEWAL_BRIEF', '{{}}'::jsonb,
       md5('rs-plan-' || n)::uuid, md5('rs-step-' || n || '-0')::uuid, 1, %(approver)s, '',
       now() + interval '1 day', 'SUCCEEDED', 'rs-effect-' || n, 'internal', '{{}}'::jsonb, '', '', 1, NULL, NULL,
       NULL, 1, '{{}}'::jsonb, now() - (%(last_all)s - n) * interval '7 minutes', NULL, NULL
FROM (SELECT n, {_STATUS} AS status FROM generate_series(%(first)s, %(last)s) AS n) AS rows
WHERE status NOT IN ('DRAFT', 'APPROVED')
"""
# The long ledger's plan: top - 20, an ACTIVE one (n %% 100 = 80), its chain taken on to LONG_LEDGER entries.
LONG_PLAN_N = 20
_LONG_LEDGER = """
INSERT INTO plans_planledgerentry (tenant_id, plan_id, step_id, event_type, actor, reason_code, explanation, data,
                                   occurred_at, chain_seq, prev_hash, entry_hash)
SELECT %(tenant)s, md5('rs-plan-' || %(n)s)::uuid, NULL, 'ACTION_RETRY_SCHEDULED', 'system:bench', 'TIMEOUT',
       'Loaded by the benchmark.', '{"attempt": 2}'::jsonb, now() + seq * interval '1 second', seq,
       md5('lp-' || seq) || md5('lq' || seq), md5('le-' || seq) || md5('lf' || seq)
FROM generate_series(7, %(last)s) AS seq
"""
TABLES = ("plans_account", "plans_revenueplan", "plans_planstep", "plans_planledgerentry", "plans_pauselayer",
          "orchestrator_actionintent", "plans_planwait")
# Each tenant's rows are numbered down from its own top (so the md5 keys never collide): the newest plan of
# every tenant is n = top (created 5 minutes ago), and a larger tenant has older plans besides.
TOP_STEP = 10_000_000


def load(world, *, top: int, count: int) -> None:
    params = {"tenant": world.tenant.id, "owner": world.seller.id, "approver": world.admin.id,
              "first": top - count + 1, "last": top, "last_all": top}
    with connection.cursor() as cursor:
        for sql in (_ACCOUNTS, _PLANS, _STEPS, _LEDGER, _LAYERS, _INTENTS):
            cursor.execute(sql, params)
        cursor.execute(_LONG_LEDGER, {"tenant": world.tenant.id, "n": top - LONG_PLAN_N, "last": LONG_LEDGER})
    refresh([world.tenant.id])  # the inbox rows of the loaded plans, as the beat would have built them


def vacuum_analyze() -> None:
    # What autovacuum would have done to tables this old: statistics, and the visibility map index-only scans use.
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"VACUUM (ANALYZE) {table}")


# --- timing ---------------------------------------------------------------------------------------


def measure(requests: list[tuple[Client, str]]) -> list[dict]:
    """The same page in each tenant: the warm-up requests count the queries, then REPS rounds that take the
    tenants in turn (a shared machine's load then weighs on every size alike). Wall time p50 / p95, and the
    test process's own CPU time p50 (what the page costs in Python, whatever the machine's load)."""
    counts = []
    for client, url in requests:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        # Read now: the next request's start resets the connection's query log.
        counts.append(len(queries))
        assert response.status_code == 200, (url, response.status_code, response.content[:500])
    walls, cpus = [[] for _ in requests], [[] for _ in requests]
    for rep in range(REPS):
        order = list(enumerate(requests))
        for index, (client, url) in order if rep % 2 else reversed(order):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            walls[index].append(time.perf_counter() - started)
            cpus[index].append(time.process_time() - started_cpu)
            assert response.status_code == 200, url
            # The test client's response refers to itself (response.json is a partial of it): a cycle no server
            # makes, which would keep each page's payload for the collector's full pass.
            response.json = None
    results = []
    for wall, cpu, count in zip(walls, cpus, counts, strict=True):
        p95 = statistics.quantiles(wall, n=20, method="inclusive")[18] if len(wall) > 1 else wall[0]
        results.append({"p50_ms": round(statistics.median(wall) * 1000, 2), "p95_ms": round(p95 * 1000, 2),
                        "cpu_p50_ms": round(statistics.median(cpu) * 1000, 2), "queries": count})
    return results


def pages(world, *, top: int, long_plan_id, account_id) -> list[tuple[str, str, str]]:
    """(kind, name, url) in `world`'s tenant: kind "api" and "admin" are bound, "reported" only reported."""
    tenant = world.tenant.id
    api = "/api/v1/plans/?page_size=50"
    found = [("api", "plans (default: -created_at)", api)]
    for key in ("created_at", "updated_at", "expires_at", "next_run_at", "plan_status", "risk_level"):
        for sign in ("", "-"):
            found.append(("api", f"plans ordering={sign}{key}", f"{api}&ordering={sign}{key}"))
    found += [
        ("api", "plans status=ACTIVE", f"{api}&status=ACTIVE"),
        ("api", "plans status=DRAFT&status=PAUSED", f"{api}&status=DRAFT&status=PAUSED"),
        ("api", "plans plan_type=RENEWAL_DEFENSE", f"{api}&plan_type=RENEWAL_DEFENSE"),
        ("api", "plans owner=<seller>", f"{api}&owner={world.seller.id}"),
        ("api", "plans account=<one>", f"{api}&account={account_id}"),
        ("api", "plans status=ACTIVE ordering=next_run_at", f"{api}&status=ACTIVE&ordering=next_run_at"),
        ("api", "plans page 2", f"{api}&page=2"),
        ("api", "inbox", "/api/v1/inbox/?page_size=50"),
        # 25 a page: 1,000 plans have 30 steps waiting, so every size shows a full page (a page's cost is its items').
        ("api", "inbox kind=STEP_APPROVAL", "/api/v1/inbox/?page_size=25&kind=STEP_APPROVAL"),
        ("api", f"ledger of a plan with {LONG_LEDGER} entries", f"/api/v1/plans/{long_plan_id}/ledger/?page_size=50"),
        ("api", "ledger, last page", f"/api/v1/plans/{long_plan_id}/ledger/?page_size=50&page={LONG_LEDGER // 50}"),
        ("api", "account executions", f"/api/v1/accounts/{account_id}/executions/"),
        ("reported", "plan detail", f"/api/v1/plans/{long_plan_id}/"),
        ("reported", "plan why", f"/api/v1/plans/{long_plan_id}/why/"),
        ("admin", "admin plans changelist", "/admin/plans/revenueplan/"),
        ("admin", "admin plans plan_status=ACTIVE", "/admin/plans/revenueplan/?plan_status__exact=ACTIVE"),
        ("admin", "admin plans plan_type", "/admin/plans/revenueplan/?plan_type__exact=RENEWAL_DEFENSE"),
        ("admin", "admin plans risk_level=HIGH", "/admin/plans/revenueplan/?risk_level__exact=HIGH"),
        ("admin", "admin plans tenant", f"/admin/plans/revenueplan/?tenant={tenant}"),
        ("admin", "admin plans page 2", "/admin/plans/revenueplan/?p=2"),
        ("reported", "admin plans search (an account's number)", f"/admin/plans/revenueplan/?q={top - 5}"),
        ("admin", "admin Active plans", "/admin/plans/revenueplan/open/"),
        ("admin", "admin Needs your input", "/admin/plans/revenueplan/inbox/"),
        ("admin", "admin index", "/admin/"),
        ("admin", "admin ledger changelist", "/admin/plans/planledgerentry/"),
        ("admin", "admin ledger event_type", "/admin/plans/planledgerentry/?event_type__exact=PLAN_CREATED"),
        ("admin", "admin intents changelist", "/admin/orchestrator/actionintent/"),
        ("admin", "admin intents status", "/admin/orchestrator/actionintent/?status__exact=SUCCEEDED"),
    ]
    return found


def approver_client(world) -> Client:
    approver = world.approver
    approver.is_staff = True
    approver.save(update_fields=["is_staff"])
    approver.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["plans", "orchestrator"],
                                                             codename__startswith="view_"))
    client = Client()
    client.force_login(approver)
    return client


@pytest.mark.timeout(1800)
def test_read_side_at_100k_plans(transactional_db):
    # One tenant of each size, side by side in the same tables (each page reads one tenant's rows).
    levels = [scaled(1_000, minimum=300), scaled(10_000, minimum=1_000), scaled(100_000, minimum=10_000)]
    started_all = time.perf_counter()
    tenants = []
    for index, total in enumerate(levels):
        world = build_world()
        top = TOP_STEP * (index + 1)
        started = time.perf_counter()
        load(world, top=top, count=total)
        with connection.cursor() as cursor:
            cursor.execute("SELECT md5('rs-plan-' || %s)::uuid, md5('rs-acct-' || %s)::uuid",
                           [top - LONG_PLAN_N, top - LONG_PLAN_N])
            long_plan_id, account_id = cursor.fetchone()
        tenant_pages = pages(world, top=top, long_plan_id=long_plan_id, account_id=account_id)
        tenants.append((world, approver_client(world), tenant_pages))
        record("read_side_load", **{f"{total:>7} plans: load s": round(time.perf_counter() - started, 1)})
    started = time.perf_counter()
    vacuum_analyze()
    record("read_side_load", **{"vacuum analyze s": round(time.perf_counter() - started, 1)})
    # What a served process does once it has loaded (revplan.wsgi): start-up's objects out of the collector's walks.
    freeze_startup_heap(serves_requests=True)
    results = {}
    for page_index, (kind, name, url) in enumerate(tenants[0][2]):
        measured = measure([(client, tenant_pages[page_index][2]) for _, client, tenant_pages in tenants])
        results[name] = {"kind": kind, "url": url, "levels": dict(zip(levels, measured, strict=True))}
    first, last = levels[0], levels[-1]
    names = []
    for name, result in results.items():
        by_level = result["levels"]
        counts = [by_level[level]["queries"] for level in levels]
        p95_first, p95_last = by_level[first]["p95_ms"], by_level[last]["p95_ms"]
        result["growth_p95"] = round(p95_last / p95_first, 2)
        record("read_side", **{f"{name} [{level}]": f"p50 {by_level[level]['p50_ms']} ms, p95 "
                               f"{by_level[level]['p95_ms']} ms, cpu {by_level[level]['cpu_p50_ms']} ms, "
                               f"{by_level[level]['queries']} q" for level in levels})
        if result["kind"] == "reported":
            continue
        limit = API_P95_MS if result["kind"] == "api" else ADMIN_P95_MS
        for target_name, value, bound, op in (
                (f"{name}: p95 at {last} plans", p95_last, limit, "<"),
                (f"{name}: p95 growth {first} -> {last}", p95_last / p95_first, GROWTH, "<="),
                # What a page reads depends on the kinds of plans on it (a PAUSED one's layers, an ACTIVE one's
                # intents), not on how many the tenant has: no more queries at the largest size than at the smallest.
                (f"{name}: queries at {last} plans - at {first}", counts[-1] - counts[0], 0, "<=")):
            target(target_name, value, bound, op=op, unit="ms" if op == "<" else "")
            names.append(target_name)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"scale": SCALE, "reps": REPS, "cpus": os.cpu_count(), "levels": levels,
                                  "seconds": round(time.perf_counter() - started_all, 1),
                                  "loadavg_at_end": os.getloadavg(), "pages": results}, indent=2, default=str))
    check_targets(names)
