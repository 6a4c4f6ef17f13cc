"""Facts in words: what a proposal looked at (its PLAN_CREATED inputs), written as sentences a seller
reads, never as a Python dict or list ("Posture: health watch, ARR 120k. Previous plans: 2 (1 completed,
1 aborted).")."""
from collections import Counter
from datetime import datetime

# Said first, in this order; any other key follows in alphabetical order, in the generic wording.
ORDER = ("proposer", "account_name", "renewal_date", "days_to_renewal", "posture", "signal_types", "recent_signals",
         "previous_plans", "dropped_action_types")
# The plan page says these already (the plan's type and account), and an id says nothing to a person.
UNSAID = frozenset({"plan_type", "account_id"})
LABELS = {"account_name": "Account", "days_to_renewal": "Renewal", "signal_types": "Signal types seen",
          "recent_signals": "Recent signals", "previous_plans": "Previous plans of this type",
          "dropped_action_types": "Action types dropped from the proposal"}
ACRONYMS = frozenset({"arr", "mrr", "nrr", "nps", "csm", "crm", "llm", "id", "sla", "qbr"})
# A list longer than this is summarised ("12 items: the first 5 …").
MAX_LISTED = 5


def label(key: str) -> str:
    words = [word.upper() if word.lower() in ACRONYMS else word for word in str(key).replace("_", " ").split()]
    text = " ".join(words) or str(key)
    return text[0].upper() + text[1:]


def _key_words(key: str) -> str:
    """A key inside a phrase: "health", "ARR", "last contact"."""
    return " ".join(word.upper() if word.lower() in ACRONYMS else word.lower()
                    for word in str(key).replace("_", " ").split())


def number(value: int | float) -> str:
    """120000 -> "120k", 1500000 -> "1.5M", 0.42 -> "0.42"."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:g}" if isinstance(value, float) else str(value)


def and_join(items: list[str]) -> str:
    if not items:
        return "none"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _when(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return str(text)
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment.tzinfo else f"{moment:%Y-%m-%d %H:%M}"


def words(value) -> str:
    """Any JSON value as a phrase: a dict as "key value, key value", a list as "a, b and c", a list of
    objects as a count with each one in words."""
    if value is None or value == "None":
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, dict):
        # Keys in alphabetical order: a JSON column keeps no order a person would recognise.
        return ", ".join(f"{_key_words(key)} {words(value[key])}" for key in sorted(value, key=str)) or "none"
    if isinstance(value, list | tuple):
        if not value:
            return "none"
        if all(isinstance(item, dict) for item in value):
            shown = "; ".join(words(item) for item in value[:MAX_LISTED])
            more = f"; and {len(value) - MAX_LISTED} more" if len(value) > MAX_LISTED else ""
            return f"{len(value)} ({shown}{more})"
        listed = [words(item) for item in value[:MAX_LISTED]]
        if len(value) > MAX_LISTED:
            listed.append(f"{len(value) - MAX_LISTED} more")
        return and_join(listed)
    return str(value)


def _counted(items: list[dict], key: str) -> str:
    """ "3 (2 SUPPORT_RISK, 1 NO_RESPONSE)": how many, and how many of each `key`, most first."""
    counts = Counter(str(item.get(key) or "unknown") for item in items)
    return f"{len(items)} ({', '.join(f'{count} {name}' for name, count in counts.most_common())})"


def _recent_signals(value) -> str:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        return words(value)
    if not value:
        return "none"
    latest = max((str(item.get("observed_at") or "") for item in value), default="")
    return _counted(value, "signal_type") + (f", the latest observed {_when(latest)}" if latest else "")


def _previous_plans(value) -> str:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        return words(value)
    if not value:
        return "none"
    counts = Counter(str(item.get("plan_status") or "unknown").lower() for item in value)
    return f"{len(value)} ({', '.join(f'{count} {status}' for status, count in counts.most_common())})"


def _days(value) -> str:
    """45 -> "in 45 days", -3 -> "3 days ago", 0 -> "today"."""
    if not isinstance(value, int) or isinstance(value, bool):
        return words(value)
    if value == 0:
        return "today"
    count = f"{abs(value)} day{'s' if abs(value) != 1 else ''}"
    return f"in {count}" if value > 0 else f"{count} ago"


PHRASES = {"recent_signals": _recent_signals, "previous_plans": _previous_plans, "days_to_renewal": _days}


def inputs_in_words(inputs: dict) -> str:
    """The proposal's inputs as sentences, one per fact: "Posture: health watch, ARR 120k."; empty
    lists of what was dropped are left out (nothing was)."""
    keys = [key for key in ORDER if key in inputs]
    keys += sorted(key for key in inputs if key not in ORDER and key not in UNSAID)
    sentences = []
    for key in keys:
        value = inputs[key]
        if key == "dropped_action_types" and not value:
            continue
        if key == "days_to_renewal" and "renewal_date" in inputs:
            continue  # said with the date
        phrase = PHRASES.get(key, words)(value)
        if key == "renewal_date" and inputs.get("days_to_renewal") is not None:
            phrase += f" ({_days(inputs['days_to_renewal'])})"
        sentences.append(f"{LABELS.get(key) or label(key)}: {phrase}.")
    return " ".join(sentences)
