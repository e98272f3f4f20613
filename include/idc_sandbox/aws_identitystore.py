"""Sandbox identitystore (AWS JSON 1.1, ``X-Amz-Target: AWSIdentityStore.<Operation>``).

Read side of the IAM Identity Center identity store, as the pipeline uses it: ListUsers / ListGroups
(MaxResults 1-100, opaque NextToken, the deprecated single ``Filters`` entry), GetUserId / GetGroupId by
``AlternateIdentifier`` (``UniqueAttribute`` userName / emails.value / displayName, or ``ExternalId``),
DescribeUser / DescribeGroup, ListGroupMemberships, ListGroupMembershipsForMember and IsMemberInGroups.

Shapes, required members, bounds and error fields follow botocore's ``identitystore/2020-06-15`` model:
a miss is ``ResourceNotFoundException`` carrying ``ResourceType`` (USER, GROUP, IDENTITY_STORE,
GROUP_MEMBERSHIP) and ``ResourceId``; throttling is ``ThrottlingException`` with ``RetryAfterSeconds``
(botocore's standard retry mode retries it by itself). Users and groups are written by SCIM
(``graph.run_scim_cycle``) or seeds; this module never mutates the world.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from idc_sandbox.core import Sandbox, ServiceError
from idc_sandbox.state import Group, IdentityStore, User

SERVICE = "identitystore"
TARGET_PREFIX = "AWSIdentityStore"
# fault kind -> (error code, HTTP status, default message)
ERRORS: dict[str, tuple[str, int, str]] = {
    "throttle": ("ThrottlingException", 400, "Rate exceeded"),
    "conflict": ("ConflictException", 400, "There is a conflicting operation in process."),
    "error5xx": ("InternalServerException", 500, "An internal error occurred."),
    "access_denied": ("AccessDeniedException", 400, "User is not authorized to perform this operation."),
}
# modeled fields the server adds to the fault errors above (ThrottlingException.RetryAfterSeconds)
ERROR_EXTRAS: dict[str, dict[str, Any]] = {
    "throttle": {"RetryAfterSeconds": 1},
    "error5xx": {"RetryAfterSeconds": 1},
}

MAX_RESULTS = 100
_STORE_ID = re.compile(
    r"^(arn:aws[a-z-]*:identitystore::\d{12}:identitystore/)?"
    r"(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_RESOURCE_ID = re.compile(
    r"^(arn:aws[a-z-]*:identitystore:::(user|group|membership)/)?([0-9a-f]{10}-|)"
    r"[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$"
)
_NEXT_TOKEN = re.compile(r"^[-a-zA-Z0-9+=/:_]*$")
_MEMBERSHIP_NS = uuid.UUID("6f1c2d8e-3b4a-4c5d-9e8f-0a1b2c3d4e5f")


# --------------------------------------------------------------------------- validation helpers
def _validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message, 400)


def _constraint(value: Any, member: str, constraint: str) -> ServiceError:
    return _validation(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    )


def _required(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) is None:
            member = name[0].lower() + name[1:]
            raise _validation(
                f"1 validation error detected: Value null at '{member}' failed to satisfy constraint: "
                "Member must not be null"
            )


def _string(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise ServiceError("SerializationException", f"Expected a string for {name}.", 400)
    return value


def _store(sandbox: Sandbox, params: dict[str, Any]) -> IdentityStore:
    _required(params, "IdentityStoreId")
    store_id = _string(params, "IdentityStoreId")
    if not _STORE_ID.match(store_id):
        raise _constraint(
            store_id,
            "identityStoreId",
            f"Member must satisfy regular expression pattern: {_STORE_ID.pattern}",
        )
    store = sandbox.world.identity_store
    if store_id.rsplit("/", 1)[-1] != store.id:
        raise ServiceError(
            "ResourceNotFoundException",
            "IDENTITY_STORE not found.",
            400,
            ResourceType="IDENTITY_STORE",
            ResourceId=store_id,
        )
    return store


def _max_results(params: dict[str, Any]) -> int:
    value = params.get("MaxResults")
    if value is None:
        return MAX_RESULTS
    if not isinstance(value, int) or isinstance(value, bool):
        raise ServiceError("SerializationException", "Expected an integer for MaxResults.", 400)
    if value < 1:
        raise _constraint(value, "maxResults", "Member must have value greater than or equal to 1")
    if value > MAX_RESULTS:
        raise _constraint(value, "maxResults", f"Member must have value less than or equal to {MAX_RESULTS}")
    return value


def _encode_token(last_key: str) -> str:
    return base64.b64encode(f"v1:{last_key}".encode()).decode()


def _decode_token(params: dict[str, Any]) -> str | None:
    token = params.get("NextToken")
    if token is None:
        return None
    if not isinstance(token, str) or not token or not _NEXT_TOKEN.match(token):
        raise _validation("The NextToken provided is not valid.")
    try:
        raw = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _validation("The NextToken provided is not valid.") from None
    if not raw.startswith("v1:"):
        raise _validation("The NextToken provided is not valid.")
    return raw[3:]


def _page(
    items: Iterable[tuple[str, dict[str, Any]]], params: dict[str, Any], result_key: str
) -> dict[str, Any]:
    """Keyset pagination over ``(sort key, item)`` pairs: stable while the store changes between pages."""
    limit = _max_results(params)
    after = _decode_token(params)
    ordered = sorted(items, key=lambda kv: kv[0])
    if after is not None:
        ordered = [kv for kv in ordered if kv[0] > after]
    page = ordered[:limit]
    out: dict[str, Any] = {result_key: [item for _, item in page]}
    if len(ordered) > limit:
        out["NextToken"] = _encode_token(page[-1][0])
    return out


def _resource_id(params: dict[str, Any], name: str, known: Callable[[str], bool]) -> str:
    """An id that exists is always accepted (seeds may use any id shape); otherwise the model's pattern applies."""
    _required(params, name)
    value = _string(params, name)
    bare = value.rsplit("/", 1)[-1] if value.startswith("arn:") else value
    if known(bare):
        return bare
    if not _RESOURCE_ID.match(value):
        member = name[0].lower() + name[1:]
        raise _constraint(
            value, member, f"Member must satisfy regular expression pattern: {_RESOURCE_ID.pattern}"
        )
    return bare


def _not_found(kind: str, resource_id: str | None = None) -> ServiceError:
    extra: dict[str, Any] = {"ResourceType": kind}
    if resource_id is not None:
        extra["ResourceId"] = resource_id
    return ServiceError("ResourceNotFoundException", f"{kind} not found.", 400, **extra)


# --------------------------------------------------------------------------- wire shapes
def user_shape(store: IdentityStore, user: User) -> dict[str, Any]:
    out: dict[str, Any] = {
        "IdentityStoreId": store.id,
        "UserId": user.user_id,
        "UserArn": f"arn:aws:identitystore:::user/{user.user_id}",
        "Revision": "1",
        "UserName": user.user_name,
        "DisplayName": user.display_name,
        "UserStatus": "ENABLED",
    }
    name: dict[str, str] = {}
    if user.given_name:
        name["GivenName"] = user.given_name
    if user.family_name:
        name["FamilyName"] = user.family_name
    if name:
        name["Formatted"] = " ".join(p for p in (user.given_name, user.family_name) if p)
        out["Name"] = name
    if user.email:
        out["Emails"] = [{"Value": user.email, "Type": "work", "Primary": True}]
    if user.external_id:
        out["ExternalIds"] = [{"Issuer": "scim", "Id": user.external_id}]
    return out


def group_shape(store: IdentityStore, group: Group) -> dict[str, Any]:
    out: dict[str, Any] = {
        "IdentityStoreId": store.id,
        "GroupId": group.group_id,
        "GroupArn": f"arn:aws:identitystore:::group/{group.group_id}",
        "Revision": "1",
        "DisplayName": group.display_name,
    }
    if group.description:
        out["Description"] = group.description
    if group.external_id:
        out["ExternalIds"] = [{"Issuer": "scim", "Id": group.external_id}]
    return out


def membership_id(group_id: str, user_id: str) -> str:
    """Deterministic membership id, so repeated reads return the same MembershipId."""
    return str(uuid.uuid5(_MEMBERSHIP_NS, f"{group_id}/{user_id}"))


def _membership_shape(store: IdentityStore, group_id: str, user_id: str) -> dict[str, Any]:
    mid = membership_id(group_id, user_id)
    return {
        "IdentityStoreId": store.id,
        "MembershipId": mid,
        "MembershipArn": f"arn:aws:identitystore:::membership/{mid}",
        "GroupId": group_id,
        "MemberId": {"UserId": user_id},
    }


# --------------------------------------------------------------------------- filters / identifiers
def _filter(params: dict[str, Any], allowed: str) -> tuple[str, str] | None:
    """The deprecated ``Filters`` (0..1 entries of AttributePath/AttributeValue, exact match)."""
    filters = params.get("Filters")
    if filters is None or filters == []:
        return None
    if not isinstance(filters, list):
        raise ServiceError("SerializationException", "Expected a list for Filters.", 400)
    if len(filters) > 1:
        raise _constraint(len(filters), "filters", "Member must have length less than or equal to 1")
    entry = filters[0]
    if (
        not isinstance(entry, dict)
        or entry.get("AttributePath") is None
        or entry.get("AttributeValue") is None
    ):
        raise _validation("Filter must have AttributePath and AttributeValue.")
    path, value = entry["AttributePath"], entry["AttributeValue"]
    if not isinstance(path, str) or path.lower() != allowed.lower():
        raise _validation(f"Filter AttributePath {path} is not supported. Supported: {allowed}.")
    if not isinstance(value, str):
        raise _validation("Filter AttributeValue must be a string.")
    return path, value


def _alternate_identifier(params: dict[str, Any]) -> tuple[str, str, str | None]:
    """-> ("unique", attribute path lower-cased, value) or ("external", id, issuer)."""
    _required(params, "AlternateIdentifier")
    ident = params["AlternateIdentifier"]
    if not isinstance(ident, dict):
        raise ServiceError("SerializationException", "Expected a structure for AlternateIdentifier.", 400)
    members = [k for k in ("ExternalId", "UniqueAttribute") if ident.get(k) is not None]
    if len(members) != 1:
        raise _validation("AlternateIdentifier must have exactly one of ExternalId or UniqueAttribute.")
    if members[0] == "ExternalId":
        ext = ident["ExternalId"]
        if not isinstance(ext, dict) or not ext.get("Issuer") or not ext.get("Id"):
            raise _validation("ExternalId must have Issuer and Id.")
        return "external", str(ext["Id"]), str(ext["Issuer"])
    attr = ident["UniqueAttribute"]
    if not isinstance(attr, dict) or attr.get("AttributePath") is None or "AttributeValue" not in attr:
        raise _validation("UniqueAttribute must have AttributePath and AttributeValue.")
    value = attr["AttributeValue"]
    if not isinstance(value, str):
        raise _validation("UniqueAttribute AttributeValue must be a string.")
    return "unique", str(attr["AttributePath"]).lower(), value


# --------------------------------------------------------------------------- operations
def list_users(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    flt = _filter(params, "UserName")
    users: Iterable[User] = store.users.values()
    if flt:
        users = [u for u in users if u.user_name == flt[1]]
    return _page(((u.user_id, user_shape(store, u)) for u in users), params, "Users")


def list_groups(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    flt = _filter(params, "DisplayName")
    groups: Iterable[Group] = store.groups.values()
    if flt:
        groups = [g for g in groups if g.display_name == flt[1]]
    return _page(((g.group_id, group_shape(store, g)) for g in groups), params, "Groups")


def get_user_id(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    kind, key, value = _alternate_identifier(params)
    match: list[User]
    if kind == "external":
        match = [u for u in store.users.values() if u.external_id and u.external_id == key]
    elif key == "username":
        match = [u for u in store.users.values() if u.user_name == value]
    elif key == "emails.value":
        match = [u for u in store.users.values() if u.email and u.email == value]
    else:
        raise _validation(
            f"AttributePath {key} is not supported for GetUserId. Use userName or emails.value."
        )
    if not match:
        raise _not_found("USER")
    user = sorted(match, key=lambda u: u.user_id)[0]
    return {
        "IdentityStoreId": store.id,
        "UserId": user.user_id,
        "UserArn": f"arn:aws:identitystore:::user/{user.user_id}",
    }


def get_group_id(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    kind, key, value = _alternate_identifier(params)
    match: list[Group]
    if kind == "external":
        match = [g for g in store.groups.values() if g.external_id and g.external_id == key]
    elif key == "displayname":
        match = [g for g in store.groups.values() if g.display_name == value]
    else:
        raise _validation(f"AttributePath {key} is not supported for GetGroupId. Use displayName.")
    if not match:
        raise _not_found("GROUP")
    group = sorted(match, key=lambda g: g.group_id)[0]
    return {
        "IdentityStoreId": store.id,
        "GroupId": group.group_id,
        "GroupArn": f"arn:aws:identitystore:::group/{group.group_id}",
    }


def describe_user(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    user_id = _resource_id(params, "UserId", lambda i: i in store.users)
    user = store.users.get(user_id)
    if user is None:
        raise _not_found("USER", user_id)
    return user_shape(store, user)


def describe_group(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    group_id = _resource_id(params, "GroupId", lambda i: i in store.groups)
    group = store.groups.get(group_id)
    if group is None:
        raise _not_found("GROUP", group_id)
    return group_shape(store, group)


def list_group_memberships(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    group_id = _resource_id(params, "GroupId", lambda i: i in store.groups)
    group = store.groups.get(group_id)
    if group is None:
        raise _not_found("GROUP", group_id)
    items = (
        (membership_id(group_id, uid), _membership_shape(store, group_id, uid))
        for uid in group.members
        if uid in store.users
    )
    return _page(items, params, "GroupMemberships")


def _member_user_id(store: IdentityStore, params: dict[str, Any]) -> str:
    _required(params, "MemberId")
    member = params["MemberId"]
    if not isinstance(member, dict) or member.get("UserId") is None:
        raise _validation("MemberId must have UserId.")
    user_id = _resource_id(member, "UserId", lambda i: i in store.users)
    if user_id not in store.users:
        raise _not_found("USER", user_id)
    return user_id


def list_group_memberships_for_member(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    user_id = _member_user_id(store, params)
    items = (
        (membership_id(g.group_id, user_id), _membership_shape(store, g.group_id, user_id))
        for g in store.groups.values()
        if user_id in g.members
    )
    return _page(items, params, "GroupMemberships")


def is_member_in_groups(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(sandbox, params)
    user_id = _member_user_id(store, params)
    _required(params, "GroupIds")
    group_ids = params["GroupIds"]
    if not isinstance(group_ids, list) or not 1 <= len(group_ids) <= 100:
        raise _validation("GroupIds must be a list of 1 to 100 group ids.")
    results = []
    for gid in group_ids:
        group = store.groups.get(gid)
        if group is None:
            raise _not_found("GROUP", str(gid))
        results.append(
            {"GroupId": gid, "MemberId": {"UserId": user_id}, "MembershipExists": user_id in group.members}
        )
    return {"Results": results}


OPERATIONS: dict[str, Callable[[Sandbox, dict[str, Any]], dict[str, Any]]] = {
    "ListUsers": list_users,
    "ListGroups": list_groups,
    "GetUserId": get_user_id,
    "GetGroupId": get_group_id,
    "DescribeUser": describe_user,
    "DescribeGroup": describe_group,
    "ListGroupMemberships": list_group_memberships,
    "ListGroupMembershipsForMember": list_group_memberships_for_member,
    "IsMemberInGroups": is_member_in_groups,
}
