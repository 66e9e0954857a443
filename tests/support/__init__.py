"""Test harness code (crash hook, sandbox inventory, crash-resume sweep).

Importable by tests and benchmarks; the product never imports it.
"""
