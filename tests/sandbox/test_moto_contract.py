"""Contract test: the same scenario against the sandbox and against moto, same observable results.

The scenario uses only what both implement: organizations (DescribeOrganization, ListRoots, ListAccounts,
ListAccountsForParent, DescribeAccount), identitystore (GetUserId, GetGroupId, DescribeUser,
DescribeGroup, ListUsers, ListGroups, ListGroupMemberships, ListGroupMembershipsForMember) and sso-admin
(ListInstances, Create/Describe/DeletePermissionSet, Attach/List/DetachManagedPolicy, Create/Delete
AccountAssignment with their status calls, ListAccountAssignments, ListPermissionSets). Identifiers are
generated differently by each, so results are compared after mapping ids back to names.

moto cannot share the sandbox's seed, so each side is built its own way: moto through its APIs
(``organizations.create_organization`` / ``create_account``, ``identitystore.create_user`` / ...), the
sandbox by seeding the equivalent state dataclasses directly (the sandbox, like AWS, has no API to create
accounts in an existing organization or users outside SCIM).

Where moto 5.2.5 differs from AWS (and the sandbox follows AWS); ``TestMotoDiffers`` pins the ones
that can be observed, so a moto upgrade that fixes them shows up here:
- sso-admin permission set ARNs do not have the AWS shape
  ``arn:aws:sso:::permissionSet/ssoins-<16 hex>/ps-<16 hex>``.
- Create/DeleteAccountAssignment are never ``IN_PROGRESS``: they answer SUCCEEDED at once, so polling
  code paths are never exercised (the sandbox answers IN_PROGRESS, then SUCCEEDED after
  ``async_latency_seconds``).
- Duplicates that AWS rejects are accepted: a second permission set with the same name (AWS:
  ConflictException).
- No DescribePermissionSetProvisioningStatus, no TagResource / ListTagsForResource, no permissions
  boundaries for sso-admin; no Access Analyzer at all.
- Organizations List* pages are never empty while NextToken is set (the real service, and the sandbox with
  ``organizations_empty_page_rate`` > 0, may return such pages).
- No throttling, no rate limits, no delegated-administrator restrictions (AWS refuses writes touching the
  management account from a delegated administrator with AccessDeniedException).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from idc_sandbox.core import ManualClock, Sandbox
from idc_sandbox.state import Account, Group, User

MGMT = "123456789012"  # moto's default account id, used as the management account on both sides
ACCOUNTS = [("dev", "dev@example.com"), ("stg", "stg@example.com"), ("security", "security@example.com")]
USERS = [("alice@example.com", "Alice", "Alice", "Liddell"), ("bob@example.com", "Bob", "Bob", "Builder")]
GROUP = "Developers"
READONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
PS_ARN = re.compile(r"^arn:aws:sso:::permissionSet/ssoins-[0-9a-f]{16}/ps-[0-9a-f]{16}$")
UNKNOWN_USER = "9067a1b2c3-ffffffff-1111-2222-3333-444444444444"

Clients = dict[str, Any]


def _moto_clients() -> Clients:
    return {
        name: boto3.client(
            name, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        for name in ("organizations", "identitystore", "sso-admin")
    }


def _build_moto(clients: Clients) -> None:
    orgs, ids, sso = clients["organizations"], clients["identitystore"], clients["sso-admin"]
    orgs.create_organization(FeatureSet="ALL")
    for name, email in ACCOUNTS:
        orgs.create_account(AccountName=name, Email=email)
    store = sso.list_instances()["Instances"][0]["IdentityStoreId"]
    user_ids = []
    for user_name, display, given, family in USERS:
        user_ids.append(
            ids.create_user(
                IdentityStoreId=store,
                UserName=user_name,
                DisplayName=display,
                Name={"GivenName": given, "FamilyName": family},
                Emails=[{"Value": user_name, "Type": "work", "Primary": True}],
            )["UserId"]
        )
    group_id = ids.create_group(IdentityStoreId=store, DisplayName=GROUP)["GroupId"]
    ids.create_group_membership(IdentityStoreId=store, GroupId=group_id, MemberId={"UserId": user_ids[0]})


def _seed_sandbox(sandbox: Sandbox) -> None:
    """The state moto reaches through its APIs, written directly (management account named like moto's)."""
    org = sandbox.world.organization
    org.management_account_id = MGMT
    org.accounts[MGMT] = Account(MGMT, "master", "master@example.com", org.root_id)
    for i, (name, email) in enumerate(ACCOUNTS):
        acct = f"{444444444440 + i:012d}"
        org.accounts[acct] = Account(acct, name, email, org.root_id)
    # the instance is administered from the "security" account, as a delegated administrator
    sandbox.world.identity_center.owner_account_id = f"{444444444440 + 2:012d}"
    store = sandbox.world.identity_store
    for i, (user_name, display, given, family) in enumerate(USERS):
        uid = f"9067a1b2c3-{i + 1:08x}-1111-2222-3333-444444444444"
        store.users[uid] = User(
            uid, user_name, display, email=user_name, given_name=given, family_name=family
        )
    gid = "9067a1b2c3-aaaaaaaa-1111-2222-3333-444444444444"
    first_user = next(iter(store.users))
    store.groups[gid] = Group(gid, GROUP, members={first_user})


#: the sandbox's clock of the running test: :func:`_wait` lets async latency pass on it instead of sleeping
_CLOCK: list[ManualClock] = []


@pytest.fixture
def sandbox_clients(sandbox: Sandbox, aws_client: Callable[..., Any]) -> Clients:
    sandbox.clock = ManualClock()
    _CLOCK[:] = [sandbox.clock]
    sandbox.config.organizations_empty_page_rate = 0.0
    sandbox.config.async_latency_seconds = 0.1
    _seed_sandbox(sandbox)
    return {
        name: aws_client(name, max_attempts=3) for name in ("organizations", "identitystore", "sso-admin")
    }


@pytest.fixture
def moto_clients() -> Iterator[Clients]:
    with mock_aws():
        clients = _moto_clients()
        _build_moto(clients)
        yield clients


def _code(call: Callable[[], Any]) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "no error"


def _wait(call: Callable[[], dict[str, Any]], key: str) -> tuple[list[str], dict[str, Any]]:
    """Poll an async status until terminal: (statuses seen, final status)."""
    seen = []
    for _ in range(3):
        status = call()[key]
        seen.append(status["Status"])
        if status["Status"] != "IN_PROGRESS":
            return seen, status
        for clock in _CLOCK:  # moto is never IN_PROGRESS; the sandbox finishes after its latency
            clock.advance(0.1)
    raise AssertionError(f"still IN_PROGRESS after polling: {seen}")


# --------------------------------------------------------------------------- the scenario
def organizations_view(orgs: Any) -> dict[str, Any]:
    org = orgs.describe_organization()["Organization"]
    roots = orgs.list_roots()["Roots"]
    accounts = [a for p in orgs.get_paginator("list_accounts").paginate() for a in p["Accounts"]]
    by_name = {a["Name"]: a for a in accounts}
    dev = orgs.describe_account(AccountId=by_name["dev"]["Id"])["Account"]
    in_root = [
        a["Name"]
        for p in orgs.get_paginator("list_accounts_for_parent").paginate(ParentId=roots[0]["Id"])
        for a in p["Accounts"]
    ]
    return {
        "organization": (org["FeatureSet"], org["MasterAccountId"], org["MasterAccountEmail"]),
        "master_arn_ends_with_id": org["MasterAccountArn"].endswith(f"/{org['MasterAccountId']}"),
        "roots": [bool(re.match(r"^r-[0-9a-z]{4,32}$", r["Id"])) for r in roots],
        "accounts": sorted((a["Name"], a["Email"], a["Status"], a.get("State")) for a in accounts),
        "account_ids_are_12_digits": all(re.match(r"^\d{12}$", a["Id"]) for a in accounts),
        "dev": (dev["Name"], dev["Email"], dev["Status"]),
        "in_root": sorted(in_root),
        "unknown_account": _code(lambda: orgs.describe_account(AccountId="000000000000")),
    }


def identitystore_view(ids: Any, store: str) -> dict[str, Any]:
    alice = ids.get_user_id(
        IdentityStoreId=store,
        AlternateIdentifier={"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": USERS[0][0]}},
    )["UserId"]
    user = ids.describe_user(IdentityStoreId=store, UserId=alice)
    group_id = ids.get_group_id(
        IdentityStoreId=store,
        AlternateIdentifier={"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": GROUP}},
    )["GroupId"]
    group = ids.describe_group(IdentityStoreId=store, GroupId=group_id)
    users = [u for p in ids.get_paginator("list_users").paginate(IdentityStoreId=store) for u in p["Users"]]
    names = {u["UserId"]: u["UserName"] for u in users}
    groups = [
        g for p in ids.get_paginator("list_groups").paginate(IdentityStoreId=store) for g in p["Groups"]
    ]
    members = ids.list_group_memberships(IdentityStoreId=store, GroupId=group_id)["GroupMemberships"]
    of_alice = ids.list_group_memberships_for_member(IdentityStoreId=store, MemberId={"UserId": alice})
    return {
        "alice": (
            user["UserName"],
            user["DisplayName"],
            user["Name"]["GivenName"],
            user["Emails"][0]["Value"],
        ),
        "group": group["DisplayName"],
        "users": sorted(names.values()),
        "groups": sorted(g["DisplayName"] for g in groups),
        "members": sorted(names[m["MemberId"]["UserId"]] for m in members),
        "alice_groups": [m["GroupId"] == group_id for m in of_alice["GroupMemberships"]],
        "unknown_user_name": _code(
            lambda: ids.get_user_id(
                IdentityStoreId=store,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "nobody"}
                },
            )
        ),
        "unknown_user_id": _code(lambda: ids.describe_user(IdentityStoreId=store, UserId=UNKNOWN_USER)),
    }


def sso_admin_view(sso: Any, ids: Any, orgs: Any) -> dict[str, Any]:
    instance = sso.list_instances()["Instances"][0]
    arn, store = instance["InstanceArn"], instance["IdentityStoreId"]
    dev = next(
        a["Id"]
        for p in orgs.get_paginator("list_accounts").paginate()
        for a in p["Accounts"]
        if a["Name"] == "dev"
    )
    alice = ids.get_user_id(
        IdentityStoreId=store,
        AlternateIdentifier={"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": USERS[0][0]}},
    )["UserId"]
    view: dict[str, Any] = {}
    ps = sso.create_permission_set(
        InstanceArn=arn, Name="DevRead", Description="read only", SessionDuration="PT2H"
    )
    ps_arn = ps["PermissionSet"]["PermissionSetArn"]
    described = sso.describe_permission_set(InstanceArn=arn, PermissionSetArn=ps_arn)["PermissionSet"]
    view["permission_set"] = (described["Name"], described["Description"], described["SessionDuration"])
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=arn, PermissionSetArn=ps_arn, ManagedPolicyArn=READONLY
    )
    policies = sso.list_managed_policies_in_permission_set(InstanceArn=arn, PermissionSetArn=ps_arn)
    view["policies"] = [(p["Name"], p["Arn"]) for p in policies["AttachedManagedPolicies"]]

    target = {"TargetId": dev, "TargetType": "AWS_ACCOUNT", "PermissionSetArn": ps_arn}
    principal = {"PrincipalType": "USER", "PrincipalId": alice}
    created = sso.create_account_assignment(InstanceArn=arn, **target, **principal)[
        "AccountAssignmentCreationStatus"
    ]
    _, final = _wait(
        lambda: sso.describe_account_assignment_creation_status(
            InstanceArn=arn, AccountAssignmentCreationRequestId=created["RequestId"]
        ),
        "AccountAssignmentCreationStatus",
    )
    view["create_status"] = (final["Status"], final["TargetId"] == dev, final["PrincipalId"] == alice)
    listed = sso.list_account_assignments(InstanceArn=arn, AccountId=dev, PermissionSetArn=ps_arn)
    view["assignments"] = [
        (
            a["AccountId"] == dev,
            a["PermissionSetArn"] == ps_arn,
            a["PrincipalType"],
            a["PrincipalId"] == alice,
        )
        for a in listed["AccountAssignments"]
    ]
    deleted = sso.delete_account_assignment(InstanceArn=arn, **target, **principal)[
        "AccountAssignmentDeletionStatus"
    ]
    _, final = _wait(
        lambda: sso.describe_account_assignment_deletion_status(
            InstanceArn=arn, AccountAssignmentDeletionRequestId=deleted["RequestId"]
        ),
        "AccountAssignmentDeletionStatus",
    )
    view["delete_status"] = final["Status"]
    view["assignments_after_delete"] = sso.list_account_assignments(
        InstanceArn=arn, AccountId=dev, PermissionSetArn=ps_arn
    )["AccountAssignments"]
    sso.detach_managed_policy_from_permission_set(
        InstanceArn=arn, PermissionSetArn=ps_arn, ManagedPolicyArn=READONLY
    )
    view["policies_after_detach"] = sso.list_managed_policies_in_permission_set(
        InstanceArn=arn, PermissionSetArn=ps_arn
    )["AttachedManagedPolicies"]
    sso.delete_permission_set(InstanceArn=arn, PermissionSetArn=ps_arn)
    remaining = [
        p
        for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=arn)
        for p in page["PermissionSets"]
    ]
    view["deleted"] = ps_arn not in remaining
    return view


def full_view(clients: Clients) -> dict[str, Any]:
    store = clients["sso-admin"].list_instances()["Instances"][0]["IdentityStoreId"]
    return {
        "organizations": organizations_view(clients["organizations"]),
        "identitystore": identitystore_view(clients["identitystore"], store),
        "sso-admin": sso_admin_view(clients["sso-admin"], clients["identitystore"], clients["organizations"]),
    }


def test_sandbox_and_moto_agree_on_the_scenario(sandbox_clients: Clients, moto_clients: Clients) -> None:
    ours = full_view(sandbox_clients)
    theirs = full_view(moto_clients)
    for section in ours:
        assert ours[section] == theirs[section], section
    # and the shared results are the expected ones (not just equal)
    assert ours["organizations"]["organization"] == ("ALL", MGMT, "master@example.com")
    assert [a[0] for a in ours["organizations"]["accounts"]] == ["dev", "master", "security", "stg"]
    assert ours["organizations"]["unknown_account"] == "AccountNotFoundException"
    assert ours["identitystore"]["members"] == [USERS[0][0]]
    assert ours["identitystore"]["unknown_user_name"] == "ResourceNotFoundException"
    assert ours["sso-admin"]["create_status"] == ("SUCCEEDED", True, True)
    assert ours["sso-admin"]["assignments"] == [(True, True, "USER", True)]
    assert ours["sso-admin"]["delete_status"] == "SUCCEEDED"


# --------------------------------------------------------------------------- where moto differs
class TestMotoDiffers:
    """Pinned differences (moto 5.2.5); the sandbox side shows the AWS behaviour."""

    def _ps(self, sso: Any, name: str = "Dup") -> tuple[str, str]:
        arn = sso.list_instances()["Instances"][0]["InstanceArn"]
        return arn, sso.create_permission_set(InstanceArn=arn, Name=name)["PermissionSet"]["PermissionSetArn"]

    def test_permission_set_arn_shape(self, sandbox_clients: Clients, moto_clients: Clients) -> None:
        assert PS_ARN.match(self._ps(sandbox_clients["sso-admin"])[1])
        assert not PS_ARN.match(self._ps(moto_clients["sso-admin"])[1])

    def test_duplicate_permission_set_name(self, sandbox_clients: Clients, moto_clients: Clients) -> None:
        sso = sandbox_clients["sso-admin"]
        arn, _ = self._ps(sso)
        assert _code(lambda: sso.create_permission_set(InstanceArn=arn, Name="Dup")) == "ConflictException"
        moto = moto_clients["sso-admin"]
        arn, _ = self._ps(moto)
        assert _code(lambda: moto.create_permission_set(InstanceArn=arn, Name="Dup")) == "no error"

    def test_assignment_creation_is_never_in_progress_in_moto(
        self, sandbox_clients: Clients, moto_clients: Clients
    ) -> None:
        first: dict[str, str] = {}
        for side, clients in (("sandbox", sandbox_clients), ("moto", moto_clients)):
            sso, orgs, ids = clients["sso-admin"], clients["organizations"], clients["identitystore"]
            instance = sso.list_instances()["Instances"][0]
            arn, ps_arn = self._ps(sso, "Async")
            dev = next(a["Id"] for a in orgs.list_accounts()["Accounts"] if a["Name"] == "dev")
            uid = ids.list_users(IdentityStoreId=instance["IdentityStoreId"])["Users"][0]["UserId"]
            status = sso.create_account_assignment(
                InstanceArn=arn,
                TargetId=dev,
                TargetType="AWS_ACCOUNT",
                PermissionSetArn=ps_arn,
                PrincipalType="USER",
                PrincipalId=uid,
            )["AccountAssignmentCreationStatus"]
            first[side] = status["Status"]
        assert first == {"sandbox": "IN_PROGRESS", "moto": "SUCCEEDED"}

    def test_no_provisioning_status_or_tagging_in_moto(
        self, sandbox_clients: Clients, moto_clients: Clients
    ) -> None:
        moto = moto_clients["sso-admin"]
        arn, ps_arn = self._ps(moto)
        with pytest.raises(NotImplementedError):
            moto.describe_permission_set_provisioning_status(
                InstanceArn=arn, ProvisionPermissionSetRequestId=str(uuid.uuid4())
            )
        with pytest.raises(NotImplementedError):
            moto.list_tags_for_resource(InstanceArn=arn, ResourceArn=ps_arn)
        sso = sandbox_clients["sso-admin"]
        arn, ps_arn = self._ps(sso)
        assert sso.list_tags_for_resource(InstanceArn=arn, ResourceArn=ps_arn)["Tags"] == []
