"""Prometheus metrics of the deadline job and the stuck-plan detector (alert rules page on these)."""
from prometheus_client import Counter, Gauge

# Set by each run of the job in whichever worker ran it: the newest value is the one that counts.
OVERDUE_ITEMS = Gauge("revplan_deadline_overdue_items", "Items waiting for a person past their due time",
                      multiprocess_mode="mostrecent")
DEADLINE_STAGES = Counter("revplan_deadline_stages_total", "Deadline stages reached (reminded, escalated, missed)",
                          ["stage"])
STUCK_DETECTED = Counter("revplan_stuck_plans_detected_total", "Stuck-plan episodes detected")
STUCK_PLANS = Gauge("revplan_stuck_plans", "ACTIVE plans flagged stuck and not moved since",
                    multiprocess_mode="mostrecent")
