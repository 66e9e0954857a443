"""The sandbox's Athena: SQL engine over the lake, DML writes, Trino translation, Glue text tables."""
