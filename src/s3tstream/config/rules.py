"""AWS naming rules (aws-notes), each a pydantic field check: a bad name fails before any AWS call."""

from __future__ import annotations

import re


def rule(ok: bool, message: str) -> None:
    """A field check: ValueError (pydantic reports it under the field's key) unless ok."""
    if not ok:
        raise ValueError(message)


def check_stack_name(v: str) -> str:
    # Short and plain so that every derived name fits every service's rules.
    rule(
        bool(re.fullmatch(r"[a-z][a-z0-9-]{0,28}[a-z0-9]|[a-z]", v)),
        "1-30 characters of a-z, 0-9 and '-', starting with a letter and ending with a letter or digit",
    )
    rule("--" not in v, "must not contain '--'")
    rule(not v.startswith(("aws", "xn--", "sthree-")), "must not start with 'aws', 'xn--' or 'sthree-'")
    return v


def check_dynamodb_table(v: str) -> str:
    rule(bool(re.fullmatch(r"[a-zA-Z0-9_.-]{3,255}", v)), "3-255 characters of a-z, A-Z, 0-9, '_', '-', '.'")
    return v


def check_attribute_name(v: str) -> str:
    rule(0 < len(v.encode()) <= 255, "1-255 bytes")
    return v


def check_kinesis_stream(v: str) -> str:
    rule(bool(re.fullmatch(r"[a-zA-Z0-9_.-]{1,128}", v)), "1-128 characters of a-z, A-Z, 0-9, '_', '-', '.'")
    return v


def check_table_bucket(v: str) -> str:
    rule(3 <= len(v) <= 63, "3-63 characters")
    rule(bool(re.fullmatch(r"[a-z0-9-]+", v)), "only a-z, 0-9 and '-'")
    rule(v[0].isalnum() and v[-1].isalnum(), "must start and end with a letter or digit")
    for p in ("xn--", "sthree-", "amzn-s3-demo-", "aws"):
        rule(not v.startswith(p), f"must not start with the reserved prefix '{p}'")
    for s in ("-s3alias", "--ol-s3", "--x-s3", "--table-s3"):
        rule(not v.endswith(s), f"must not end with the reserved suffix '{s}'")
    return v


def check_s3tables_name(v: str, what: str = "name") -> str:
    rule(1 <= len(v) <= 255, "1-255 characters")
    rule(bool(re.fullmatch(r"[a-z0-9_]+", v)), "only lowercase a-z, 0-9 and '_'")
    rule(v[0].isalnum() and v[-1].isalnum(), "must start and end with a letter or digit")
    if what == "namespace":
        rule(not v.startswith("aws"), "a namespace must not start with 'aws'")
    return v


def check_column_name(v: str) -> str:
    # Athena and Glue reject tables with uppercase column names (aws-notes).
    rule(bool(re.fullmatch(r"[a-z_][a-z0-9_]{0,254}", v)), "lowercase a-z, 0-9 and '_', not starting with a digit, at most 255")
    return v


def check_firehose_name(v: str) -> str:
    rule(bool(re.fullmatch(r"[a-zA-Z0-9_.-]{1,64}", v)), "1-64 characters of a-z, A-Z, 0-9, '_', '-', '.'")
    return v


def check_lambda_name(v: str) -> str:
    rule(bool(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", v)), "1-64 characters of a-z, A-Z, 0-9, '_', '-'")
    return v


def check_s3_bucket(v: str) -> str:
    rule(3 <= len(v) <= 63, "3-63 characters")
    rule(bool(re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", v)), "a-z, 0-9, '.', '-', starting and ending with a letter or digit")
    rule(".." not in v and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", v), "no '..' and not an IP address")
    return v


# ---------------------------------------------------------------- sections
