"""apply_* against the real sandbox through unmodified boto3 clients (IdcClients.from_session).

The sandbox enforces what the pipeline has to live with: one in-flight async operation per account
(ConflictException), 10 outstanding assignment operations / 3 provisionings (ThrottlingException), the
management account refused to a delegated administrator, async requests that stay IN_PROGRESS for a while.
Faults (conflicts, throttling, FAILED async requests) are injected on top.

The time-budget tests run the sandbox on a :class:`ManualClock` that apply's own waits advance
(``ApplyOptions(clock=..., sleep=clock.advance)``): async latency and the deadline pass by events, not by
sleeping, and the assertions are about counts and states, never about durations.
"""

from __future__ import annotations

import dataclasses as dc
import random
import time
import types
import uuid
from collections import Counter

import boto3
import botocore.endpoint
import pytest

from idc_sandbox.aws_sso_admin import add_assignment_direct, create_permission_set_direct
from idc_sandbox.core import FaultRule, ManualClock, Sandbox
from idc_sandbox.state import Account, User
from idc_sync.apply import (
    ApplyOptions,
    apply_assignments,
    apply_permission_sets,
    count_by_status,
    permission_set_arns,
)
from idc_sync.aws_clients import IdcClients
from idc_sync.config import SyncConfig
from idc_sync.model import (
    Account as AccountModel,
)
from idc_sync.model import (
    AssignmentOp,
    AssignmentState,
    ObservedState,
    OpKind,
    OrgSnapshot,
    PermissionSetOp,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    ProvisionOp,
)

RO = "arn:aws:iam::aws:policy/ReadOnlyAccess"
VIEW = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
INLINE = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}'
ACCOUNTS = [f"30000000000{i}" for i in range(5)]
FAST = ApplyOptions(poll_initial=0.1, poll_interval=0.1, poll_max=0.5, backoff_base=0.2, backoff_max=2.0)


@pytest.fixture
def clients(sandbox_url: str) -> IdcClients:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return IdcClients.from_session(session, endpoint_url=sandbox_url)


@pytest.fixture
def world(sandbox: Sandbox) -> dict[str, str]:
    """5 member accounts + the management account, 6 users; returns user name -> user id."""
    sandbox.config.async_latency_seconds = 0.2
    users: dict[str, str] = {}
    with sandbox.lock:
        org = sandbox.world.organization
        org.accounts[org.management_account_id] = Account(
            org.management_account_id, "management", "mgmt@example.com", org.root_id
        )
        for i, acc in enumerate(ACCOUNTS):
            org.accounts[acc] = Account(acc, f"member-{i}", f"m{i}@example.com", org.root_id)
        for i in range(6):
            uid = str(uuid.UUID(int=i + 1))
            sandbox.world.identity_store.users[uid] = User(uid, f"user{i}", f"User {i}")
            users[f"user{i}"] = uid
    return users


def observed_of(sandbox: Sandbox, users: dict[str, str]) -> ObservedState:
    """A hand-made snapshot of the sandbox (snapshot.py is tested on its own)."""
    with sandbox.lock:
        ic = sandbox.world.identity_center
        org = sandbox.world.organization
        pss = {}
        for ps in ic.permission_sets.values():
            pss[ps.name] = PermissionSetState(
                arn=ps.arn,
                name=ps.name,
                description=ps.description,
                session_duration=ps.session_duration,
                managed_policies=sorted(ps.managed_policies),
                inline_policy=ps.inline_policy,
                tags=dict(ps.tags),
                managed=ps.tags.get("managed-by") == "idc-sync",
                provisioned_accounts=sorted(a for a, arn in ic.provisioned if arn == ps.arn),
            )
        managed = {ps.arn for ps in ic.permission_sets.values() if ps.tags.get("managed-by") == "idc-sync"}
        return ObservedState(
            instance_arn=ic.instance_arn,
            identity_store_id=sandbox.world.identity_store.id,
            assignments=[
                AssignmentState(
                    account_id=a.account_id,
                    permission_set_arn=a.permission_set_arn,
                    principal_type=a.principal_type,  # type: ignore[arg-type]
                    principal_id=a.principal_id,
                )
                for a in ic.assignments
                if a.permission_set_arn in managed
            ],
            org=OrgSnapshot(
                management_account_id=org.management_account_id,
                root_id=org.root_id,
                accounts={
                    a.id: AccountModel(id=a.id, name=a.name, parent_id=a.parent_id)
                    for a in org.accounts.values()
                },
            ),
            permission_sets=pss,
            principal_ids={f"USER:{n}": uid for n, uid in users.items()},
            principal_names={uid: f"USER:{n}" for n, uid in users.items()},
        )


def assignment_ops(
    users: dict[str, str], ps: str = "Dev", kind: OpKind = OpKind.CREATE_ASSIGNMENT
) -> list[AssignmentOp]:
    verb = kind.value
    return [
        AssignmentOp(
            key=f"{verb}:{acc}:{ps}:USER:{name}",
            kind=kind,
            permission_set_name=ps,
            account_id=acc,
            principal_type="USER",
            principal_id=uid,
            principal_name=name,
        )
        for acc in ACCOUNTS
        for name, uid in users.items()
    ]


def dev_plan(users: dict[str, str]) -> Plan:
    spec = PermissionSetSpec(
        name="Dev", description="developers", managed_policies=[RO, VIEW], inline_policy=INLINE
    )
    create = PermissionSetOp(
        key="create_permission_set:Dev",
        kind=OpKind.CREATE_PERMISSION_SET,
        permission_set_name="Dev",
        spec=spec,
    )
    return Plan(operations=[create, *assignment_ops(users)])


def run(clients: IdcClients, plan: Plan, observed: ObservedState, config: SyncConfig | None = None):
    config = config or SyncConfig()
    ps_results = apply_permission_sets(clients, plan, observed, config, options=FAST)
    arns = permission_set_arns(plan, observed, ps_results)
    asg_results = apply_assignments(clients, plan, observed, config, ps_arns=arns, options=FAST)
    return ps_results, asg_results


def test_create_and_assign_converges_under_faults_and_rerun_has_no_duplicates(
    sandbox: Sandbox, clients: IdcClients, world: dict[str, str]
) -> None:
    sandbox.faults.add(
        FaultRule(service="sso-admin", kind="conflict", operation="CreateAccountAssignment", rate=0.3)
    )
    sandbox.faults.add(
        FaultRule(
            service="sso-admin",
            kind="throttle",
            operation="DescribeAccountAssignmentCreationStatus",
            rate=0.2,
        )
    )
    sandbox.faults.add(
        FaultRule(
            service="sso-admin", kind="conflict", operation="AttachManagedPolicyToPermissionSet", count=1
        )
    )
    plan = dev_plan(world)
    before = observed_of(sandbox, world)

    ps_results, asg_results = run(clients, plan, before)
    assert [r.status for r in ps_results] == ["succeeded"], ps_results
    assert count_by_status(asg_results) == {
        "succeeded": 30,
        "already_in_place": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
    }, [r.message for r in asg_results if r.status != "succeeded"]
    assert any(r.attempts > 1 for r in asg_results)  # conflicts were met and retried
    ic = sandbox.world.identity_center
    [ps] = [p for p in ic.permission_sets.values() if p.name == "Dev"]
    assert ps.tags == {"managed-by": "idc-sync"}
    assert sorted(ps.managed_policies) == sorted([RO, VIEW])
    assert ps.inline_policy == INLINE
    assert len(ic.assignments) == 30
    assert {a.account_id for a in ic.assignments} == set(ACCOUNTS)

    # "Clear & retry" with the same (stale) snapshot and plan: converges, no duplicates, no errors.
    sandbox.faults.clear()
    ps_again, asg_again = run(clients, plan, before)
    assert [r.status for r in ps_again] == ["already_in_place"]  # nothing changed: not a success
    assert "already existed" in ps_again[0].message
    assert ps_again[0].permission_set_arn == ps.arn
    assert count_by_status(asg_again)["succeeded"] == 30
    assert sum(1 for p in ic.permission_sets.values() if p.name == "Dev") == 1
    assert len(ic.assignments) == 30


def test_no_conflicts_without_faults(sandbox: Sandbox, clients: IdcClients, world: dict[str, str]) -> None:
    """One in-flight operation per account and ≤10 outstanding: the sandbox never has to refuse one."""
    _, asg_results = run(clients, dev_plan(world), observed_of(sandbox, world))
    assert count_by_status(asg_results)["succeeded"] == 30
    errors = Counter(c.error for c in sandbox.calls.calls("sso-admin") if c.error)
    assert errors["ConflictException"] == 0, errors


def test_async_failures_are_reported_and_others_succeed(
    sandbox: Sandbox, clients: IdcClients, world: dict[str, str]
) -> None:
    sandbox.faults.add(
        FaultRule(service="sso-admin", kind="async_failed", operation="CreateAccountAssignment", count=3)
    )
    plan = dev_plan(world)
    before = observed_of(sandbox, world)
    _, asg_results = run(clients, plan, before)
    assert count_by_status(asg_results) == {
        "succeeded": 27,
        "already_in_place": 0,
        "failed": 3,
        "skipped": 0,
        "deferred": 0,
    }
    for r in asg_results:
        if r.status == "failed":
            assert "FAILED: Received a 403 status error" in r.message
            assert r.request_id and len(r.request_id) == 36
            assert r.attempts == 1
    assert len(sandbox.world.identity_center.assignments) == 27

    # The next run repairs it.
    _, again = run(clients, plan, before)
    assert count_by_status(again)["succeeded"] == 30
    assert len(sandbox.world.identity_center.assignments) == 30


def test_management_account_is_never_called(
    sandbox: Sandbox, clients: IdcClients, world: dict[str, str]
) -> None:
    mgmt = sandbox.world.organization.management_account_id
    arn = create_permission_set_direct(sandbox, "Dev", tags={"managed-by": "idc-sync"})
    uid = world["user0"]
    ops = [
        AssignmentOp(key=f"create_assignment:{acc}:Dev:USER:user0", kind=OpKind.CREATE_ASSIGNMENT, permission_set_name="Dev",
                  permission_set_arn=arn, account_id=acc, principal_type="USER", principal_id=uid, principal_name="user0")
        for acc in (mgmt, ACCOUNTS[0])
    ]  # fmt: skip
    results = apply_assignments(
        clients,
        Plan(operations=ops),
        observed_of(sandbox, world),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=FAST,
    )
    assert [r.status for r in results] == ["failed", "succeeded"]
    assert results[0].message.startswith("refused: management account")
    assert not [
        c
        for c in sandbox.calls.calls("sso-admin")
        if mgmt in (c.params.get("TargetId"), c.params.get("AccountId"))
    ]


def test_update_then_provision_reaches_accounts(
    sandbox: Sandbox, clients: IdcClients, world: dict[str, str]
) -> None:
    arn = create_permission_set_direct(sandbox, "Dev", managed_policies=[RO], tags={"managed-by": "idc-sync"})
    for acc in ACCOUNTS:
        add_assignment_direct(sandbox, acc, arn, "USER", world["user0"])
    before = observed_of(sandbox, world)
    spec = PermissionSetSpec(
        name="Dev", session_duration="PT4H", managed_policies=[VIEW], inline_policy=INLINE
    )
    ops = [
        PermissionSetOp(
            key="update_permission_set:Dev",
            kind=OpKind.UPDATE_PERMISSION_SET,
            permission_set_name="Dev",
            permission_set_arn=arn,
            spec=spec,
        )
    ]
    ops += [
        ProvisionOp(key=f"provision_permission_set:Dev:{acc}", kind=OpKind.PROVISION_PERMISSION_SET, permission_set_name="Dev",
                  permission_set_arn=arn, account_id=acc)
        for acc in ACCOUNTS
    ]  # fmt: skip
    sandbox.faults.add(
        FaultRule(service="sso-admin", kind="conflict", operation="ProvisionPermissionSet", rate=0.3)
    )
    results = apply_permission_sets(clients, Plan(operations=ops), before, SyncConfig(), options=FAST)
    assert count_by_status(results) == {
        "succeeded": 6,
        "already_in_place": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
    }, [r.message for r in results]
    ic = sandbox.world.identity_center
    ps = ic.permission_sets[arn]
    assert ps.session_duration == "PT4H" and ps.managed_policies == [VIEW] and ps.inline_policy == INLINE
    assert all(ic.provisioned[(acc, arn)] == ps.version for acc in ACCOUNTS)


def test_delete_assignments_then_permission_set(
    sandbox: Sandbox, clients: IdcClients, world: dict[str, str]
) -> None:
    arn = create_permission_set_direct(sandbox, "Old", tags={"managed-by": "idc-sync"})
    for acc in ACCOUNTS:
        for uid in world.values():
            add_assignment_direct(sandbox, acc, arn, "USER", uid)
    ops = assignment_ops(world, ps="Old", kind=OpKind.DELETE_ASSIGNMENT)
    ops.append(
        PermissionSetOp(
            key="delete_permission_set:Old",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="Old",
            permission_set_arn=arn,
        )
    )
    before = observed_of(sandbox, world)
    sandbox.faults.add(
        FaultRule(service="sso-admin", kind="conflict", operation="DeleteAccountAssignment", rate=0.3)
    )
    results = apply_assignments(
        clients, Plan(operations=ops), before, SyncConfig(), ps_arns={"Old": arn}, options=FAST
    )
    assert count_by_status(results) == {
        "succeeded": 31,
        "already_in_place": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
    }, [r.message for r in results if r.status != "succeeded"]
    assert results[-1].kind == OpKind.DELETE_PERMISSION_SET
    assert arn not in sandbox.world.identity_center.permission_sets
    # Re-run: everything is already gone, still no error, and reported as such (not as 31 changes).
    again = apply_assignments(
        clients, Plan(operations=ops), before, SyncConfig(), ps_arns={"Old": arn}, options=FAST
    )
    assert count_by_status(again) == {
        "succeeded": 0,
        "already_in_place": 31,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
    }


def test_retried_apply_reports_already_in_place_not_succeeded(
    sandbox: Sandbox, clients: IdcClients, world: dict[str, str]
) -> None:
    """Issue 9 defect 10: a retry of apply with the same plan made no change, and said "30 succeeded".
    With ``confirm_creates`` (set for task retries) the live assignments are read first (one
    ListAccountAssignments per account and permission set): the no-ops are "already_in_place"."""
    plan = dev_plan(world)
    before = observed_of(sandbox, world)
    run(clients, plan, before)
    assert len(sandbox.world.identity_center.assignments) == 30

    sandbox.calls.clear()
    config = SyncConfig()
    ps_again = apply_permission_sets(clients, plan, before, config, options=FAST)
    arns = permission_set_arns(plan, before, ps_again)
    retry = dc.replace(FAST, confirm_creates=True)
    again = apply_assignments(clients, plan, before, config, ps_arns=arns, options=retry)
    assert count_by_status(again) == {
        "succeeded": 0,
        "already_in_place": 30,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
    }
    assert not sandbox.calls.calls("sso-admin", "CreateAccountAssignment")
    lists = sandbox.calls.calls("sso-admin", "ListAccountAssignments")
    assert len(lists) == len({c.params["AccountId"] for c in lists})  # one read per (account, set)


# --------------------------------------------------------------------------- List*Status, time budget, retries
BIG_ACCOUNTS = [f"40000000{i:04d}" for i in range(20)]
CREATES = {"ListAccountAssignmentCreationStatus", "DescribeAccountAssignmentCreationStatus"}


@pytest.fixture
def manual(sandbox: Sandbox) -> ManualClock:
    """The sandbox on a clock that only apply's waits move: async requests take 1 s of it.

    Its 20 req/s bucket is lifted: on this clock it would refill only while apply waits for a request,
    and botocore's backoff after a throttle sleeps on the real clock (the rate is the benchmark's
    business, at real time); the outstanding-operations limit (10) and the per-account conflicts stay.
    """
    clock = ManualClock()
    sandbox.clock = clock
    sandbox.config.async_latency_seconds = 1.0
    sandbox.config.rate_limits["sso-admin"] = 0
    return clock


@pytest.fixture
def unpaced(sandbox_url: str) -> IdcClients:
    """Clients without the client-side pacer (it paces on the real clock)."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return IdcClients.from_session(session, endpoint_url=sandbox_url, max_rps={"sso_admin": None})


@pytest.fixture
def big_world(sandbox: Sandbox) -> dict[str, str]:
    """20 member accounts, 3 users and the managed permission set Dev: 60 assignments to make."""
    users: dict[str, str] = {}
    with sandbox.lock:
        org = sandbox.world.organization
        org.accounts[org.management_account_id] = Account(
            org.management_account_id, "management", "mgmt@example.com", org.root_id
        )
        for i, acc in enumerate(BIG_ACCOUNTS):
            org.accounts[acc] = Account(acc, f"big-{i}", f"b{i}@example.com", org.root_id)
        for i in range(3):
            uid = str(uuid.UUID(int=100 + i))
            sandbox.world.identity_store.users[uid] = User(uid, f"big{i}", f"Big {i}")
            users[f"big{i}"] = uid
    create_permission_set_direct(sandbox, "Dev", tags={"managed-by": "idc-sync"})
    return users


def big_plan(sandbox: Sandbox, users: dict[str, str]) -> Plan:
    arn = sandbox.world.identity_center.permission_sets
    [dev] = [ps.arn for ps in arn.values() if ps.name == "Dev"]
    return Plan(
        operations=[
            AssignmentOp(
                key=f"create_assignment:{acc}:Dev:USER:{name}",
                kind=OpKind.CREATE_ASSIGNMENT,
                permission_set_name="Dev",
                permission_set_arn=dev,
                account_id=acc,
                principal_type="USER",
                principal_id=uid,
                principal_name=name,
            )
            for acc in BIG_ACCOUNTS
            for name, uid in users.items()
        ]
    )


def manual_options(clock: ManualClock) -> ApplyOptions:
    """Apply's waits advance the manual clock (and yield 2 ms for real, so that the workers interleave
    with the polling thread as they would at 1 s per request: no assertion depends on it)."""

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        time.sleep(0.002)

    return ApplyOptions(clock=clock.monotonic, sleep=sleep, rng=random.Random(3))


def in_flight(sandbox: Sandbox) -> list[str]:
    with sandbox.lock:
        return [
            r.request_id for r in sandbox.world.identity_center.requests.values() if r.status == "IN_PROGRESS"
        ]


def test_outstanding_requests_are_followed_with_list_status(
    sandbox: Sandbox, manual: ManualClock, unpaced: IdcClients, big_world: dict[str, str]
) -> None:
    """60 creations, 10 outstanding at a time: a List*Status round follows all of them; Describe is the
    exception (the request the list no longer shows), not two or more per request as before."""
    plan = big_plan(sandbox, big_world)
    config = SyncConfig(apply_budget_seconds=None)
    results = apply_assignments(
        unpaced, plan, observed_of(sandbox, big_world), config, ps_arns={}, options=manual_options(manual)
    )
    assert count_by_status(results)["succeeded"] == 60, [r.message for r in results if not r.done]
    calls = Counter(c.operation for c in sandbox.calls.calls("sso-admin") if c.error is None)
    assert calls["CreateAccountAssignment"] == 60
    lists = calls["ListAccountAssignmentCreationStatus"]
    describes = calls["DescribeAccountAssignmentCreationStatus"]
    assert lists > 0
    assert lists + describes < 60  # status calls per operation < 1 (one Describe each would be 60)
    assert len(sandbox.world.identity_center.assignments) == 60
    assert not in_flight(sandbox)
    # never more than 10 outstanding (ThrottlingException) nor two in one account (ConflictException)
    assert not [c for c in sandbox.calls.calls("sso-admin") if c.error]


def test_budget_cut_leaves_nothing_in_flight_and_the_next_apply_finishes_without_duplicates(
    sandbox: Sandbox, manual: ManualClock, unpaced: IdcClients, big_world: dict[str, str]
) -> None:
    plan = big_plan(sandbox, big_world)
    # Run 1: a 1.5 s budget (on the manual clock) for 60 operations of 1 s each, 10 at a time.
    first = apply_assignments(
        unpaced,
        plan,
        observed_of(sandbox, big_world),
        SyncConfig(apply_budget_seconds=1.5),
        ps_arns={},
        options=manual_options(manual),
    )
    counts = count_by_status(first)
    assert counts["failed"] == counts["skipped"] == 0, [r.message for r in first if not r.done]
    assert counts["succeeded"] >= 1 and counts["deferred"] >= 1
    assert counts["succeeded"] + counts["deferred"] == 60
    assert not in_flight(sandbox)  # every request started was awaited to its end
    creates = [c for c in sandbox.calls.calls("sso-admin", "CreateAccountAssignment") if c.error is None]
    assert len(creates) == counts["succeeded"]  # nothing started for a deferred operation
    assert len(sandbox.world.identity_center.assignments) == counts["succeeded"]

    # Run 2: the same plan against the state observed now.
    second = apply_assignments(
        unpaced,
        plan,
        observed_of(sandbox, big_world),
        SyncConfig(apply_budget_seconds=None),
        ps_arns={},
        options=manual_options(manual),
    )
    done_before = {r.key for r in first if r.status == "succeeded"}
    assert {r.key for r in second if r.status == "already_in_place"} == done_before
    assert {r.key for r in second if r.status == "succeeded"} == {
        r.key for r in first if r.status == "deferred"
    }
    assert len(sandbox.world.identity_center.assignments) == 60
    made = Counter(
        (c.params["TargetId"], c.params["PrincipalId"])
        for c in sandbox.calls.calls("sso-admin", "CreateAccountAssignment")
        if c.error is None
    )
    assert len(made) == 60 and set(made.values()) == {1}  # each assignment created exactly once
    assert not in_flight(sandbox)


def test_a_throttled_call_is_retried_by_botocore_only(
    sandbox: Sandbox, sandbox_url: str, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One retry layer: botocore (here 3 retries = 4 attempts) retries ThrottlingException; apply does not
    retry it again on top (before: 4 x max_attempts requests for one throttled call)."""
    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=slept.append))
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    clients = IdcClients.from_session(
        session, endpoint_url=sandbox_url, retries={"max_attempts": 3}, max_rps={"sso_admin": None}
    )
    arn = create_permission_set_direct(sandbox, "Dev", tags={"managed-by": "idc-sync"})
    sandbox.faults.add(FaultRule(service="sso-admin", kind="throttle", operation="CreateAccountAssignment"))
    op = assignment_ops(world)[0]
    [result] = apply_assignments(
        clients,
        Plan(operations=[op]),
        observed_of(sandbox, world),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=FAST,
    )
    assert result.status == "failed"
    assert result.message.startswith("ThrottlingException") and "after 4 attempts" in result.message
    assert len(sandbox.calls.calls("sso-admin", "CreateAccountAssignment")) == 4
    assert len(slept) == 3  # botocore's own backoff, between its attempts
