"""The plan domain: models, lifecycle, policy gate, evaluator, authority, services and ledger."""
