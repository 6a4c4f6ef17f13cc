"""All revplan settings, read from the environment (defaults suit a developer machine)."""
import json
import os
import secrets
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate such as "10/minute" (s, m, h, d and their longer names); "off" turns it off."""
    raw = os.environ.get(name, default).strip()
    if raw.lower() in {"", "off", "none"}:
        return None
    count, _, period = raw.partition("/")
    if not (count.isdigit() and period[:1] in {"s", "m", "h", "d"}):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate: write it as requests/period, e.g. 10/minute.")
    return raw


def private_services(path: Path) -> dict[str, str]:
    """The URLs (KEY=VALUE lines) of the private PostgreSQL and Redis that scripts/ensure-services.sh started on a
    machine that runs neither; empty when it started none."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def secret_key(*, debug: bool) -> str:
    """SECRET_KEY, else the contents of the file SECRET_KEY_FILE names (how `make run` and docker compose
    pass the key they make on first run). With DEBUG off and neither set, refuse: a default would be public."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    if path := os.environ.get("SECRET_KEY_FILE"):
        try:
            key = Path(path).read_text().strip()
        except OSError as error:
            raise ImproperlyConfigured(f"SECRET_KEY_FILE names {path}, which cannot be read: {error}.") from error
        if not key:
            raise ImproperlyConfigured(f"SECRET_KEY_FILE names {path}, which is empty.")
        return key
    if debug:
        # A key for this process alone (its sessions end when it restarts), never one anybody else knows.
        return secrets.token_urlsafe(50)
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: set the SECRET_KEY environment variable (or SECRET_KEY_FILE, the path of a file "
        "holding it) to a long random value, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(50))'. "
        "`make run` makes one under var/ on its own."
    )


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = secret_key(debug=DEBUG)
# The host names this site answers to (a request for any other is refused: no Host-header poisoning).
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
# Origins whose unsafe requests (admin forms) pass the CSRF check: the https address users open.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")

# HTTPS. Off by default, because `make run` serves plain http on 127.0.0.1; production turns each on, and
# `manage.py check --deploy` names any left off.
# Redirect http to https, so no request (a password, a token) travels in clear.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# The session and CSRF cookies only over https: a cookie sent once over http can be read on the way.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# HSTS: browsers use only https for this host for this many seconds (31536000 once https is known to work),
# so no first request goes out over http for someone to intercept.
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
# ... on subdomains too (a sibling host on http could otherwise set cookies for this one) ...
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
# ... and allowed into browsers' built-in preload list, which protects even the very first visit.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a proxy that terminates TLS, Django sees http; name the header the proxy sets to the original scheme
# (e.g. X-Forwarded-Proto), only if the proxy overwrites what a client sends in it.
_PROXY_SSL_HEADER = os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if _PROXY_SSL_HEADER else None
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # Swagger UI's and Redoc's files as static files of our own (SPECTACULAR_SETTINGS "SIDECAR").
    "drf_spectacular_sidecar",
    "plans",
    "orchestrator",
    # Production safety: database roles (create_db_roles) and the startup checks that warn about risky settings.
    "revplan.deploy",
]

MIDDLEWARE = [
    "revplan.memory.release_rendered_response",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "revplan.urls"
WSGI_APPLICATION = "revplan.wsgi.application"

TEMPLATES = [
    {
        # Django's backend, letting go of each page's context when it is rendered (revplan.template_backend);
        # named as Django's is, which other code asks for (engines["django"]).
        "BACKEND": "revplan.template_backend.ReleasingDjangoTemplates",
        "NAME": "django",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL is the only supported database (partial unique indexes, SKIP LOCKED, ledger triggers).
# In production two roles (`manage.py create_db_roles`): DATABASE_URL connects the app as a role that owns
# nothing and may only SELECT and INSERT on the ledger, so it cannot TRUNCATE it, drop its trigger or
# change it; DATABASE_MIGRATE_URL connects the owner of the tables, used only by
# `manage.py migrate --database owner`. Unset (a developer machine), both are DATABASE_URL.
# Where nothing answers on the default ports, scripts/ensure-services.sh starts private servers and writes their
# URLs to var/services.env; the environment's own DATABASE_URL / REDIS_URL win over it.
_PRIVATE_SERVICES = private_services(BASE_DIR / "var" / "services.env")
DATABASE_URL = os.environ.get("DATABASE_URL") or _PRIVATE_SERVICES.get(
    "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/revplan"
)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    ),
    "owner": dj_database_url.parse(os.environ.get("DATABASE_MIGRATE_URL") or DATABASE_URL),
}
# Prepared statements on the workers' connections (revplan.celery): psycopg server-side parameters, each statement
# the engine repeats parsed and planned once per connection instead of on every step (governed steps/s +14% in
# `make bench`, three runs each way). Web requests keep client-side binding: with it, some admin pages took
# 30-40% more CPU (tests/bench/bench_read_side.py). The number: executions of a statement before it is
# prepared; "off" behind a connection pooler in transaction mode that cannot keep prepared statements
# (PgBouncer before 1.21, or one without max_prepared_statements).
DATABASE_WORKER_PREPARE_THRESHOLD = os.environ.get("DATABASE_WORKER_PREPARE_THRESHOLD", "2")
# Seconds a worker process keeps its database connection (revplan.celery): longer than a web request's
# (DATABASE_CONN_MAX_AGE), since a reconnect costs the worker a new backend's catalog reads and plans.
DATABASE_WORKER_CONN_MAX_AGE = int(os.environ.get("DATABASE_WORKER_CONN_MAX_AGE", "600"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Request bodies above this are refused before parsing (a plan with its steps is a few KiB).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("REVPLAN_MAX_REQUEST_BYTES", str(256 * 1024)))

REST_FRAMEWORK = {
    # DRF's JSON parser bounded in nesting (a deep body is a 400, not a RecursionError); forms for the browsable API.
    "DEFAULT_PARSER_CLASSES": [
        "revplan.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # DRF's JSON written by orjson (revplan.api.renderers); the browsable API for a person with a browser.
    "DEFAULT_RENDERER_CLASSES": [
        "revplan.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's token, refused once it is REVPLAN_TOKEN_TTL_HOURS old; revoked by DELETE /api/v1/auth/token/.
        "revplan.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Counts in the cache (Redis), shared by every web process; the token endpoint has its own two (auth.py).
    "DEFAULT_THROTTLE_CLASSES": ["revplan.api.throttles.UserThrottle", "revplan.api.throttles.AnonThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("REVPLAN_THROTTLE_USER", "600/minute"),
        "anon": env_rate("REVPLAN_THROTTLE_ANON", "60/minute"),
        # Password guessing: each limit on its own stops one address trying many users and many addresses one user.
        "token_address": env_rate("REVPLAN_THROTTLE_TOKEN", "10/minute"),
        "token_username": env_rate("REVPLAN_THROTTLE_TOKEN", "10/minute"),
        # An incident's bulk redrive (orchestrator.incidents), per user: each call retries up to
        # REVPLAN_REDRIVE_MAX_PLANS plans, so this bounds how fast a recovering connector is handed them.
        "incident_redrive": env_rate("REVPLAN_THROTTLE_REDRIVE", "6/minute"),
    },
    # Proxies in front of the app that append the client's address to X-Forwarded-For. 0: the connection's
    # address is the client's, and a client-sent X-Forwarded-For is ignored (it could dodge every limit).
    "NUM_PROXIES": int(os.environ.get("REVPLAN_NUM_PROXIES", "0")),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "revplan.api.errors.exception_handler",
}
# How long an API token lasts from when it was issued: a week of a UI's or a script's use without logging in
# again, and a token that leaks is good for a week at most. POST /api/v1/auth/token/ then issues a new one.
REVPLAN_TOKEN_TTL_HOURS = float(os.environ.get("REVPLAN_TOKEN_TTL_HOURS", str(7 * 24)))

SPECTACULAR_SETTINGS = {
    "TITLE": "revplan API",
    "DESCRIPTION": "Governed, multi-step revenue plans.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ loads Swagger UI from our static files, not a CDN: it works where the internet does not.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Swagger UI's default validator would send the schema's address to validator.swagger.io from every browser.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # Several models have a `status`; name each choice set after its meaning, not a hash.
    "ENUM_NAME_OVERRIDES": {
        "PlanStatusEnum": "plans.models.PlanStatus",
        "StepStatusEnum": "plans.models.StepStatus",
        "IntentStatusEnum": "orchestrator.execution.models.IntentStatus",
        "PauseKindEnum": "plans.models.PauseKind",
        "InboxKindEnum": "plans.inbox.InboxKind",
        "ActionTypeEnum": "plans.plan_types.ACTION_TYPE_NAMES",
        "FailureClassEnum": "orchestrator.execution.models.FailureClass",
        "AttemptOutcomeEnum": "orchestrator.execution.models.AttemptOutcome",
        "IncidentActionTypeEnum": "revplan.api.incidents.INCIDENT_ACTION_TYPES",
        "IncidentFailureClassEnum": "revplan.api.incidents.INCIDENT_FAILURE_CLASSES",
        "RedriveOutcomeEnum": "revplan.api.incidents.REDRIVE_OUTCOMES",
        "AutonomyModeEnum": "orchestrator.autonomy.models.AutonomyMode",
    },
}

REDIS_URL = os.environ.get("REDIS_URL") or _PRIVATE_SERVICES.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Django's cache (the API's throttle counts) in Redis, so every web process sees the same counts. Its keys start
# "revplan:cache:", apart from the plan locks' "revplan:lock:" and Celery's queues, "unacked*" and "_kombu.*".
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "revplan:cache",
        # As the plan locks: a Redis that does not answer costs a request 2 s, not a hung worker.
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
# Celery's Django fixup closes every database connection before and after each task unless this is set; it
# then closes them only every that many tasks. revplan.celery applies Django's own rule after each task
# instead (closed when broken or older than CONN_MAX_AGE), so a task reuses its process's connection.
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "10000"))
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Ack after the task ran, and requeue it if its worker process dies: every task is safe to repeat.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Prefetch 1: a step can take minutes; a prefetched message would wait behind it, unacked.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Tasks still running when the broker connection drops would be redelivered anyway; stop them.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# How long an execution's claim lasts without renewal; longer than one connector call plus its backoff.
REVPLAN_EXECUTION_LEASE_SECONDS = float(os.environ.get("REVPLAN_EXECUTION_LEASE_SECONDS", "300"))
# An unacked message returns to the queue after this; it must outlast the longest step (its lease).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(
        os.environ.get("REVPLAN_BROKER_VISIBILITY_TIMEOUT", str(int(2 * REVPLAN_EXECUTION_LEASE_SECONDS)))
    ),
}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "orchestrator.tick": {"queue": "ticks"},
    "plans.tasks.*": {"queue": "ticks"},
    "orchestrator.advance_plan": {"queue": "advance"},
    "orchestrator.advance_plans": {"queue": "advance"},
    "orchestrator.execute_step": {"queue": "execute"},
}
# A worker that finishes a step runs the plan's next runnable step itself, up to this many in a row and for
# this long, then hands the next one to the queue (DESIGN §4): a chain does not hog a worker, nor wait for one.
ORCHESTRATOR_INLINE_STEPS = int(os.environ.get("ORCHESTRATOR_INLINE_STEPS", "20"))
ORCHESTRATOR_INLINE_SECONDS = float(os.environ.get("ORCHESTRATOR_INLINE_SECONDS", "10"))
# The advance runs the first step it starts itself, then that chain (the same budget): one message per plan
# less. Off ("0") where the advance queue's workers must never wait on a connector (pools split by queue).
ORCHESTRATOR_ADVANCE_RUNS_STEPS = env_bool("ORCHESTRATOR_ADVANCE_RUNS_STEPS", True)
# A task that runs steps: their connector calls and backoff inside the lease, then the inline budget.
_STEP_TASK_LIMITS = {
    "soft_time_limit": REVPLAN_EXECUTION_LEASE_SECONDS + ORCHESTRATOR_INLINE_SECONDS + 20,
    "time_limit": REVPLAN_EXECUTION_LEASE_SECONDS + ORCHESTRATOR_INLINE_SECONDS + 30,
}
CELERY_TASK_ANNOTATIONS = {
    "orchestrator.tick": {"soft_time_limit": 50, "time_limit": 60},
    # A step runs its connector calls and their backoff inside its lease; past the lease another
    # worker may take over (and this one's result is refused), so a hung one is stopped soon after.
    # It also runs the plan's next steps after it (ORCHESTRATOR_INLINE_*), starting none past its budget.
    "orchestrator.advance_plan": _STEP_TASK_LIMITS if ORCHESTRATOR_ADVANCE_RUNS_STEPS
    else {"soft_time_limit": 50, "time_limit": 60},
    "orchestrator.advance_plans": _STEP_TASK_LIMITS if ORCHESTRATOR_ADVANCE_RUNS_STEPS
    else {"soft_time_limit": 50, "time_limit": 60},
    "orchestrator.execute_step": _STEP_TASK_LIMITS,
}

ORCHESTRATOR_TICK_SECONDS = float(os.environ.get("ORCHESTRATOR_TICK_SECONDS", "30"))
# Plans one tick claims at most; the rest wait for the next tick (oldest next_run_at first).
ORCHESTRATOR_TICK_BATCH = int(os.environ.get("ORCHESTRATOR_TICK_BATCH", "10000"))
# The tick sends its due plans in messages of up to ORCHESTRATOR_ADVANCE_BATCH plans (their advances share a
# transaction and a commit), in at least ORCHESTRATOR_ADVANCE_SPREAD messages while there are that many plans.
ORCHESTRATOR_ADVANCE_BATCH = int(os.environ.get("ORCHESTRATOR_ADVANCE_BATCH", "10"))
ORCHESTRATOR_ADVANCE_SPREAD = int(os.environ.get("ORCHESTRATOR_ADVANCE_SPREAD", "16"))
# A plan a tick enqueued is not enqueued again for this long, by any beat.
ORCHESTRATOR_REENQUEUE_GUARD_SECONDS = float(os.environ.get("ORCHESTRATOR_REENQUEUE_GUARD_SECONDS", "60"))
ORCHESTRATOR_ACTIVATION_RECHECK_SECONDS = float(os.environ.get("ORCHESTRATOR_ACTIVATION_RECHECK_SECONDS", "60"))
# A step attempt not started after this is sent again (its message was lost).
ORCHESTRATOR_REDELIVERY_SECONDS = float(os.environ.get("ORCHESTRATOR_REDELIVERY_SECONDS", "60"))
# Backoff between step attempts after a failed one: base, 2 x base, 4 x base ...
ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = float(os.environ.get("ORCHESTRATOR_STEP_RETRY_BASE_SECONDS", "30"))
# A step attempt whose worker died this many times is FAILED (WORKER_LOST) instead of looping.
ORCHESTRATOR_MAX_DELIVERIES = int(os.environ.get("ORCHESTRATOR_MAX_DELIVERIES", "5"))
ORCHESTRATOR_PLAN_LOCK_SECONDS = float(os.environ.get("ORCHESTRATOR_PLAN_LOCK_SECONDS", "60"))
ORCHESTRATOR_ADVANCE_LOCK_RETRIES = 5
ORCHESTRATOR_ADVANCE_LOCK_RETRY_SECONDS = 0.2

# Deadlines (orchestrator.deadlines): how often the job looks; the final rule comes at least this long after the
# escalation (nobody loses a plan without a warning), and at most this many final rules per run (each is a move).
REVPLAN_DEADLINES_SECONDS = float(os.environ.get("REVPLAN_DEADLINES_SECONDS", "300"))
REVPLAN_DEADLINE_FINAL_NOTICE_SECONDS = float(os.environ.get("REVPLAN_DEADLINE_FINAL_NOTICE_SECONDS", str(4 * 3600)))
REVPLAN_DEADLINE_FINAL_BATCH = int(os.environ.get("REVPLAN_DEADLINE_FINAL_BATCH", "200"))
# Stuck plans: an ACTIVE plan with no ledger entry for this long that waits on no person and no clock is flagged
# and re-driven once; longer than a step's lease (REVPLAN_EXECUTION_LEASE_SECONDS), so a slow step is not stuck.
REVPLAN_STUCK_AFTER_SECONDS = float(os.environ.get("REVPLAN_STUCK_AFTER_SECONDS", "1800"))
REVPLAN_STUCK_CHECK_SECONDS = float(os.environ.get("REVPLAN_STUCK_CHECK_SECONDS", "300"))
REVPLAN_STUCK_BATCH = int(os.environ.get("REVPLAN_STUCK_BATCH", "500"))
# How often the beat rebuilds the inbox rows of changed plans (an inbox read rebuilds its own tenants' first).
REVPLAN_WAITS_REFRESH_SECONDS = float(os.environ.get("REVPLAN_WAITS_REFRESH_SECONDS", "60"))
# Autonomy by evidence (orchestrator.autonomy.review, README "Autonomy you can trust"): SHADOW -> AUTO_EXECUTE is
# proposed when a person agreed with the policy on at least PROMOTION_AGREEMENT of the last PROMOTION_DECISIONS
# steps it would have run (within SHADOW_WINDOW_DAYS); AUTO_EXECUTE -> SHADOW is applied when the incidents over
# autonomous runs in DEMOTION_WINDOW_DAYS reach DEMOTION_INCIDENTS.
REVPLAN_SHADOW_WINDOW_DAYS = int(os.environ.get("REVPLAN_SHADOW_WINDOW_DAYS", "30"))
REVPLAN_PROMOTION_DECISIONS = int(os.environ.get("REVPLAN_PROMOTION_DECISIONS", "20"))
REVPLAN_PROMOTION_AGREEMENT = float(os.environ.get("REVPLAN_PROMOTION_AGREEMENT", "0.9"))
REVPLAN_DEMOTION_WINDOW_DAYS = int(os.environ.get("REVPLAN_DEMOTION_WINDOW_DAYS", "7"))
REVPLAN_DEMOTION_INCIDENTS = int(os.environ.get("REVPLAN_DEMOTION_INCIDENTS", "3"))
# The most plans one incident redrive retries (the longest paused first; the rest wait for the next call).
REVPLAN_REDRIVE_MAX_PLANS = int(os.environ.get("REVPLAN_REDRIVE_MAX_PLANS", "100"))

CELERY_BEAT_SCHEDULE = {
    "orchestrator-tick": {
        "task": "orchestrator.tick",
        "schedule": ORCHESTRATOR_TICK_SECONDS,
        # A tick nobody ran in time is pointless: the next one supersedes it.
        "options": {"expires": ORCHESTRATOR_TICK_SECONDS},
    },
    # The tenant-chain digest of plan-chain heads makes a dropped plan chain detectable (DESIGN §6).
    "ledger-digest-daily": {
        "task": "plans.tasks.ledger_digest_all_tenants",
        "schedule": crontab(hour=0, minute=5),
    },
    # Yesterday's autopilot digest per tenant, stored and e-mailed to its admins.
    "autonomy-digest-daily": {
        "task": "orchestrator.autonomy_digest",
        "schedule": crontab(hour=0, minute=15),
    },
    # Shadow decisions resolved, promotions proposed, demotions applied (orchestrator.autonomy.review): before the
    # day ends, so the next digest (00:15, of that day) has its changes and the promotions waiting for an admin.
    "autonomy-review-daily": {
        "task": "orchestrator.autonomy_review",
        "schedule": crontab(hour=23, minute=45),
    },
    # Accounts entering their renewal window get a DRAFT, behind the DecisionCostGate; daily, because
    # windows move by days (and every verdict is a row).
    "proposal-triggers": {
        "task": "orchestrator.proposal_triggers",
        "schedule": crontab(hour=6, minute=30),
    },
    # Reminders, escalations and the final rule of waits for people; the stuck-plan detector (orchestrator.deadlines).
    "deadlines": {
        "task": "orchestrator.deadlines",
        "schedule": REVPLAN_DEADLINES_SECONDS,
        "options": {"expires": REVPLAN_DEADLINES_SECONDS},
    },
    # The inbox's rows of plans that changed, for tenants whose inbox nobody opened meanwhile (plans.waits).
    "plan-waits": {
        "task": "plans.tasks.refresh_waits",
        "schedule": REVPLAN_WAITS_REFRESH_SECONDS,
        "options": {"expires": REVPLAN_WAITS_REFRESH_SECONDS},
    },
    "stuck-plans": {
        "task": "orchestrator.stuck_plans",
        "schedule": REVPLAN_STUCK_CHECK_SECONDS,
        "options": {"expires": REVPLAN_STUCK_CHECK_SECONDS},
    },
}

# Global kill switch for execution (tenant and action-type switches live in the database).
REVPLAN_EXECUTION_DISABLED = env_bool("REVPLAN_EXECUTION_DISABLED", False)

# Connector defaults: the operator's endpoints and credentials, trusted (no SSRF check). A tenant's
# ConnectorConfig that sets its own endpoint gets none of them but timeout_seconds
# (orchestrator/execution/connectors/config.py). The CalDAV default is the Radicale server the
# Procfile starts; the CRM has none, so an unrouted CRM action fails clearly.
REVPLAN_CONNECTOR_DEFAULTS = {
    "crm": {
        "base_url": os.environ.get("REVPLAN_CRM_BASE_URL", ""),
        "api_key": os.environ.get("REVPLAN_CRM_API_KEY", ""),
        "timeout_seconds": float(os.environ.get("REVPLAN_CRM_TIMEOUT_SECONDS", "10")),
    },
    "calendar": {
        "url": os.environ.get("REVPLAN_CALDAV_URL", "http://127.0.0.1:5232/"),
        "username": os.environ.get("REVPLAN_CALDAV_USERNAME", "revplan"),
        "password": os.environ.get("REVPLAN_CALDAV_PASSWORD", ""),
        "timeout_seconds": float(os.environ.get("REVPLAN_CALDAV_TIMEOUT_SECONDS", "10")),
    },
    "internal": {},
}
# Tests and development only, empty in production: hosts (e.g. 127.0.0.1) a tenant's endpoint may name
# past the SSRF guard (https only, public addresses only; connectors/endpoints.py).
REVPLAN_TENANT_ENDPOINT_ALLOWLIST = env_list("REVPLAN_TENANT_ENDPOINT_ALLOWLIST", "")
# Transient connector failures: equal-jitter exponential backoff from this base, capped.
REVPLAN_RETRY_BASE_SECONDS = float(os.environ.get("REVPLAN_RETRY_BASE_SECONDS", "1"))
REVPLAN_RETRY_MAX_DELAY_SECONDS = float(os.environ.get("REVPLAN_RETRY_MAX_DELAY_SECONDS", "30"))
# Circuit breakers per (tenant, connector) (orchestrator/breakers; README "Circuit breakers"): one opens when at
# least failure_rate of at least min_tries tries in the last window_seconds failed transiently (5xx, 429,
# timeouts, connection errors), stays open cool_down_seconds, then lets one probe through. min_tries 20: one
# plan's whole retry series (3 attempts x 4 tries) never opens it alone; that plan's retry limit is for that.
REVPLAN_BREAKERS_ENABLED = env_bool("REVPLAN_BREAKERS_ENABLED", True)
REVPLAN_BREAKER_DEFAULTS = {
    "failure_rate": float(os.environ.get("REVPLAN_BREAKER_FAILURE_RATE", "0.5")),
    "min_tries": int(os.environ.get("REVPLAN_BREAKER_MIN_TRIES", "20")),
    "window_seconds": int(os.environ.get("REVPLAN_BREAKER_WINDOW_SECONDS", "300")),
    "cool_down_seconds": float(os.environ.get("REVPLAN_BREAKER_COOL_DOWN_SECONDS", "60")),
}
# Per-connector overrides of those, as JSON: {"crm": {"min_tries": 50, "cool_down_seconds": 120}}.
REVPLAN_BREAKER_CONNECTORS = json.loads(os.environ.get("REVPLAN_BREAKER_CONNECTORS") or "{}")
# The sweep half-opens breakers past their cool-down and lifts the plans of closed ones; the cool-down's resolution.
REVPLAN_BREAKER_SWEEP_SECONDS = float(os.environ.get("REVPLAN_BREAKER_SWEEP_SECONDS", "10"))
CELERY_IMPORTS = ("orchestrator.breakers.tasks",)  # not an app's tasks.py: autodiscovery would not find it
CELERY_IMPORTS += ("orchestrator.deadlines.tasks",)  # the deadline job and the stuck-plan detector, likewise
CELERY_TASK_ROUTES["orchestrator.breakers_sweep"] = {"queue": "ticks"}
CELERY_BEAT_SCHEDULE["breakers-sweep"] = {
    "task": "orchestrator.breakers_sweep",
    "schedule": REVPLAN_BREAKER_SWEEP_SECONDS,
    "options": {"expires": REVPLAN_BREAKER_SWEEP_SECONDS},
}
# The plan proposal generator: "rules" (deterministic, the default) or "llm" (an OpenAI-compatible
# chat endpoint; its answer is bounded by a schema and sanitised, and it only ever drafts).
REVPLAN_PROPOSER = os.environ.get("REVPLAN_PROPOSER", "rules")
REVPLAN_LLM = {
    "base_url": os.environ.get("REVPLAN_LLM_BASE_URL", "https://api.openai.com/v1"),
    "api_key": os.environ.get("REVPLAN_LLM_API_KEY", ""),
    "model": os.environ.get("REVPLAN_LLM_MODEL", "gpt-4o-mini"),
    "timeout_seconds": float(os.environ.get("REVPLAN_LLM_TIMEOUT_SECONDS", "20")),
}
DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "revplan-demo")
# /metrics answers only `Authorization: Bearer <this>` when it is set. Unset, /metrics is open, as a developer
# machine wants it; `manage.py check --deploy` warns about that (revplan.W002).
REVPLAN_METRICS_TOKEN = os.environ.get("REVPLAN_METRICS_TOKEN", "")

# The autonomy digest is e-mailed to tenant admins; without a mail server, the console backend prints it.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = os.environ.get("REVPLAN_FROM_EMAIL", "revplan@localhost")

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "revplan.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
