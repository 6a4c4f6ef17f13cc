"""The console's cancel: the ActionIntent list's action cancels through the API's service, the role checked."""
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from orchestrator.execution.models import ActionIntent, IntentStatus
from plans.models import EventType, PauseKind, PauseLayer, PlanLedgerEntry, PlanStatus, RevenuePlan
from tests.api.test_action_cancel_api import start_attempt

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:orchestrator_actionintent_changelist"


def console(user) -> Client:
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="orchestrator",
                                                         codename="view_actionintent"))
    client = Client()
    client.force_login(user)
    return client


def cancel_in_console(user, intent):
    return console(user).post(reverse(CHANGELIST), {"action": "cancel_selected", "_selected_action": [str(intent.pk)]},
                              follow=True)


def test_the_plans_owner_cancels_from_the_list_and_the_plan_waits_for_a_person(world):
    intent = start_attempt(world)
    response = cancel_in_console(world.seller, intent)
    assert response.status_code == 200
    assert [str(message) for message in response.context["messages"]] == [
        f"{intent.action_type} {intent.pk}: cancelled; its plan waits for a person's resume."]
    assert ActionIntent.objects.get(pk=intent.pk).status == IntentStatus.CANCELLED
    assert RevenuePlan.objects.get(pk=intent.plan_id).plan_status == PlanStatus.PAUSED
    assert PauseLayer.objects.filter(plan_id=intent.plan_id, kind=PauseKind.PERSON, lifted_at__isnull=True).exists()
    [entry] = PlanLedgerEntry.objects.filter(plan_id=intent.plan_id, event_type=EventType.ACTION_CANCELLED)
    assert (entry.actor, entry.data["reason"]) == (f"user:{world.seller.pk}", "cancelled in the console")


def test_a_viewer_is_refused_and_nothing_changes(world):
    intent = start_attempt(world)
    response = cancel_in_console(world.viewer, intent)
    [message] = [str(message) for message in response.context["messages"]]
    assert "not cancelled" in message
    assert "Only the plan's owner, a plan approver or a tenant admin" in message
    assert ActionIntent.objects.get(pk=intent.pk).status == IntentStatus.PENDING
    assert RevenuePlan.objects.get(pk=intent.plan_id).plan_status == PlanStatus.ACTIVE


def test_another_tenants_intent_is_not_listed_and_cannot_be_cancelled(world, other_world):
    theirs = start_attempt(other_world)
    client = console(world.admin)
    assert str(theirs.pk) not in client.get(reverse(CHANGELIST)).content.decode()
    client.post(reverse(CHANGELIST), {"action": "cancel_selected", "_selected_action": [str(theirs.pk)]})
    assert ActionIntent.objects.get(pk=theirs.pk).status == IntentStatus.PENDING
