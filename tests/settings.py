"""Test settings: the real ones plus the test-only support app (its `flush` respects the ledger trigger)."""
import os
import secrets

# The real settings refuse to load without a key. One random key per run, set in the environment so the
# workers and beats the integration tests start (with revplan.settings) share it.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from revplan.settings import *  # noqa: F403
from revplan.settings import INSTALLED_APPS

# First, so its `flush` command wins over Django's.
INSTALLED_APPS = ["tests.support", *INSTALLED_APPS]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; real hashing is Django's job
LOGGING_CONFIG = None

# One test database per pytest process, so parallel runs on one machine never drop each other's.
from revplan.settings import DATABASES  # noqa: E402

DATABASES["default"]["TEST"] = {"NAME": f"test_revplan_{os.getpid()}"}
# Tests connect as one role; the migrating owner's alias would get a test database of its own.
del DATABASES["owner"]
# Threads the tests start (live_server) close their connections after each request, so the test
# database can be dropped at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0
from revplan.settings import STATIC_ROOT  # noqa: E402

os.makedirs(STATIC_ROOT, exist_ok=True)  # WhiteNoise warns on every request without it

# No test is throttled but those that set a rate (each with a cache prefix of its own, tests/api/test_auth.py):
# the suite and the schemathesis run send far more requests a minute than any production rate allows.
from revplan.settings import REST_FRAMEWORK  # noqa: E402

REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": dict.fromkeys(REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"])}
