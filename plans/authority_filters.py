"""plans.authority's rules as ORM filters: which plans a role may use a verb on, exactly, in SQL.

A list that must count and page what a person may act on (the inbox) cannot judge every candidate in
Python at 100,000 plans. The rules are not restated here: plans.authority.denial only looks at a plan
through four facts relative to the caller (Subject: do they own the account, own the plan, did they create
it, did they edit it since its approval), so asking it about each of the 16 combinations gives its whole
truth table for (verb, role), and the filter is that table over the four facts' columns.
tests/plans/test_inbox_waits.py checks the filter against denial on real rows, and that denial reads nothing
else of a subject (no rule compares two of its fields with each other).
"""
from functools import cache
from itertools import product

from django.db.models import Q

from plans.authority import Subject, Verb, denial
from plans.models import Role

# The facts denial reads of a Subject, each as (the Subject it makes true for user 1, its column test).
_OTHER_USER = 2
_FACTS = ("account_owner", "plan_owner", "creator", "editor")


def _subject(user_id: int, facts: tuple[bool, ...]) -> Subject:
    account_owner, plan_owner, creator, editor = facts
    return Subject(account_owner_id=user_id if account_owner else _OTHER_USER,
                   plan_owner_id=user_id if plan_owner else _OTHER_USER,
                   plan_created_by=f"user:{user_id if creator else _OTHER_USER}",
                   plan_editors=frozenset({user_id}) if editor else frozenset())


# Where each fact's column is: on RevenuePlan, and on the inbox's PlanWait rows (plans.wait_models).
PLAN_FACTS = {"account_owner": "account__owner_id", "plan_owner": "owner_id", "creator": "created_by",
              "editor": "edited_by_since_approval"}
PLAN_WAIT_FACTS = {**PLAN_FACTS, "account_owner": "account_owner_id"}


def _fact_q(fact: str, user_id: int, columns: dict[str, str]) -> Q:
    column = columns[fact]
    if fact == "creator":
        return Q(**{column: f"user:{user_id}"})
    if fact == "editor":
        return Q(**{f"{column}__contains": [user_id]})
    return Q(**{column: user_id})


@cache
def _allowed_facts(verb: Verb, role: Role) -> tuple[tuple[str, ...], frozenset[tuple[bool, ...]]]:
    """The facts `verb`'s rule depends on for `role`, and the combinations of them it allows."""
    # The rules compare the subject with the caller only, so one user id stands for every user.
    table = {facts: denial(verb, role=role, user_id=1, subject=_subject(1, facts)) is None
             for facts in product((False, True), repeat=len(_FACTS))}
    relevant = tuple(
        fact for index, fact in enumerate(_FACTS)
        if any(table[facts] != table[(*facts[:index], not facts[index], *facts[index + 1:])] for facts in table))
    indexes = [_FACTS.index(fact) for fact in relevant]
    allowed = frozenset(tuple(facts[index] for index in indexes) for facts, ok in table.items() if ok)
    return relevant, allowed


def allowed_plans(verb: Verb, role: Role, user_id: int, *, columns: dict[str, str] = PLAN_FACTS) -> Q | None:
    """The plans `role`/`user_id` may use `verb` on, as a filter on RevenuePlan (or, with `columns`
    PLAN_WAIT_FACTS, on PlanWait): Q() for all of them, None for none."""
    relevant, allowed = _allowed_facts(verb, role)
    if not allowed:
        return None
    if not relevant:
        return Q()
    combinations = []
    for values in sorted(allowed):
        combination = Q()
        for fact, value in zip(relevant, values, strict=True):
            test = _fact_q(fact, user_id, columns)
            combination &= test if value else ~test
        combinations.append(combination)
    found = combinations[0]
    for combination in combinations[1:]:
        found |= combination
    return found
