"""Production defaults: no start without a key, and `check --deploy` clean with the documented variables.

Each test runs manage.py in a fresh process with revplan.settings (not the test settings) and an
environment built here, so nothing the test run or the Makefile exported leaks in.
"""
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the README's production checklist sets (the database URLs are added where a test has the roles).
PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "revplan.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://revplan.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "REVPLAN_NUM_PROXIES": "1",
    "REVPLAN_METRICS_TOKEN": secrets.token_urlsafe(32),
}
# Settings these tests decide; whatever the calling environment holds for them is dropped.
CONTROLLED = {*PRODUCTION_ENV, "DEBUG", "SECRET_KEY_FILE", "DJANGO_SETTINGS_MODULE", "DATABASE_URL",
              "DATABASE_MIGRATE_URL", "DATABASE_ADMIN_URL"}
CHECK_ID = re.compile(r"\(([\w.]+\.[WE]\d+)\)")


def run_django(args: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**base, "DJANGO_SETTINGS_MODULE": "revplan.settings", **env})


def test_debug_off_without_a_secret_key_refuses_to_start_naming_the_variable():
    # when
    result = run_django(["manage.py", "check"])
    # then
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set: set the SECRET_KEY environment variable" in result.stderr


def test_secret_key_file_is_read_and_an_unreadable_one_is_named(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("k" * 10 + secrets.token_urlsafe(50) + "\n")
    show_key = ["-c", "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"]

    assert run_django(show_key, SECRET_KEY_FILE=str(key_file)).stdout.strip() == key_file.read_text().strip()
    missing = run_django(show_key, SECRET_KEY_FILE=str(tmp_path / "absent"))
    assert missing.returncode != 0
    assert f"SECRET_KEY_FILE names {tmp_path / 'absent'}, which cannot be read" in missing.stderr


def test_debug_on_without_a_key_starts_with_a_key_nobody_else_has():
    show_key = ["-c", "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"]
    first, second = run_django(show_key, DEBUG="1"), run_django(show_key, DEBUG="1")
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip()) >= 50
    assert first.stdout != second.stdout


def test_https_settings_come_from_the_environment():
    names = ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
             "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "ALLOWED_HOSTS",
             "CSRF_TRUSTED_ORIGINS"]
    show = ["-c", "import django, json; django.setup(); from django.conf import settings as s; "
                  f"print(json.dumps({{name: getattr(s, name) for name in {names!r}}}))"]
    result = run_django(show, **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SECURE_SSL_REDIRECT": True, "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "ALLOWED_HOSTS": ["revplan.example.com"], "CSRF_TRUSTED_ORIGINS": ["https://revplan.example.com"],
    }


def test_check_deploy_names_what_the_defaults_leave_off():
    result = run_django(["manage.py", "check", "--deploy"], SECRET_KEY=PRODUCTION_ENV["SECRET_KEY"])
    ids = set(CHECK_ID.findall(result.stdout + result.stderr))
    assert {"security.W004", "security.W008", "security.W012", "security.W016", "revplan.W002"} <= ids


def test_check_deploy_warns_when_a_proxy_is_declared_for_https_but_not_for_client_addresses():
    env = {**PRODUCTION_ENV, "REVPLAN_NUM_PROXIES": "0"}
    result = run_django(["manage.py", "check", "--deploy"], **env)
    assert "revplan.W003" in result.stdout + result.stderr


# The clean `check --deploy` with every production variable needs the least-privilege database role:
# tests/test_db_roles.py.
