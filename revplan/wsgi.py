"""WSGI entry point for gunicorn."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "revplan.settings")
application = get_wsgi_application()

# Everything loaded so far, and what the first request would load, lives as long as the worker: keep it out of
# the collector's walks (revplan.memory).
from revplan.memory import freeze_startup_heap  # noqa: E402

freeze_startup_heap(serves_requests=True)
