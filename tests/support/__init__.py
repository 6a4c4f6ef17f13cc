"""A test-only Django app: installed by tests.settings, never in production."""
