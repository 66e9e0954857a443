"""S3 bucket policies: a Deny statement applies only when its Bool conditions match.

moto 5.2.5 evaluates only StringEquals conditions (``moto.iam.policy_conditions``) and treats
every other operator as matched, so the usual TLS-only policy ``{"Effect": "Deny",
"Principal": "*", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}``
(the Firehose error bucket has it) denied every object call. On AWS a statement applies only
when its conditions match (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html),
and a missing key makes a Bool condition false unless ...IfExists
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
Here a Deny statement whose Bool/BoolIfExists conditions do not match is NEUTRAL. The sandbox
serves plain HTTP but stands for an HTTPS endpoint: aws:SecureTransport is "true" in it.
"""

from __future__ import annotations

from typing import Any

from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

from moto.iam.access_control import IAMPolicyStatement, PermissionResult  # noqa: E402

_original = IAMPolicyStatement.is_action_permitted


SANDBOX_CONTEXT = {"aws:securetransport": "true"}


def _bool_conditions_unmet(conditions: dict[str, Any], incoming: dict[str, str] | None) -> bool:
    ctx = {**SANDBOX_CONTEXT, **{k.lower(): v for k, v in (incoming or {}).items()}}
    for op, pairs in conditions.items():
        if op not in ("Bool", "BoolIfExists") or not isinstance(pairs, dict):
            continue
        for key, expected in pairs.items():
            want = [str(x).lower() for x in (expected if isinstance(expected, list) else [expected])]
            actual = ctx.get(key.lower())
            if actual is None:
                if op == "BoolIfExists":
                    continue
                return True
            if str(actual).lower() not in want:
                return True
    return False


def _is_action_permitted(self: IAMPolicyStatement, action: str, resource: str = "*", principal: str | None = None,
                         incoming_condition_values: dict[str, str] | None = None) -> Any:
    result = _original(self, action, resource, principal, incoming_condition_values)
    st = self._statement
    if (
        result == PermissionResult.DENIED
        and st.get("Effect") == "Deny"
        and st.get("Condition")
        and _bool_conditions_unmet(st["Condition"], incoming_condition_values)
    ):
        return PermissionResult.NEUTRAL
    return result


if not getattr(IAMPolicyStatement.is_action_permitted, "_s3tstream_patched", False):
    _is_action_permitted._s3tstream_patched = True  # type: ignore[attr-defined]
    IAMPolicyStatement.is_action_permitted = _is_action_permitted  # type: ignore[method-assign]
