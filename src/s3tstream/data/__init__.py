"""The data commands: items, change records, verify, failed records, test-insert, backfill."""
