"""AutoApprovalPolicyV1, table-driven: every decision and reason, and the order the checks run in."""
from dataclasses import replace

import pytest

from orchestrator.autonomy.policy import POLICY_VERSION, Decision, Reason, StepFacts, decide, shadow_verdict

BRIEF, MEETING, ESCALATE = "PREP_RENEWAL_BRIEF", "REQUEST_RENEWAL_MEETING", "ESCALATE_SUPPORT_RISK"
HUMAN_TOUCH = {"no_external_contact_without_approval": True}

# An opted-in tenant's LOW-risk internal step in AUTO_EXECUTE mode with budget left: it runs on its own.
ALLOWED = StepFacts(action_type=BRIEF, risk_level="LOW", constraints=HUMAN_TOUCH, mode="AUTO_EXECUTE", opted_in=True)

CASES = [
    # (name, change from ALLOWED, decision, reason)
    ("allowed", {}, Decision.AUTO_EXECUTE, "AUTONOMY_ALLOWED"),
    ("medium risk, no contact", {"risk_level": "MEDIUM"}, Decision.AUTO_EXECUTE, "AUTONOMY_ALLOWED"),
    ("unknown action type", {"action_type": "SEND_GIFT"}, Decision.BLOCK, "UNKNOWN_ACTION_TYPE"),
    ("kill switch", {"killed_by": "tenant kill switch"}, Decision.BLOCK, "KILL_SWITCH"),
    ("mode disabled", {"mode": "DISABLED"}, Decision.BLOCK, "MODE_DISABLED"),
    ("mode propose only", {"mode": "PROPOSE_ONLY"}, Decision.BLOCK, "MODE_PROPOSE_ONLY"),
    ("approved by a person", {"approved_by_id": 7, "mode": "APPROVAL_REQUIRED", "opted_in": False},
     Decision.REQUIRE_APPROVAL, "APPROVED_BY_PERSON"),
    ("external contact under the constraint", {"action_type": MEETING, "risk_level": "MEDIUM"},
     Decision.REQUIRE_APPROVAL, "EXTERNAL_CONTACT"),
    ("external contact, constraint absent (defaults on)", {"action_type": MEETING, "risk_level": "MEDIUM",
                                                           "constraints": {}},
     Decision.REQUIRE_APPROVAL, "EXTERNAL_CONTACT"),
    ("external contact, constraint off", {"action_type": MEETING, "risk_level": "MEDIUM",
                                          "constraints": {"no_external_contact_without_approval": False}},
     Decision.AUTO_EXECUTE, "AUTONOMY_ALLOWED"),
    ("high-risk step", {"risk_level": "HIGH"}, Decision.REQUIRE_APPROVAL, "RISK_LEVEL_HIGH"),
    ("high-risk action type on a step marked low", {"action_type": ESCALATE}, Decision.REQUIRE_APPROVAL,
     "RISK_LEVEL_HIGH"),
    ("mode approval required (the default)", {"mode": "APPROVAL_REQUIRED"}, Decision.REQUIRE_APPROVAL,
     "TENANT_POLICY"),
    ("not opted in", {"opted_in": False}, Decision.REQUIRE_APPROVAL, "NOT_OPTED_IN"),
    ("budget exhausted", {"budget_left": False}, Decision.REQUIRE_APPROVAL, "BUDGET_EXHAUSTED"),
    # Order: the first check that applies decides.
    ("kill switch beats an approval", {"killed_by": "kill switch for PREP_RENEWAL_BRIEF", "approved_by_id": 7},
     Decision.BLOCK, "KILL_SWITCH"),
    ("disabled beats an approval", {"mode": "DISABLED", "approved_by_id": 7}, Decision.BLOCK, "MODE_DISABLED"),
    ("an approval beats high risk", {"risk_level": "HIGH", "approved_by_id": 7}, Decision.REQUIRE_APPROVAL,
     "APPROVED_BY_PERSON"),
    ("external contact beats high risk", {"action_type": MEETING, "risk_level": "HIGH"},
     Decision.REQUIRE_APPROVAL, "EXTERNAL_CONTACT"),
    ("high risk beats an exhausted budget", {"risk_level": "HIGH", "budget_left": False},
     Decision.REQUIRE_APPROVAL, "RISK_LEVEL_HIGH"),
    ("mode beats opt-in", {"mode": "APPROVAL_REQUIRED", "opted_in": False}, Decision.REQUIRE_APPROVAL,
     "TENANT_POLICY"),
    ("opt-in beats budget", {"opted_in": False, "budget_left": False}, Decision.REQUIRE_APPROVAL, "NOT_OPTED_IN"),
    ("shadow mode: a person approves", {"mode": "SHADOW"}, Decision.REQUIRE_APPROVAL, "SHADOW_MODE"),
    ("shadow mode, not opted in", {"mode": "SHADOW", "opted_in": False}, Decision.REQUIRE_APPROVAL, "SHADOW_MODE"),
    ("external contact beats shadow mode", {"mode": "SHADOW", "action_type": MEETING, "risk_level": "MEDIUM"},
     Decision.REQUIRE_APPROVAL, "EXTERNAL_CONTACT"),
    ("an approval beats shadow mode", {"mode": "SHADOW", "approved_by_id": 7}, Decision.REQUIRE_APPROVAL,
     "APPROVED_BY_PERSON"),
]


@pytest.mark.parametrize(("change", "decision", "reason"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_decision_and_reason(change, decision, reason):
    result = decide(replace(ALLOWED, **change))
    assert (result.decision, result.reason) == (decision, reason)
    assert result.policy_version == POLICY_VERSION
    assert len(result.explanation) > 20  # a sentence a seller can read


def test_every_reason_the_policy_can_give_is_in_the_table():
    assert {case[3] for case in CASES} == set(Reason)


def test_same_input_same_output():
    for _, change, _, _ in CASES:
        facts = replace(ALLOWED, **change)
        assert decide(facts) == decide(replace(facts)) == decide(StepFacts(**facts.as_dict()))


def test_decision_records_as_plain_strings():
    assert decide(ALLOWED).as_dict() == {
        "decision": "AUTO_EXECUTE", "reason": "AUTONOMY_ALLOWED",
        "explanation": decide(ALLOWED).explanation, "policy_version": POLICY_VERSION,
    }


SHADOW = replace(ALLOWED, mode="SHADOW")

SHADOW_CASES = [
    # (name, change from SHADOW, what the policy would have done on its own, reason)
    ("would run", {}, Decision.AUTO_EXECUTE, "AUTONOMY_ALLOWED"),
    ("would run in a tenant not opted in yet (shadow asks: if autopilot were on)", {"opted_in": False},
     Decision.AUTO_EXECUTE, "AUTONOMY_ALLOWED"),
    ("a person's approval is not the policy's", {"approved_by_id": 7}, Decision.AUTO_EXECUTE, "AUTONOMY_ALLOWED"),
    ("would ask: external contact", {"action_type": MEETING, "risk_level": "MEDIUM"}, Decision.REQUIRE_APPROVAL,
     "EXTERNAL_CONTACT"),
    ("would ask: HIGH risk", {"risk_level": "HIGH"}, Decision.REQUIRE_APPROVAL, "RISK_LEVEL_HIGH"),
    ("would stop: kill switch", {"killed_by": "tenant kill switch"}, Decision.BLOCK, "KILL_SWITCH"),
]


@pytest.mark.parametrize(("change", "decision", "reason"), [case[1:] for case in SHADOW_CASES],
                         ids=[case[0] for case in SHADOW_CASES])
def test_shadow_verdict_is_the_policy_as_if_auto_execute(change, decision, reason):
    facts = replace(SHADOW, **change)
    verdict = shadow_verdict(facts)
    assert (verdict.decision, verdict.reason) == (decision, reason)
    # and whatever it says, the step itself never runs on its own in shadow mode
    assert decide(facts).decision != Decision.AUTO_EXECUTE
