"""Provisioning steps: one module per named step."""
