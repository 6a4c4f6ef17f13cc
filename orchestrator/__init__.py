"""Worker-side code: ticks, plan advancement, the execution spine (later issues)."""
