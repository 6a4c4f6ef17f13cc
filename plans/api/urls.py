"""API routes under /api/v1/."""
from django.urls import path

from plans.api.views import TokenView

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
]
