"""plans.wording: a proposal's inputs as sentences, each kind of value in words, never a Python repr."""
import pytest

from plans.wording import inputs_in_words, number, words

RAW = ("{", "}", "[", "]", "'")


@pytest.mark.parametrize(("value", "expected"), [
    (None, "unknown"),
    ("None", "unknown"),
    (True, "yes"),
    (False, "no"),
    (950, "950"),
    (120000, "120k"),
    (1_500_000, "1.5M"),
    (0.42, "0.42"),
    ("watch", "watch"),
    ([], "none"),
    ({}, "none"),
    (["A"], "A"),
    (["A", "B", "C"], "A, B and C"),
    (["A", "B", "C", "D", "E", "F", "G"], "A, B, C, D, E and 2 more"),
    ({"health": "watch", "arr": 120000, "nps": 31}, "ARR 120k, health watch, NPS 31"),
    ({"last_contact": {"days_ago": 12}}, "last contact days ago 12"),
    ([{"name": "x", "open": True}, {"name": "y", "open": False}], "2 (name x, open yes; name y, open no)"),
])
def test_each_kind_of_value_in_words(value, expected):
    assert words(value) == expected


def test_big_numbers_are_short():
    assert [number(n) for n in (1000, 1250, 2_000_000_000, -5000)] == ["1k", "1.2k", "2B", "-5k"]


def test_the_proposal_inputs_are_sentences():
    text = inputs_in_words({
        "proposer": "llm:gpt", "dropped_action_types": ["SEND_GIFT"], "plan_type": "RENEWAL_DEFENSE",
        "account_id": "7d3c0b8e-0000-0000-0000-000000000000", "account_name": "Acme", "renewal_date": "2027-01-15",
        "days_to_renewal": -3, "posture": {"health": "watch", "arr": 120000}, "signal_types": [],
        "recent_signals": [], "previous_plans": [{"plan_status": "COMPLETED"}, {"plan_status": "COMPLETED"},
                                                 {"plan_status": "ABORTED"}],
        "tenant_goal": {"target_nrr": 1.1},
    })

    assert text == (
        "Proposer: llm:gpt. Account: Acme. Renewal date: 2027-01-15 (3 days ago). Posture: ARR 120k, health watch. "
        "Signal types seen: none. Recent signals: none. Previous plans of this type: 3 (2 completed, 1 aborted). "
        "Action types dropped from the proposal: SEND_GIFT. Tenant goal: target NRR 1.1."
    )
    assert not any(raw in text for raw in RAW)


def test_nothing_dropped_is_not_said_and_the_seed_demos_inputs_read_well():
    text = inputs_in_words({"dropped_action_types": [], "signal_types": ["SUPPORT_RISK", "NO_RESPONSE"],
                            "renewal_date": "None"})

    assert text == "Renewal date: unknown. Signal types seen: SUPPORT_RISK and NO_RESPONSE."
