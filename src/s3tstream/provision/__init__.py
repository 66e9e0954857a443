"""Provisioning: the plan/apply/destroy engine, the resource base, the step catalog, preflight."""
