"""The thresholds of a connector's breakers: the deployment's defaults, overridden per connector (settings)."""
from dataclasses import dataclass

from django.conf import settings

# The connectors a breaker guards: those that call another system and can fail transiently. The internal
# connector is our own database: it raises no TransientError (a database error fails the delivery itself),
# so a breaker could never see an outage there, and would only add two Redis round trips to its steps.
GUARDED_CONNECTORS = ("crm", "calendar")

# The window is counted in this many buckets: a try leaves it at most window/BUCKETS late (10 s of 5 min).
BUCKETS = 30


@dataclass(frozen=True)
class BreakerConfig:
    failure_rate: float  # the share of transient failures among the window's tries that opens it
    min_tries: int  # fewer tries than this in the window never open it
    window_seconds: int
    cool_down_seconds: float  # OPEN this long before a probe is let through

    @property
    def bucket_seconds(self) -> int:
        return max(1, self.window_seconds // BUCKETS)

    def trips(self, tries: int, failures: int) -> bool:
        return tries >= self.min_tries and failures >= self.failure_rate * tries

    def as_dict(self) -> dict:
        return {"failure_rate": self.failure_rate, "min_tries": self.min_tries,
                "window_seconds": self.window_seconds, "cool_down_seconds": self.cool_down_seconds}


def config_for(connector: str) -> BreakerConfig:
    merged = {**settings.REVPLAN_BREAKER_DEFAULTS, **settings.REVPLAN_BREAKER_CONNECTORS.get(connector, {})}
    return BreakerConfig(failure_rate=float(merged["failure_rate"]), min_tries=int(merged["min_tries"]),
                         window_seconds=int(merged["window_seconds"]),
                         cool_down_seconds=float(merged["cool_down_seconds"]))
