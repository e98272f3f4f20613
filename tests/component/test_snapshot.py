"""take_snapshot against the real sandbox through unmodified boto3 clients (IdcClients.from_session)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import boto3
import pytest

from idc_sandbox.core import FaultRule, Sandbox
from idc_sandbox.state import Account, Assignment, Group, OrganizationalUnit, PermissionSet, User
from idc_sync.aws_clients import IdcClients
from idc_sync.config import SyncConfig
from idc_sync.model import (
    AssignmentSpec,
    CustomerPolicyRef,
    DesiredState,
    PermissionsBoundary,
    PermissionSetSpec,
    RecordRef,
    Scope,
)
from idc_sync.plan import compute_plan, render_plan
from idc_sync.snapshot import resolve_principals, take_snapshot

MGMT = "111111111111"
A1 = "200000000001"
A2 = "200000000002"
A3 = "200000000003"
A4 = "200000000004"
ROOT = "r-ab12"
PROD = "ou-ab12-aaaaaaaa"
NESTED = "ou-ab12-bbbbbbbb"
RO = "arn:aws:iam::aws:policy/ReadOnlyAccess"
VIEW = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
INLINE = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}'
)
TAG = {"managed-by": "idc-sync"}


def store_id(n: int) -> str:
    return f"{n:010x}-{uuid.UUID(int=n, version=4)}"


ALICE, BOB, GONE, ADMINS = store_id(1), store_id(2), store_id(3), store_id(4)


def ps_arn(sb: Sandbox, n: int) -> str:
    instance = sb.world.identity_center.instance_arn.rsplit("/", 1)[1]
    return f"arn:aws:sso:::permissionSet/{instance}/ps-{n:016x}"


def seed(sb: Sandbox) -> dict[str, str]:
    """A small organization with managed, unmanaged and management-account permission sets."""
    with sb.lock:
        w = sb.world
        org = w.organization
        org.management_account_id, org.root_id = MGMT, ROOT
        org.ous = {
            PROD: OrganizationalUnit(PROD, "Prod", ROOT),
            NESTED: OrganizationalUnit(NESTED, "Nested", PROD),
        }
        for acct, parent, state in [
            (MGMT, ROOT, "ACTIVE"),
            (A1, ROOT, "ACTIVE"),
            (A2, PROD, "ACTIVE"),
            (A3, NESTED, "ACTIVE"),
            (A4, NESTED, "SUSPENDED"),
        ]:
            org.accounts[acct] = Account(acct, f"acct-{acct[-1]}", f"{acct}@example.com", parent, state)
        store = w.identity_store
        store.users = {
            ALICE: User(ALICE, "alice", "Alice"),
            BOB: User(BOB, "bob", "Bob"),
        }
        store.groups = {ADMINS: Group(ADMINS, "Admins")}
        ic = w.identity_center
        arns = {name: ps_arn(sb, i) for i, name in enumerate(["Dev", "ControlTower", "Legacy", "Other"], 1)}
        ic.permission_sets = {
            arns["Dev"]: PermissionSet(
                arns["Dev"],
                "Dev",
                description="developers",
                session_duration="PT4H",
                managed_policies=[VIEW, RO],
                customer_managed=[("TeamPolicy", "/team/")],
                inline_policy=INLINE,
                boundary={"ManagedPolicyArn": RO},
                tags=dict(TAG),
                version=2,
            ),
            arns["ControlTower"]: PermissionSet(
                arns["ControlTower"], "ControlTower", managed_policies=[RO], tags={"owner": "ct"}
            ),
            arns["Legacy"]: PermissionSet(arns["Legacy"], "Legacy", managed_policies=[RO], tags=dict(TAG)),
            arns["Other"]: PermissionSet(arns["Other"], "Other", managed_policies=[RO]),
        }
        ic.assignments = {
            Assignment(A1, arns["Dev"], "USER", ALICE),
            Assignment(A1, arns["Dev"], "GROUP", ADMINS),
            Assignment(A2, arns["Dev"], "USER", BOB),
            Assignment(A2, arns["Dev"], "USER", GONE),  # deleted from the identity store since
            Assignment(MGMT, arns["ControlTower"], "USER", ALICE),
            Assignment(MGMT, arns["Legacy"], "USER", BOB),
            Assignment(A3, arns["Other"], "USER", BOB),
        }
        ic.provisioned = {
            (A1, arns["Dev"]): 2,
            (A2, arns["Dev"]): 1,  # stale
            (MGMT, arns["ControlTower"]): 1,
            (MGMT, arns["Legacy"]): 1,
            (A3, arns["Other"]): 1,
        }
    return arns


def rec(app: str, rid: str) -> RecordRef:
    return RecordRef(app=app, app_id="1" if app == "permission_sets" else "2", record_id=rid)  # type: ignore[arg-type]


def desired_state() -> DesiredState:
    return DesiredState(
        permission_sets={
            "Dev": PermissionSetSpec(
                name="Dev",
                description="developers",
                session_duration="PT4H",
                managed_policies=sorted([RO, VIEW]),
                customer_managed_policies=[CustomerPolicyRef(name="TeamPolicy", path="/team/")],
                inline_policy=json.dumps(json.loads(INLINE), indent=2),
                permissions_boundary=PermissionsBoundary(managed_policy_arn=RO),
                record=rec("permission_sets", "1"),
            ),
            "ControlTower": PermissionSetSpec(name="ControlTower", record=rec("permission_sets", "2")),
            "New": PermissionSetSpec(name="New", managed_policies=[RO], record=rec("permission_sets", "3")),
        },
        assignments=[
            AssignmentSpec(
                principal_type="USER",
                principal_name="alice",
                target=A1,
                permission_set_name="Dev",
                record=rec("assignments", "10"),
            ),
            AssignmentSpec(
                principal_type="GROUP",
                principal_name="Admins",
                target=A1,
                permission_set_name="Dev",
                record=rec("assignments", "11"),
            ),
            AssignmentSpec(
                principal_type="USER",
                principal_name="carol",
                target=PROD,
                permission_set_name="Dev",
                record=rec("assignments", "12"),
            ),
            AssignmentSpec(
                principal_type="USER",
                principal_name="bob",
                target=PROD,
                permission_set_name="New",
                record=rec("assignments", "13"),
            ),
        ],
        records_read={"permission_sets": 3, "assignments": 4},
    )


@pytest.fixture
def clients(sandbox_url: str) -> IdcClients:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return IdcClients.from_session(session, endpoint_url=sandbox_url)


def test_snapshot_reads_org_permission_sets_assignments_and_principals(
    sandbox: Sandbox, clients: IdcClients
) -> None:
    arns = seed(sandbox)
    observed = take_snapshot(clients, desired_state(), SyncConfig())

    assert observed.instance_arn == sandbox.world.identity_center.instance_arn
    assert observed.identity_store_id == sandbox.world.identity_store.id
    org = observed.org
    assert org.management_account_id == MGMT and org.root_id == ROOT
    assert set(org.accounts) == {MGMT, A1, A2, A3, A4}
    assert org.accounts[A3].parent_id == NESTED and org.accounts[A4].state == "SUSPENDED"
    assert org.ous[NESTED].parent_id == PROD
    assert org.active_accounts_under(PROD) == [A2, A3]

    dev = observed.permission_sets["Dev"]
    assert dev.managed and dev.arn == arns["Dev"]
    assert (dev.description, dev.session_duration) == ("developers", "PT4H")
    assert dev.managed_policies == sorted([RO, VIEW])
    assert dev.customer_managed_policies == [CustomerPolicyRef(name="TeamPolicy", path="/team/")]
    assert dev.inline_policy is not None and json.loads(dev.inline_policy) == json.loads(INLINE)
    assert dev.permissions_boundary == PermissionsBoundary(managed_policy_arn=RO)
    assert dev.provisioned_accounts == [A1, A2]
    assert dev.stale_accounts == [A2]

    # unmanaged but named in kintone: policies and provisioned accounts (management account!) are known
    ct = observed.permission_sets["ControlTower"]
    assert not ct.managed and ct.managed_policies == [RO] and ct.provisioned_accounts == [MGMT]
    assert ct.permissions_boundary is None and ct.inline_policy is None
    # unmanaged and not named: described only
    other = observed.permission_sets["Other"]
    assert not other.managed and other.managed_policies == [] and other.provisioned_accounts == []
    assert not sandbox.calls.calls("sso-admin", "ListManagedPoliciesInPermissionSet") or all(
        c.params.get("PermissionSetArn") != arns["Other"]
        for c in sandbox.calls.calls("sso-admin", "ListManagedPoliciesInPermissionSet")
    )
    assert observed.permission_sets["Legacy"].provisioned_accounts == [MGMT]

    # assignments of managed permission sets only, never read in the management account
    got = {
        (a.account_id, a.permission_set_arn, a.principal_type, a.principal_id) for a in observed.assignments
    }
    assert got == {
        (A1, arns["Dev"], "USER", ALICE),
        (A1, arns["Dev"], "GROUP", ADMINS),
        (A2, arns["Dev"], "USER", BOB),
        (A2, arns["Dev"], "USER", GONE),
    }
    assert all(
        c.params.get("AccountId") != MGMT for c in sandbox.calls.calls("sso-admin", "ListAccountAssignments")
    )

    assert observed.principal_ids["USER:alice"] == ALICE
    assert observed.principal_ids["GROUP:Admins"] == ADMINS
    assert observed.principal_ids["USER:bob"] == BOB
    assert observed.principal_names[BOB] == "USER:bob"  # from kintone names and from assignments alike
    assert GONE not in observed.principal_names
    assert observed.missing_principals == ["USER:carol"]
    assert not observed.scoped


def test_snapshot_then_plan_end_to_end(sandbox: Sandbox, clients: IdcClients) -> None:
    seed(sandbox)
    desired = desired_state()
    observed = take_snapshot(clients, desired, SyncConfig())
    plan, problems = compute_plan(desired, observed, SyncConfig(), today=dt.date(2025, 1, 1))
    text = render_plan(plan)
    keys = [op.key for op in plan.operations]
    assert keys == [
        "create_permission_set:New",
        f"provision_permission_set:Dev:{A2}",  # stale, Dev itself is unchanged (canonical inline policy)
        f"create_assignment:{A2}:New:USER:bob",
        f"create_assignment:{A3}:New:USER:bob",
        f"delete_assignment:{A2}:Dev:USER:{GONE}",  # its name is unknown: keyed by id
        f"delete_assignment:{A2}:Dev:USER:bob",
        # Legacy: managed, not in kintone, but provisioned to the management account -> never deleted
    ], text
    assert MGMT not in {getattr(op, "account_id", None) for op in plan.operations}
    assert {p.code for p in problems} == {
        "permission_set_not_managed",
        "principal_not_found",
        "provisioned_to_management_account",
    }
    assert plan.managed_assignment_count == 4


def test_scoped_snapshot_reads_less(sandbox: Sandbox, clients: IdcClients) -> None:
    arns = seed(sandbox)
    scope = Scope(accounts=[A1], permission_sets=["Dev"])
    observed = take_snapshot(clients, desired_state(), SyncConfig(), scope)
    assert observed.scoped and observed.scope == scope
    assert set(observed.permission_sets) == {"Dev"}
    assert {a.account_id for a in observed.assignments} == {A1}
    listed = {c.params.get("AccountId") for c in sandbox.calls.calls("sso-admin", "ListAccountAssignments")}
    assert listed == {A1}
    tagged = {
        c.params.get("PermissionSetArn")
        for c in sandbox.calls.calls("sso-admin", "ListManagedPoliciesInPermissionSet")
    }
    assert tagged == {arns["Dev"]}
    # bob is only named for New (out of scope), carol only for OU accounts outside A1: neither looked up
    assert set(observed.principal_ids) == {"USER:alice", "GROUP:Admins"}
    assert observed.missing_principals == []
    looked_up = len(sandbox.calls.calls("identitystore", "GetUserId"))
    assert looked_up == 1
    plan, _ = compute_plan(desired_state(), observed, SyncConfig(), today=dt.date(2025, 1, 1))
    assert [op.key for op in plan.operations] == []  # A1 assignments match; A2 stale is out of scope


def test_snapshot_survives_throttling_and_empty_pages_at_some_scale(
    sandbox: Sandbox, clients: IdcClients
) -> None:
    seed(sandbox)
    with sandbox.lock:
        ic = sandbox.world.identity_center
        org = sandbox.world.organization
        for i in range(20):
            acct = f"3000000000{i:02d}"
            org.accounts[acct] = Account(acct, f"bulk-{i}", f"{acct}@example.com", NESTED if i % 2 else PROD)
        for n in range(100, 125):
            arn = ps_arn(sandbox, n)
            ic.permission_sets[arn] = PermissionSet(arn, f"Bulk{n}", managed_policies=[RO], tags=dict(TAG))
            for i in range(2):
                acct = f"3000000000{(n + i) % 20:02d}"
                ic.assignments.add(Assignment(acct, arn, "USER", ALICE))
                ic.provisioned[(acct, arn)] = 1
    sandbox.config.organizations_empty_page_rate = 0.3
    sandbox.faults.add(
        FaultRule(service="sso-admin", kind="throttle", operation="DescribePermissionSet", rate=0.3, count=8)
    )
    observed = take_snapshot(clients, desired_state(), SyncConfig(), max_workers=4)
    assert len(observed.org.accounts) == 25
    assert len([s for s in observed.permission_sets.values() if s.managed]) == 27
    assert len(observed.assignments) == 4 + 25 * 2
    throttled = [c for c in sandbox.calls.calls("sso-admin") if c.error == "ThrottlingException"]
    assert throttled, "the fault rule should have fired"


def test_snapshot_without_desired_then_resolve_principals(sandbox: Sandbox, clients: IdcClients) -> None:
    """The DAG's shape: snapshot_idc runs in parallel with extract_kintone; names are resolved in compute_diff."""
    arns = seed(sandbox)
    observed = take_snapshot(clients, None, SyncConfig())
    # principals of managed assignments are named (readable deletions), nobody is "missing" yet
    assert observed.principal_names == {ALICE: "USER:alice", ADMINS: "GROUP:Admins", BOB: "USER:bob"}
    assert observed.missing_principals == []
    assert observed.permission_sets["Dev"].managed_policies == sorted([RO, VIEW])
    # unmanaged permission sets are only described when nobody names them
    assert observed.permission_sets["ControlTower"].provisioned_accounts == []
    assert arns["ControlTower"] not in {
        c.params.get("PermissionSetArn")
        for c in sandbox.calls.calls("sso-admin", "ListManagedPoliciesInPermissionSet")
    }
    sandbox.calls.clear()

    desired = desired_state()
    resolved = resolve_principals(clients, observed, desired)
    assert resolved.missing_principals == ["USER:carol"]
    assert resolved.principal_ids["USER:bob"] == BOB
    # only names not already known from assignments are looked up
    looked_up = [
        c for c in sandbox.calls.calls("identitystore") if c.operation in ("GetUserId", "GetGroupId")
    ]
    assert len(looked_up) == 1  # carol
    plan, problems = compute_plan(desired, resolved, SyncConfig(), today=dt.date(2025, 1, 1))
    assert MGMT not in {getattr(op, "account_id", None) for op in plan.operations}
    assert "principal_not_found" in {p.code for p in problems}


def test_resolve_principals_lists_the_store_above_the_threshold(
    sandbox: Sandbox, clients: IdcClients
) -> None:
    seed(sandbox)
    observed = take_snapshot(clients, None, SyncConfig())
    sandbox.calls.clear()
    resolved = resolve_principals(clients, observed, desired_state(), principal_list_threshold=0)
    assert resolved.missing_principals == ["USER:carol"]
    ops = {c.operation for c in sandbox.calls.calls("identitystore")}
    assert ops == {"ListUsers"}
