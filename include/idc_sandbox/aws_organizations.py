"""Sandbox organizations (AWS JSON 1.1, ``X-Amz-Target: AWSOrganizationsV20161128.<Operation>``).

The read side the pipeline needs: DescribeOrganization (``MasterAccountId`` is the management account),
ListRoots, ListOrganizationalUnitsForParent, ListAccountsForParent, ListAccounts, ListChildren,
ListParents, DescribeAccount, DescribeOrganizationalUnit.

Faithful to botocore's ``organizations/2016-11-28`` model and the service's habits:
- MaxResults 1-20; NextToken opaque; an unknown token is ``InvalidInputException`` (INVALID_NEXT_TOKEN).
- List* pages "can occasionally return an empty set of results even when there are more results
  available" (AWS docs): with probability ``SandboxConfig.organizations_empty_page_rate`` a page comes
  back empty while NextToken is still set, so every client must follow NextToken to the end
  (botocore's paginators do).
- Errors are all HTTP 400 except ServiceException (500); throttling is ``TooManyRequestsException``
  (botocore's standard retry mode treats it as throttling), an unknown parent ``ParentNotFoundException``,
  an unknown account ``AccountNotFoundException``, bad input ``InvalidInputException`` with a ``Reason``.
- Accounts carry ``State`` (PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED) and the
  deprecated ``Status`` (ACTIVE, SUSPENDED, PENDING_CLOSURE) derived from it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from idc_sandbox.core import Sandbox, ServiceError
from idc_sandbox.state import Account, Organization, OrganizationalUnit

SERVICE = "organizations"
TARGET_PREFIX = "AWSOrganizationsV20161128"
# fault kind -> (error code, HTTP status, default message)
ERRORS: dict[str, tuple[str, int, str]] = {
    "throttle": ("TooManyRequestsException", 400, "Rate exceeded"),
    "conflict": (
        "ConcurrentModificationException",
        400,
        "The target of the operation is currently being modified by a different request. Try again later.",
    ),
    "error5xx": (
        "ServiceException",
        500,
        "AWS Organizations can't complete your request because of an internal service error. Try again later.",
    ),
    "access_denied": ("AccessDeniedException", 400, "You don't have permissions to access this resource."),
}

MAX_RESULTS = 20
MAX_CONSECUTIVE_EMPTY_PAGES = 3  # never starve a client forever, whatever the configured rate
_ROOT_ID = re.compile(r"^r-[0-9a-z]{4,32}$")
_OU_ID = re.compile(r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
# deprecated Status derived from State (CLOSED accounts show SUSPENDED, like the real service)
_STATUS_OF_STATE = {
    "PENDING_ACTIVATION": "ACTIVE",
    "ACTIVE": "ACTIVE",
    "SUSPENDED": "SUSPENDED",
    "PENDING_CLOSURE": "PENDING_CLOSURE",
    "CLOSED": "SUSPENDED",
}
_POLICY_TYPES = [{"Type": "SERVICE_CONTROL_POLICY", "Status": "ENABLED"}]


# --------------------------------------------------------------------------- helpers
def _invalid(reason: str, message: str) -> ServiceError:
    return ServiceError("InvalidInputException", message, 400, Reason=reason)


def _required_str(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise _invalid("INPUT_REQUIRED", f"You must specify a value for {name}.")
    if not isinstance(value, str):
        raise ServiceError("SerializationException", f"Expected a string for {name}.", 400)
    return value


def _max_results(params: dict[str, Any]) -> int:
    value = params.get("MaxResults")
    if value is None:
        return MAX_RESULTS
    if not isinstance(value, int) or isinstance(value, bool):
        raise ServiceError("SerializationException", "Expected an integer for MaxResults.", 400)
    if value < 1:
        raise _invalid("MIN_VALUE_EXCEEDED", "You provided a value that is below the minimum allowed (1).")
    if value > MAX_RESULTS:
        raise _invalid(
            "MAX_VALUE_EXCEEDED", f"You provided a value that exceeds the maximum allowed ({MAX_RESULTS})."
        )
    return value


def _encode_token(op: str, after: str, empties: int) -> str:
    raw = json.dumps({"op": op, "after": after, "e": empties}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_token(op: str, params: dict[str, Any]) -> tuple[str | None, int]:
    token = params.get("NextToken")
    if token is None:
        return None, 0
    bad = _invalid("INVALID_NEXT_TOKEN", "The NextToken value is not valid.")
    if not isinstance(token, str):
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if not isinstance(data, dict) or data.get("op") != op or not isinstance(data.get("after"), str):
        raise bad
    return data["after"], int(data.get("e", 0))


def _page(
    sandbox: Sandbox, op: str, items: Iterable[tuple[str, dict[str, Any]]], params: dict[str, Any], key: str
) -> dict[str, Any]:
    """Keyset pagination with the real service's occasional empty pages."""
    limit = _max_results(params)
    after, empties = _decode_token(op, params)
    ordered = sorted(items, key=lambda kv: kv[0])
    if after is not None:
        ordered = [kv for kv in ordered if kv[0] > after]
    rate = sandbox.config.organizations_empty_page_rate
    if ordered and rate > 0 and empties < MAX_CONSECUTIVE_EMPTY_PAGES and sandbox.rng.random() < rate:
        return {key: [], "NextToken": _encode_token(op, after or "", empties + 1)}
    page = ordered[:limit]
    out: dict[str, Any] = {key: [item for _, item in page]}
    if len(ordered) > limit:
        out["NextToken"] = _encode_token(op, page[-1][0], 0)
    return out


def _org_arn(org: Organization) -> str:
    return f"arn:aws:organizations::{org.management_account_id}:organization/{org.id}"


def account_shape(org: Organization, account: Account) -> dict[str, Any]:
    return {
        "Id": account.id,
        "Arn": f"arn:aws:organizations::{org.management_account_id}:account/{org.id}/{account.id}",
        "Email": account.email,
        "Name": account.name,
        "Status": _STATUS_OF_STATE.get(account.state, "ACTIVE"),
        "State": account.state,
        "JoinedMethod": "INVITED" if account.id == org.management_account_id else "CREATED",
        "JoinedTimestamp": account.joined,
    }


def ou_shape(org: Organization, ou: OrganizationalUnit) -> dict[str, Any]:
    return {
        "Id": ou.id,
        "Arn": f"arn:aws:organizations::{org.management_account_id}:ou/{org.id}/{ou.id}",
        "Name": ou.name,
    }


def _root_shape(org: Organization) -> dict[str, Any]:
    return {
        "Id": org.root_id,
        "Arn": f"arn:aws:organizations::{org.management_account_id}:root/{org.id}/{org.root_id}",
        "Name": "Root",
        "PolicyTypes": list(_POLICY_TYPES),
    }


def _parent(org: Organization, params: dict[str, Any]) -> str:
    parent_id = _required_str(params, "ParentId")
    if not (_ROOT_ID.match(parent_id) or _OU_ID.match(parent_id)):
        raise _invalid("INVALID_PATTERN", "You provided a value that does not match the required pattern.")
    if parent_id != org.root_id and parent_id not in org.ous:
        raise ServiceError(
            "ParentNotFoundException", "We can't find a root or OU with the ParentId that you specified."
        )
    return parent_id


# --------------------------------------------------------------------------- operations
def describe_organization(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    mgmt = org.accounts.get(org.management_account_id)
    return {
        "Organization": {
            "Id": org.id,
            "Arn": _org_arn(org),
            "FeatureSet": "ALL",
            "MasterAccountArn": (
                f"arn:aws:organizations::{org.management_account_id}:account/{org.id}/{org.management_account_id}"
            ),
            "MasterAccountId": org.management_account_id,
            "MasterAccountEmail": mgmt.email if mgmt else f"aws+{org.management_account_id}@example.com",
            "AvailablePolicyTypes": list(_POLICY_TYPES),
        }
    }


def list_roots(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    return _page(sandbox, "ListRoots", [(org.root_id, _root_shape(org))], params, "Roots")


def list_organizational_units_for_parent(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    parent_id = _parent(org, params)
    items = ((ou.id, ou_shape(org, ou)) for ou in org.ous.values() if ou.parent_id == parent_id)
    return _page(sandbox, "ListOrganizationalUnitsForParent", items, params, "OrganizationalUnits")


def list_accounts_for_parent(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    parent_id = _parent(org, params)
    items = ((a.id, account_shape(org, a)) for a in org.accounts.values() if a.parent_id == parent_id)
    return _page(sandbox, "ListAccountsForParent", items, params, "Accounts")


def list_accounts(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    items = ((a.id, account_shape(org, a)) for a in org.accounts.values())
    return _page(sandbox, "ListAccounts", items, params, "Accounts")


def list_children(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    parent_id = _parent(org, params)
    child_type = _required_str(params, "ChildType")
    if child_type == "ACCOUNT":
        ids = [a.id for a in org.accounts.values() if a.parent_id == parent_id]
    elif child_type == "ORGANIZATIONAL_UNIT":
        ids = [ou.id for ou in org.ous.values() if ou.parent_id == parent_id]
    else:
        raise _invalid("INVALID_ENUM", "You specified an invalid value for ChildType.")
    return _page(
        sandbox, "ListChildren", ((i, {"Id": i, "Type": child_type}) for i in ids), params, "Children"
    )


def list_parents(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    child_id = _required_str(params, "ChildId")
    if not (_ACCOUNT_ID.match(child_id) or _OU_ID.match(child_id)):
        raise _invalid("INVALID_PATTERN", "You provided a value that does not match the required pattern.")
    node: Account | OrganizationalUnit | None = org.accounts.get(child_id) or org.ous.get(child_id)
    if node is None:
        raise ServiceError(
            "ChildNotFoundException",
            "We can't find an organizational unit (OU) or AWS account with the ChildId that you specified.",
        )
    parent = node.parent_id
    ptype = "ROOT" if parent == org.root_id else "ORGANIZATIONAL_UNIT"
    return _page(sandbox, "ListParents", [(parent, {"Id": parent, "Type": ptype})], params, "Parents")


def describe_account(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    account_id = _required_str(params, "AccountId")
    if not _ACCOUNT_ID.match(account_id):
        raise _invalid("INVALID_PATTERN", "You provided a value that does not match the required pattern.")
    account = org.accounts.get(account_id)
    if account is None:
        raise ServiceError("AccountNotFoundException", "You specified an account that doesn't exist.")
    return {"Account": account_shape(org, account)}


def describe_organizational_unit(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    org = sandbox.world.organization
    ou_id = _required_str(params, "OrganizationalUnitId")
    if not _OU_ID.match(ou_id):
        raise _invalid("INVALID_PATTERN", "You provided a value that does not match the required pattern.")
    ou = org.ous.get(ou_id)
    if ou is None:
        raise ServiceError(
            "OrganizationalUnitNotFoundException",
            "We can't find an OU with the OrganizationalUnitId that you specified.",
        )
    return {"OrganizationalUnit": ou_shape(org, ou)}


OPERATIONS: dict[str, Callable[[Sandbox, dict[str, Any]], dict[str, Any]]] = {
    "DescribeOrganization": describe_organization,
    "ListRoots": list_roots,
    "ListOrganizationalUnitsForParent": list_organizational_units_for_parent,
    "ListAccountsForParent": list_accounts_for_parent,
    "ListAccounts": list_accounts,
    "ListChildren": list_children,
    "ListParents": list_parents,
    "DescribeAccount": describe_account,
    "DescribeOrganizationalUnit": describe_organizational_unit,
}
