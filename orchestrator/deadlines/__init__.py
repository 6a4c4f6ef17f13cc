"""Time for the things that wait for people (deadlines: remind, escalate, the plan type's final rule) and for
plans that stopped moving on their own (stuck detection). Plain service modules; tasks.py only calls them.

  rules     the deadline rules per plan type and kind of wait, and an item's reminder, due and final times
  items     what waits for a person now, for every tenant, read in a constant number of queries
  service   the beat job: each item's next stage, once (a DeadlineNotice per item and stage), ledgered, mailed
  mail      who an item waits on (plans.authority) and the mails
  stuck     an ACTIVE plan nothing moves: flagged, ledgered, re-driven once per episode
  models    DeadlineNotice, StuckEpisode (imported by orchestrator.models)
"""
