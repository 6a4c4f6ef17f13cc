"""The HTTP layer above both apps: every DRF view, serializer, route, the error handler and pagination.

Thin by rule: a serializer checks a request's form, one service or selector does the work, and a
serializer shapes the answer. plans/ and orchestrator/ never import from here.
"""
