"""Autonomy: whether a step may run on its own, needs a person, or is blocked."""
