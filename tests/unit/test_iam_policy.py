"""The shipped least-privilege policy (deploy/iam-policy.json) grants exactly the AWS operations the code can
call, and denies assignment writes on the management account.

The operations the code can call are found in the sources of include/idc_sync and plugins: every API
operation of the services used (from botocore's own models) whose name appears as an operation string
("CreateAccountAssignment") or a client method (``.create_account_assignment(`` or ``"list_users"``). A few
names exist in several services; the code uses them of one service only (``SHARED``).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import botocore.session

REPO = Path(__file__).resolve().parents[2]
POLICY = json.loads((REPO / "deploy/iam-policy.json").read_text())
SERVICES = {  # botocore service -> IAM action prefix
    "sso-admin": "sso",
    "identitystore": "identitystore",
    "organizations": "organizations",
    "iam": "iam",
    "accessanalyzer": "access-analyzer",
}
SHARED = {
    "TagResource": "sso-admin",
    "ListTagsForResource": "sso-admin",
    "ListUsers": "identitystore",
    "ListGroups": "identitystore",
}
# Not called by the code: IAM Identity Center itself creates the roles and SAML providers in member
# accounts when a permission set is provisioned, with the caller's permissions (as AWS's managed policy
# AWSSSOMemberAccountAdministrator grants them), on its reserved paths only.
PROVISIONING_SID = "ProvisionRolesInMemberAccounts"


@cache
def _sources() -> str:
    files = [*(REPO / "include/idc_sync").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]
    return "\n".join(p.read_text() for p in files)


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def used_actions() -> set[str]:
    session = botocore.session.get_session()
    src = _sources()
    out = set()
    for service, prefix in SERVICES.items():
        for op in session.get_service_model(service).operation_names:
            if SHARED.get(op, service) != service:
                continue
            if re.search(rf"[\"']{op}[\"']", src) or re.search(
                rf"\.{_snake(op)}\(|[\"']{_snake(op)}[\"']", src
            ):
                out.add(f"{prefix}:{op}")
    return out


def _statements(effect: str, *, skip: str = "") -> list[dict[str, object]]:
    return [s for s in POLICY["Statement"] if s["Effect"] == effect and s.get("Sid") != skip]


def allowed_actions() -> set[str]:
    out: set[str] = set()
    for statement in _statements("Allow", skip=PROVISIONING_SID):
        actions = statement["Action"]
        out |= {actions} if isinstance(actions, str) else set(actions)  # type: ignore[arg-type]
    return out


def test_every_operation_the_code_calls_is_allowed() -> None:
    missing = used_actions() - allowed_actions()
    assert not missing, (
        f"the policy does not allow {sorted(missing)}: the pipeline would fail with AccessDenied"
    )


def test_the_policy_allows_nothing_the_code_does_not_call() -> None:
    extra = allowed_actions() - used_actions()
    assert not extra, f"the policy grants {sorted(extra)} that no code calls: remove them"


def test_no_wildcard_actions_and_role_provisioning_only_on_reserved_paths() -> None:
    for statement in POLICY["Statement"]:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action, action
    [provisioning] = [s for s in POLICY["Statement"] if s.get("Sid") == PROVISIONING_SID]
    assert provisioning["Resource"] == [
        "arn:aws:iam::*:role/aws-reserved/sso.amazonaws.com/*",
        "arn:aws:iam::*:saml-provider/AWSSSO_*",
    ]


def test_assignment_writes_on_the_management_account_are_denied() -> None:
    [deny] = _statements("Deny")
    assert set(deny["Action"]) == {  # type: ignore[arg-type]
        "sso:CreateAccountAssignment",
        "sso:DeleteAccountAssignment",
        "sso:ProvisionPermissionSet",
    }
    assert deny["Resource"] == "arn:aws:sso:::account/MANAGEMENT_ACCOUNT_ID"  # replaced when deploying


def test_permission_set_writes_need_the_ownership_tag() -> None:
    [create] = [s for s in POLICY["Statement"] if s.get("Sid") == "CreateOnlyTaggedPermissionSets"]
    assert create["Condition"] == {"StringEquals": {"aws:RequestTag/managed-by": "idc-sync"}}
    [change] = [s for s in POLICY["Statement"] if s.get("Sid") == "ChangeOnlyPermissionSetsThePipelineOwns"]
    assert change["Resource"] == "arn:aws:sso:::permissionSet/*"
    assert change["Condition"] == {"StringEquals": {"aws:ResourceTag/managed-by": "idc-sync"}}
