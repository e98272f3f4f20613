"""Policy text helpers: a canonical form of IAM policy JSON, and AWS managed policy names -> ARNs.

Why canonical: the plan compares the inline policy a requester wrote in kintone with the one IdC returns.
People reformat JSON, reorder keys, write ``"Action": "s3:GetObject"`` or ``["s3:GetObject"]``; IdC may
return it minified. None of that changes what the policy allows, so none of it may cause an update
(every update forces a re-provisioning of every account the permission set is in). The canonical form is
only used for comparison; the text written to IdC is the requester's own.
"""

from __future__ import annotations

import json
import re
from typing import Any

from idc_sync import safe_json

# Statement members whose value is "a string or a list of strings" with set semantics in IAM.
_SET_VALUED = ("Action", "NotAction", "Resource", "NotResource")
_PRINCIPAL_KEYS = ("Principal", "NotPrincipal")

_ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:iam::")


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _as_sorted_list(value: Any) -> Any:
    """A string or a list of scalars -> a sorted list without duplicates; anything else unchanged."""
    if isinstance(value, str | int | float | bool):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        unique = {_dump(v): v for v in value}
        return [unique[k] for k in sorted(unique)]
    return value


def _normalise_principal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_sorted_list(v) for k, v in value.items()}
    return value  # "*"


def _normalise_condition(value: Any) -> Any:
    # {"StringEquals": {"aws:PrincipalTag/team": "a" | ["a", "b"]}}: values are ORed, order-insensitive.
    if isinstance(value, dict):
        return {
            op: ({k: _as_sorted_list(v) for k, v in block.items()} if isinstance(block, dict) else block)
            for op, block in value.items()
        }
    return value


def _normalise_statement(statement: Any) -> Any:
    if not isinstance(statement, dict):
        return statement
    out: dict[str, Any] = {}
    for key, value in statement.items():
        if key in _SET_VALUED:
            out[key] = _as_sorted_list(value)
        elif key in _PRINCIPAL_KEYS:
            out[key] = _normalise_principal(value)
        elif key == "Condition":
            out[key] = _normalise_condition(value)
        else:
            out[key] = value
    return out


def canonical_policy(text: str | None) -> str | None:
    """The canonical compact JSON of an IAM policy, or None for no policy (None / blank text).

    Normalises: key order, whitespace, ``Statement`` as an object vs a list, string vs list for
    Action/NotAction/Resource/NotResource, principal and condition values (all order-insensitive sets in
    IAM), duplicate entries, and statement order (IAM evaluates statements as a set).
    Raises :class:`~idc_sync.safe_json.UnsafeJsonError` (a ``ValueError``) when the text is not valid JSON
    or is beyond :mod:`idc_sync.safe_json`'s size/depth limits: a hostile record must never reach the
    recursive walk below (or ``json.dumps``) with 3,000 nested brackets.
    """
    if text is None or not text.strip():
        return None
    doc = safe_json.loads(text)
    if isinstance(doc, dict) and "Statement" in doc:
        statements = doc["Statement"]
        if isinstance(statements, dict):
            statements = [statements]
        if isinstance(statements, list):
            normalised = [_normalise_statement(s) for s in statements]
            unique = {_dump(s): s for s in normalised}
            statements = [unique[k] for k in sorted(unique)]
        doc = {**doc, "Statement": statements}
    return _dump(doc)


def policies_equal(a: str | None, b: str | None) -> bool:
    """True when both texts are the same policy; invalid JSON is only equal to the identical text."""
    try:
        return canonical_policy(a) == canonical_policy(b)
    except ValueError:
        return (a or "").strip() == (b or "").strip()


def managed_policy_arn(name_or_arn: str, *, partition: str = "aws") -> str:
    """An AWS managed policy reference as written in kintone -> its ARN.

    ``ReadOnlyAccess`` -> ``arn:aws:iam::aws:policy/ReadOnlyAccess``;
    ``job-function/ViewOnlyAccess`` (or ``/job-function/ViewOnlyAccess``) ->
    ``arn:aws:iam::aws:policy/job-function/ViewOnlyAccess``; an ARN is returned unchanged (trimmed).
    """
    value = name_or_arn.strip()
    if not value:
        raise ValueError("empty managed policy name")
    if _ARN_RE.match(value):
        return value
    return f"arn:{partition}:iam::aws:policy/{value.strip('/')}"


def managed_policy_name(arn: str) -> str:
    """The inverse for display: ``arn:aws:iam::aws:policy/job-function/ViewOnlyAccess`` -> ``job-function/ViewOnlyAccess``."""
    marker = ":policy/"
    return arn.split(marker, 1)[1] if marker in arn else arn
