"""The sandbox's identitystore through an unmodified boto3 client (and raw HTTP for requests boto3 refuses)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from idc_sandbox.core import FaultRule, ManualClock, Sandbox
from idc_sandbox.state import Group, User

STORE = "d-9067a1b2c3"
USER_IDS = [f"9067a1b2c3-{n:08x}-1111-2222-3333-444444444444" for n in range(1, 8)]
GROUP_DEV = "9067a1b2c3-aaaaaaaa-1111-2222-3333-444444444444"
GROUP_OPS = "9067a1b2c3-bbbbbbbb-1111-2222-3333-444444444444"
MISSING = "9067a1b2c3-ffffffff-1111-2222-3333-444444444444"


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.config.rate_limits["identitystore"] = 0  # unlimited, except in the throttling tests
    store = sandbox.world.identity_store
    assert store.id == STORE
    for i, uid in enumerate(USER_IDS):
        store.users[uid] = User(
            uid,
            f"user{i}@example.com",
            f"User {i}",
            email=f"user{i}.mail@example.com",
            given_name=f"Given{i}",
            family_name="Family",
            external_id=f"entra-{i}",
        )
    store.groups[GROUP_DEV] = Group(
        GROUP_DEV, "Developers", "devs", members={USER_IDS[0], USER_IDS[1], USER_IDS[2]}
    )
    store.groups[GROUP_OPS] = Group(GROUP_OPS, "Operators", members={USER_IDS[0]})
    return sandbox


@pytest.fixture
def ids(sb: Sandbox, aws_client: Callable[..., Any]) -> Any:
    # retries "max_attempts" counts retries after the first attempt: 0 shows every error as it is
    return aws_client("identitystore", max_attempts=0)


def _err(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    return exc.value.response  # type: ignore[return-value]


def _raw(url: str, op: str, body: Any) -> requests.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.post(
        url,
        data=data,
        headers={"X-Amz-Target": f"AWSIdentityStore.{op}", "Content-Type": "application/x-amz-json-1.1"},
        timeout=10,
    )


# --------------------------------------------------------------------------- listing and pagination
def test_list_users_pages_through_everyone(ids: Any, sb: Sandbox) -> None:
    first = ids.list_users(IdentityStoreId=STORE, MaxResults=3)
    assert len(first["Users"]) == 3 and "NextToken" in first
    pages = list(
        ids.get_paginator("list_users").paginate(IdentityStoreId=STORE, PaginationConfig={"PageSize": 3})
    )
    assert [len(p["Users"]) for p in pages] == [3, 3, 1]
    users = [u for p in pages for u in p["Users"]]
    assert [u["UserId"] for u in users] == sorted(USER_IDS)
    u0 = next(u for u in users if u["UserId"] == USER_IDS[0])
    assert u0["UserName"] == "user0@example.com"
    assert u0["IdentityStoreId"] == STORE
    assert u0["UserArn"] == f"arn:aws:identitystore:::user/{USER_IDS[0]}"
    assert u0["Emails"] == [{"Value": "user0.mail@example.com", "Type": "work", "Primary": True}]
    assert u0["Name"]["GivenName"] == "Given0" and u0["Name"]["FamilyName"] == "Family"
    assert u0["ExternalIds"][0]["Id"] == "entra-0"


def test_list_groups_and_deprecated_filter(ids: Any) -> None:
    groups = ids.list_groups(IdentityStoreId=STORE)["Groups"]
    assert {g["DisplayName"] for g in groups} == {"Developers", "Operators"}
    only = ids.list_groups(
        IdentityStoreId=STORE, Filters=[{"AttributePath": "DisplayName", "AttributeValue": "Operators"}]
    )["Groups"]
    assert [g["GroupId"] for g in only] == [GROUP_OPS]
    users = ids.list_users(
        IdentityStoreId=STORE, Filters=[{"AttributePath": "UserName", "AttributeValue": "user3@example.com"}]
    )["Users"]
    assert [u["UserId"] for u in users] == [USER_IDS[3]]


def test_list_users_rejects_unsupported_filter_and_bounds(ids: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ids.list_users(IdentityStoreId=STORE, Filters=[{"AttributePath": "Title", "AttributeValue": "x"}])
    assert _err(exc)["Error"]["Code"] == "ValidationException"
    # botocore validates only the minimum; the service enforces MaxResults <= 100
    with pytest.raises(ClientError) as exc:
        ids.list_users(IdentityStoreId=STORE, MaxResults=101)
    assert _err(exc)["Error"]["Code"] == "ValidationException"
    assert "less than or equal to 100" in _err(exc)["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        ids.list_users(IdentityStoreId=STORE, NextToken="not-a-token")
    assert _err(exc)["Error"]["Code"] == "ValidationException"


def test_unknown_identity_store(ids: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ids.list_users(IdentityStoreId="d-0000000000")
    err = _err(exc)
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert err["ResourceType"] == "IDENTITY_STORE"
    with pytest.raises(ClientError) as exc:
        ids.list_users(IdentityStoreId="not-a-store")
    assert _err(exc)["Error"]["Code"] == "ValidationException"


# --------------------------------------------------------------------------- lookups
def test_get_user_id_by_user_name_email_and_external_id(ids: Any) -> None:
    by_name = ids.get_user_id(
        IdentityStoreId=STORE,
        AlternateIdentifier={
            "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "user2@example.com"}
        },
    )
    assert by_name["UserId"] == USER_IDS[2]
    assert by_name["UserArn"].endswith(USER_IDS[2])
    by_mail = ids.get_user_id(
        IdentityStoreId=STORE,
        AlternateIdentifier={
            "UniqueAttribute": {"AttributePath": "emails.value", "AttributeValue": "user4.mail@example.com"}
        },
    )
    assert by_mail["UserId"] == USER_IDS[4]
    by_ext = ids.get_user_id(
        IdentityStoreId=STORE, AlternateIdentifier={"ExternalId": {"Issuer": "scim", "Id": "entra-5"}}
    )
    assert by_ext["UserId"] == USER_IDS[5]


def test_get_user_id_miss_is_resource_not_found(ids: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ids.get_user_id(
            IdentityStoreId=STORE,
            AlternateIdentifier={
                "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "nobody"}
            },
        )
    err = _err(exc)
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["ResourceType"] == "USER"
    with pytest.raises(ClientError) as exc:
        ids.get_user_id(
            IdentityStoreId=STORE,
            AlternateIdentifier={"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "x"}},
        )
    assert _err(exc)["Error"]["Code"] == "ValidationException"


def test_get_group_id_and_describe(ids: Any) -> None:
    got = ids.get_group_id(
        IdentityStoreId=STORE,
        AlternateIdentifier={
            "UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "Developers"}
        },
    )
    assert got["GroupId"] == GROUP_DEV and got["GroupArn"].endswith(GROUP_DEV)
    with pytest.raises(ClientError) as exc:
        ids.get_group_id(
            IdentityStoreId=STORE,
            AlternateIdentifier={
                "UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "Nope"}
            },
        )
    assert _err(exc)["Error"]["Code"] == "ResourceNotFoundException"
    assert _err(exc)["ResourceType"] == "GROUP"

    group = ids.describe_group(IdentityStoreId=STORE, GroupId=GROUP_DEV)
    assert group["DisplayName"] == "Developers" and group["Description"] == "devs"
    user = ids.describe_user(IdentityStoreId=STORE, UserId=USER_IDS[1])
    assert user["UserName"] == "user1@example.com" and user["DisplayName"] == "User 1"

    with pytest.raises(ClientError) as exc:
        ids.describe_user(IdentityStoreId=STORE, UserId=MISSING)
    err = _err(exc)
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert err["ResourceType"] == "USER" and err["ResourceId"] == MISSING
    with pytest.raises(ClientError) as exc:
        ids.describe_group(IdentityStoreId=STORE, GroupId="garbage!")
    assert _err(exc)["Error"]["Code"] == "ValidationException"


def test_group_memberships_both_ways(ids: Any) -> None:
    pages = list(
        ids.get_paginator("list_group_memberships").paginate(
            IdentityStoreId=STORE, GroupId=GROUP_DEV, PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == 2
    members = {m["MemberId"]["UserId"] for p in pages for m in p["GroupMemberships"]}
    assert members == set(USER_IDS[:3])
    again = ids.list_group_memberships(IdentityStoreId=STORE, GroupId=GROUP_DEV)["GroupMemberships"]
    assert {m["MembershipId"] for p in pages for m in p["GroupMemberships"]} == {
        m["MembershipId"] for m in again
    }

    mine = ids.list_group_memberships_for_member(IdentityStoreId=STORE, MemberId={"UserId": USER_IDS[0]})
    assert {m["GroupId"] for m in mine["GroupMemberships"]} == {GROUP_DEV, GROUP_OPS}
    check = ids.is_member_in_groups(
        IdentityStoreId=STORE, MemberId={"UserId": USER_IDS[1]}, GroupIds=[GROUP_DEV, GROUP_OPS]
    )
    assert {r["GroupId"]: r["MembershipExists"] for r in check["Results"]} == {
        GROUP_DEV: True,
        GROUP_OPS: False,
    }

    with pytest.raises(ClientError) as exc:
        ids.list_group_memberships(IdentityStoreId=STORE, GroupId=MISSING)
    assert _err(exc)["Error"]["Code"] == "ResourceNotFoundException"
    assert _err(exc)["ResourceType"] == "GROUP"


# --------------------------------------------------------------------------- throttling and faults
def test_burst_over_the_token_bucket_throttles_with_retry_after(ids: Any, sb: Sandbox) -> None:
    sb.config.rate_limits["identitystore"] = 3.0  # bucket of 3 tokens, refilled 3/s
    clock = sb.clock = ManualClock()  # time moves only when told: exact counts on any machine
    codes = []

    def burst(n: int) -> None:
        nonlocal last
        for _ in range(n):
            try:
                ids.describe_group(IdentityStoreId=STORE, GroupId=GROUP_DEV)
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
                last = exc.response

    last: Any = None
    burst(12)
    assert codes == ["ok"] * 3 + ["ThrottlingException"] * 9
    clock.advance(0.5)  # 1.5 tokens back: one request passes
    burst(2)
    assert codes[12:] == ["ok", "ThrottlingException"]
    assert last["RetryAfterSeconds"] == 1
    assert last["ResponseMetadata"]["HTTPStatusCode"] == 400
    throttled = [
        c for c in sb.calls.calls("identitystore", "DescribeGroup") if c.error == "ThrottlingException"
    ]
    assert len(throttled) == codes.count("ThrottlingException") == 10


def test_botocore_retries_throttling_by_itself(sb: Sandbox, aws_client: Callable[..., Any]) -> None:
    sb.faults.add(FaultRule(service="identitystore", kind="throttle", operation="ListGroups", count=2))
    ids = aws_client("identitystore", max_attempts=3)
    assert len(ids.list_groups(IdentityStoreId=STORE)["Groups"]) == 2
    assert [c.error for c in sb.calls.calls("identitystore", "ListGroups")] == [
        "ThrottlingException",
        "ThrottlingException",
        None,
    ]


def test_injected_faults_use_the_service_errors(ids: Any, sb: Sandbox) -> None:
    sb.faults.add(FaultRule(service="identitystore", kind="error5xx", count=1))
    with pytest.raises(ClientError) as exc:
        ids.list_users(IdentityStoreId=STORE)
    assert _err(exc)["Error"]["Code"] == "InternalServerException"
    assert _err(exc)["ResponseMetadata"]["HTTPStatusCode"] == 500
    sb.faults.add(FaultRule(service="identitystore", kind="access_denied", count=1))
    with pytest.raises(ClientError) as exc:
        ids.list_users(IdentityStoreId=STORE)
    assert _err(exc)["Error"]["Code"] == "AccessDeniedException"


# --------------------------------------------------------------------------- raw HTTP
def test_raw_bad_requests_are_proper_errors(sb: Sandbox, sandbox_url: str) -> None:
    r = _raw(sandbox_url, "DeleteEverything", {"IdentityStoreId": STORE})
    assert r.status_code == 400 and r.json()["__type"] == "UnknownOperationException"
    r = _raw(sandbox_url, "ListUsers", {})
    assert r.status_code == 400 and r.json()["__type"] == "ValidationException"
    assert "identityStoreId" in r.json()["message"]
    r = _raw(sandbox_url, "GetUserId", {"IdentityStoreId": STORE})
    assert r.status_code == 400 and r.json()["__type"] == "ValidationException"
    r = _raw(sandbox_url, "ListUsers", "{not json")
    assert r.status_code == 400 and r.json()["__type"] == "SerializationException"
    r = _raw(sandbox_url, "ListUsers", {"IdentityStoreId": 42})
    assert r.status_code == 400 and r.json()["__type"] == "SerializationException"
    r = _raw(
        sandbox_url,
        "GetUserId",
        {
            "IdentityStoreId": STORE,
            "AlternateIdentifier": {
                "ExternalId": {"Issuer": "scim", "Id": "entra-1"},
                "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "x"},
            },
        },
    )
    assert r.status_code == 400 and r.json()["__type"] == "ValidationException"
    r = _raw(sandbox_url, "ListUsers", {"IdentityStoreId": STORE, "MaxResults": 0})
    assert r.status_code == 400 and r.json()["__type"] == "ValidationException"
