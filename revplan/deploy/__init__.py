"""Production safety: least-privilege database roles and the startup checks that name a risky setting."""
