"""IAM documents of the create-firehose step that policies.py does not hold (yet).

Every other document the step uses (transform trust and logs policy, the Firehose role's
delivery policy) comes from policies.py. For the lead to merge into policies.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from s3tstream.policies import VERSION, s3_bucket_arn

if TYPE_CHECKING:
    from s3tstream.aws import Identity


def error_bucket_policy(ident: "Identity", bucket: str) -> dict[str, Any]:
    """TLS only: deny every request to the error bucket that is not made over HTTPS
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html,
    condition key aws:SecureTransport)."""
    arn = s3_bucket_arn(ident, bucket)
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def normalize(doc: Any) -> Any:
    """A policy document in a canonical form, to compare what AWS returns with what we want:
    single strings where IAM allows a list become one-element lists, lists are sorted."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            v = normalize(v)
            if k in ("Action", "NotAction", "Resource", "NotResource") and isinstance(v, str):
                v = [v]
            out[k] = v
        return out
    if isinstance(doc, list):
        return sorted((normalize(x) for x in doc), key=repr)
    return doc
