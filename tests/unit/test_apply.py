"""Unit tests of idc_sync.apply: retries, polling, concurrency bounds, idempotency, safety refusals.

The fake below is a small, hand-written sso-admin: only what apply calls, with knobs to script
IN_PROGRESS/FAILED statuses and Conflict/Throttling/AccessDenied errors. Time is injected (FakeTime) so
nothing really waits (a tiny real sleep only keeps worker threads from spinning); parallelism is proven by
a barrier (``FakeSso.meet``), not by hoping threads overlap in time.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Any

import pytest
from botocore.exceptions import ClientError

from idc_sync.apply import (
    ApplyOptions,
    apply_assignments,
    apply_permission_set_deletions,
    apply_permission_sets,
    count_by_status,
    order_assignment_operations,
    permission_set_arns,
)
from idc_sync.config import SyncConfig
from idc_sync.model import (
    AssignmentOp,
    CustomerPolicyRef,
    ObservedState,
    OpKind,
    OrgSnapshot,
    PermissionsBoundary,
    PermissionSetOp,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    ProvisionOp,
    RecordRef,
)
from tests.unit.fakes import FakeClients, FakeSso, FakeTime

INSTANCE = "arn:aws:sso:::instance/ssoins-0000000000000001"
MGMT = "111111111111"
RO = "arn:aws:iam::aws:policy/ReadOnlyAccess"
VIEW = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


# --------------------------------------------------------------------------- fixtures and builders
def observed(fake: FakeSso | None = None, **kw: Any) -> ObservedState:
    pss: dict[str, PermissionSetState] = {}
    if fake is not None:
        for arn, ps in fake.permission_sets.items():
            pss[ps["Name"]] = PermissionSetState(
                arn=arn,
                name=ps["Name"],
                description=ps["Description"],
                session_duration=ps["SessionDuration"],
                managed_policies=sorted(ps["managed"]),
                customer_managed_policies=[
                    CustomerPolicyRef(name=n, path=p) for n, p in sorted(ps["customer"])
                ],
                inline_policy=ps["inline"],
                tags=ps["tags"],
                managed=ps["tags"].get("managed-by") == "idc-sync",
                provisioned_accounts=kw.get("provisioned", {}).get(ps["Name"], []),
            )
    return ObservedState(
        instance_arn=INSTANCE,
        identity_store_id="d-1",
        org=OrgSnapshot(management_account_id=MGMT),
        permission_sets=pss,
        principal_ids={"USER:alice": "u-alice", "GROUP:Admins": "g-admins"},
    )


def asg(
    kind: OpKind, account: str, ps: str = "Dev", arn: str | None = None, user: str = "alice"
) -> AssignmentOp:
    verb = "create" if kind == OpKind.CREATE_ASSIGNMENT else "delete"
    return AssignmentOp(
        key=f"{verb}:{account}:{ps}:USER:{user}",
        kind=kind,
        permission_set_name=ps,
        permission_set_arn=arn,
        account_id=account,
        principal_type="USER",
        principal_id=f"u-{user}",
        principal_name=user,
    )


def accounts(n: int, start: int = 200000000000) -> list[str]:
    return [str(start + i) for i in range(n)]


# --------------------------------------------------------------------------- polling and retries
def test_poll_in_progress_then_succeeded(fake: FakeSso, ft: FakeTime, opts: ApplyOptions) -> None:
    """While the request is listed IN_PROGRESS nothing is sent for it alone; once it has left the list it
    is described once (its outcome, a FailureReason if any)."""
    arn = fake.seed_ps("Dev")
    fake.polls_in_progress = 3
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), SyncConfig(), ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "succeeded", res.message
    assert res.request_id and res.request_id.startswith("req-")
    assert res.attempts == 1
    assert fake.count("ListAccountAssignmentCreationStatus") == 3
    assert fake.count("DescribeAccountAssignmentCreationStatus") == 1
    lists = [p for n, p in fake.calls if n == "ListAccountAssignmentCreationStatus"]
    assert all(p["Filter"] == {"Status": "IN_PROGRESS"} and p["MaxResults"] == 100 for p in lists)
    assert ft.sleeps[:3] == pytest.approx([0.5, 0.5, 0.5])  # one round per poll_interval
    assert ("200000000001", arn, "USER", "u-alice") in fake.assignments


def test_one_list_call_follows_many_requests(fake: FakeSso, opts: ApplyOptions) -> None:
    """10 outstanding creations: each round is one List*Status for all of them, not 10 Describes; the
    ones that ended together are settled from one page of SUCCEEDED requests."""
    arn = fake.seed_ps("Dev")
    fake.polls_in_progress = 3
    fake.meet(10)  # the ten are outstanding together by construction
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn) for a in accounts(10)]
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(assignment_concurrency=10),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert count_by_status(results)["succeeded"] == 10
    describes = fake.count("DescribeAccountAssignmentCreationStatus")
    lists = fake.count("ListAccountAssignmentCreationStatus")
    assert describes + lists < 10  # before: at least 3 Describes per request (30)
    assert len(fake.assignments) == 10


def test_request_missing_from_the_list_is_described(fake: FakeSso, ft: FakeTime, opts: ApplyOptions) -> None:
    """The list shows recent requests only: one it never shows is followed by Describe alone, with a
    growing interval, and still ends as it should."""
    arn = fake.seed_ps("Dev")
    fake.polls_in_progress = 6
    fake.list_recent = 0  # the list shows nothing
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), SyncConfig(), ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "succeeded", res.message
    describes = fake.count("DescribeAccountAssignmentCreationStatus")
    lists = fake.count("ListAccountAssignmentCreationStatus")
    assert 1 < describes < lists  # described when due (0.5, 0.75, 1.1 s ...), not every round


def test_failed_request_gets_its_reason_from_describe(fake: FakeSso, opts: ApplyOptions) -> None:
    """List items carry no FailureReason (botocore model): a request that ended FAILED is described."""
    arn = fake.seed_ps("Dev")
    fake.fail_accounts["200000000001"] = "Received a 403 status error: Access denied by IAM"
    fake.list_newest_first = True
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn) for a in accounts(3)]
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert [r.status for r in results] == ["succeeded", "failed", "succeeded"]
    assert "FAILED: Received a 403 status error: Access denied by IAM" in results[1].message
    described = [
        p["AccountAssignmentCreationRequestId"]
        for n, p in fake.calls
        if n == "DescribeAccountAssignmentCreationStatus"
    ]
    assert results[1].request_id in described


def test_poll_interval_slows_down_while_nothing_changes_and_is_capped(fake: FakeSso, ft: FakeTime) -> None:
    """A request that stays IN_PROGRESS (a slow service): the rounds slow down to poll_max, so two
    minutes cost a few dozen List calls, not one every 0.5 s."""
    arn = fake.seed_ps("Dev")
    fake.never_finish = True
    opts = ApplyOptions(sleep=ft.sleep, clock=ft.clock, rng=random.Random(1))
    cfg = SyncConfig(async_timeout_seconds=120)
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), cfg, ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "failed" and "still IN_PROGRESS after 120s" in res.message
    assert ft.sleeps[:10] == pytest.approx([0.5] * 10)
    assert max(ft.sleeps) == pytest.approx(5.0)
    assert fake.count("ListAccountAssignmentCreationStatus") < 60  # 240 at a steady 0.5 s


def test_conflict_retried_then_succeeds(fake: FakeSso, ft: FakeTime, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    fake.errors["CreateAccountAssignment"] = ["ConflictException"] * 3
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), SyncConfig(), ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "succeeded", res.message
    assert res.attempts == 4
    assert fake.count("CreateAccountAssignment") == 4


def test_backoff_is_exponential_full_jitter_and_bounded(fake: FakeSso, ft: FakeTime) -> None:
    arn = fake.seed_ps("Dev")
    fake.always["CreateAccountAssignment"] = "ConflictException"
    opts = ApplyOptions(
        sleep=ft.sleep,
        clock=ft.clock,
        rng=random.Random(7),
        max_attempts=6,
        backoff_base=1.0,
        backoff_max=4.0,
    )
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), SyncConfig(), ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "failed"
    assert "ConflictException" in res.message and "next run" in res.message
    assert fake.count("CreateAccountAssignment") == 6
    assert res.attempts == 6
    caps = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(ft.sleeps) == 5
    for slept, cap in zip(ft.sleeps, caps, strict=True):
        assert 0 <= slept <= cap


def test_throttling_retried(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    fake.errors["CreateAccountAssignment"] = ["ThrottlingException", "ThrottlingException"]
    fake.errors["DescribeAccountAssignmentCreationStatus"] = ["ThrottlingException"]
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), SyncConfig(), ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "succeeded"
    assert res.attempts == 4  # 2 retries of the create + 1 retry of a poll


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ValidationException", "ServiceQuotaExceededException"]
)
def test_non_retryable_errors_fail_fast_and_others_continue(
    fake: FakeSso, opts: ApplyOptions, code: str
) -> None:
    arn = fake.seed_ps("Dev")
    fake.errors["CreateAccountAssignment"] = [code]
    ops = [asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)]  # same account: runs first, gets the error
    ops += [asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn, user="bob")]
    plan = Plan(operations=ops)
    results = apply_assignments(
        FakeClients(fake), plan, observed(fake), SyncConfig(), ps_arns={"Dev": arn}, options=opts
    )
    assert [r.status for r in results] == ["failed", "succeeded"]
    assert results[0].attempts == 1
    assert results[0].message.startswith(code)
    assert fake.count("CreateAccountAssignment") == 2


def test_failed_async_status_reports_failure_reason(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    fake.fail_accounts["200000000002"] = "Received a 403 status error: Access denied by IAM"
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn) for a in accounts(4, 200000000000)]
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    by_acc = {r.key.split(":")[1]: r for r in results}
    assert by_acc["200000000002"].status == "failed"
    assert "FAILED: Received a 403 status error" in by_acc["200000000002"].message
    assert by_acc["200000000002"].request_id is not None
    assert by_acc["200000000002"].attempts == 1  # FAILED is not retried
    assert sum(r.status == "succeeded" for r in results) == 3
    assert fake.count("CreateAccountAssignment") == 4


def test_async_timeout(fake: FakeSso, ft: FakeTime) -> None:
    arn = fake.seed_ps("Dev")
    fake.never_finish = True
    opts = ApplyOptions(sleep=ft.sleep, clock=ft.clock, rng=random.Random(1))
    cfg = SyncConfig(async_timeout_seconds=60)
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), cfg, ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "failed"
    assert "still IN_PROGRESS after 60s" in res.message
    assert sum(ft.sleeps) <= 60.0 + 1e-6
    assert fake.count("DescribeAccountAssignmentCreationStatus") < 30


def test_unexpected_exception_is_one_failed_result(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    original = fake.create_account_assignment
    seen = []

    def flaky(**p: Any) -> dict[str, Any]:
        if not seen:
            seen.append(1)
            raise KeyError("bug in the service")
        return original(**p)

    fake.create_account_assignment = flaky  # type: ignore[method-assign]
    ops = [
        asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn),
        asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn, user="bob"),
    ]
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert [r.status for r in results] == ["failed", "succeeded"]
    assert "unexpected error: KeyError" in results[0].message


# --------------------------------------------------------------------------- concurrency
def test_assignment_concurrency_bounds(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    fake.polls_in_progress = 2
    accs = accounts(30)
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn, user=u) for a in accs for u in ("alice", "bob", "carol")]
    cfg = SyncConfig(assignment_concurrency=10)
    fake.meet(2)
    results = apply_assignments(
        FakeClients(fake), Plan(operations=ops), observed(fake), cfg, ps_arns={"Dev": arn}, options=opts
    )
    assert count_by_status(results) == {
        "succeeded": 90,
        "already_in_place": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
    }
    assert max(fake.max_by_account.values()) == 1  # one in-flight op per account
    assert 1 < fake.max_outstanding <= 10  # parallel (the rendezvous proves it), but bounded
    assert [r.key for r in results] == [op.key for op in ops]  # results in plan order


def test_assignment_concurrency_config_respected(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn) for a in accounts(12)]
    cfg = SyncConfig(assignment_concurrency=3)
    apply_assignments(
        FakeClients(fake), Plan(operations=ops), observed(fake), cfg, ps_arns={"Dev": arn}, options=opts
    )
    assert fake.max_outstanding <= 3


def test_provisioning_concurrency_bounds(fake: FakeSso, opts: ApplyOptions) -> None:
    arns = {f"PS{i}": fake.seed_ps(f"PS{i}") for i in range(4)}
    ops = [
        ProvisionOp(
            key=f"provision:{name}:{acc}",
            kind=OpKind.PROVISION_PERMISSION_SET,
            permission_set_name=name,
            permission_set_arn=arn,
            account_id=acc,
        )
        for name, arn in arns.items()
        for acc in accounts(5)
    ]
    fake.meet(2)
    results = apply_permission_sets(
        FakeClients(fake), Plan(operations=ops), observed(fake), SyncConfig(), options=opts
    )
    assert count_by_status(results)["succeeded"] == 20
    assert fake.max_provision <= 3
    assert max(fake.max_by_account.values()) == 1
    assert fake.max_provision > 1


# --------------------------------------------------------------------------- safety
def test_management_account_refused_locally(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    ops = [
        asg(OpKind.CREATE_ASSIGNMENT, MGMT, arn=arn),
        asg(OpKind.DELETE_ASSIGNMENT, MGMT, arn=arn),
        asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn),
    ]
    prov = ProvisionOp(
        key="provision:Dev:mgmt",
        kind=OpKind.PROVISION_PERMISSION_SET,
        permission_set_name="Dev",
        permission_set_arn=arn,
        account_id=MGMT,
    )
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    results += apply_permission_sets(
        FakeClients(fake), Plan(operations=[prov]), observed(fake), SyncConfig(), options=opts
    )
    assert [r.status for r in results] == ["failed", "failed", "succeeded", "failed"]
    for r in (results[0], results[1], results[3]):
        assert r.message.startswith("refused: management account")
    assert not any(p.get("TargetId") == MGMT for _, p in fake.calls)


def test_unmanaged_permission_set_is_read_only(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("ControlTower", managed=False)
    spec = PermissionSetSpec(name="ControlTower", managed_policies=[ADMIN])
    ops = [
        PermissionSetOp(
            key="update:ControlTower",
            kind=OpKind.UPDATE_PERMISSION_SET,
            permission_set_name="ControlTower",
            permission_set_arn=arn,
            spec=spec,
        ),
    ]
    results = apply_permission_sets(
        FakeClients(fake), Plan(operations=ops), observed(fake), SyncConfig(), options=opts
    )
    assert results[0].status == "failed" and "not managed by idc-sync" in results[0].message
    asg_ops = [asg(OpKind.DELETE_ASSIGNMENT, "200000000001", ps="ControlTower", arn=arn)]
    del_ops = [
        PermissionSetOp(
            key="delete:ControlTower",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="ControlTower",
            permission_set_arn=arn,
        )
    ]
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=asg_ops + del_ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"ControlTower": arn},
        options=opts,
    )
    assert [r.status for r in results] == ["failed", "skipped"]  # the set keeps an assignment: not deleted
    assert "refused" in results[0].message
    [res] = apply_permission_set_deletions(
        FakeClients(fake), Plan(operations=del_ops), observed(fake), SyncConfig(), options=opts
    )
    assert res.status == "failed" and "not managed by idc-sync" in res.message
    mutating = {name for name, _ in fake.calls if not name.startswith(("List", "Describe", "Get"))}
    assert mutating == set()


def test_permission_set_provisioned_to_management_is_refused(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    obs = observed(fake, provisioned={"Dev": [MGMT, "200000000001"]})
    spec = PermissionSetSpec(name="Dev", session_duration="PT4H")
    ops = [
        PermissionSetOp(
            key="update:Dev",
            kind=OpKind.UPDATE_PERMISSION_SET,
            permission_set_name="Dev",
            permission_set_arn=arn,
            spec=spec,
        )
    ]
    [res] = apply_permission_sets(FakeClients(fake), Plan(operations=ops), obs, SyncConfig(), options=opts)
    assert res.status == "failed"
    assert "provisioned to the management account" in res.message
    assert fake.count("UpdatePermissionSet") == 0


# --------------------------------------------------------------------------- idempotency
def test_create_permission_set_full_definition(fake: FakeSso, opts: ApplyOptions) -> None:
    spec = PermissionSetSpec(
        name="Dev",
        description="developers",
        session_duration="PT4H",
        managed_policies=[RO, VIEW],
        customer_managed_policies=[CustomerPolicyRef(name="TeamPolicy", path="/teams/")],
        inline_policy='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}',
        permissions_boundary=PermissionsBoundary(managed_policy_arn=RO),
    )
    plan = Plan(
        operations=[
            PermissionSetOp(
                key="create:Dev", kind=OpKind.CREATE_PERMISSION_SET, permission_set_name="Dev", spec=spec
            )
        ]
    )
    [res] = apply_permission_sets(FakeClients(fake), plan, observed(), SyncConfig(), options=opts)
    assert res.status == "succeeded", res.message
    assert res.permission_set_arn in fake.permission_sets
    ps = fake.permission_sets[res.permission_set_arn]
    assert ps["tags"] == {"managed-by": "idc-sync"}
    assert ps["managed"] == {RO, VIEW}
    assert ps["customer"] == {("TeamPolicy", "/teams/")}
    assert ps["inline"] == spec.inline_policy  # the requester's own text
    assert ps["boundary"] == {"ManagedPolicyArn": RO}
    create_params = next(p for n, p in fake.calls if n == "CreatePermissionSet")
    assert create_params["Tags"] == [{"Key": "managed-by", "Value": "idc-sync"}]
    assert create_params["SessionDuration"] == "PT4H"
    assert permission_set_arns(plan, observed(), [res]) == {"Dev": res.permission_set_arn}


def test_create_permission_set_rerun_adopts_tagged_duplicate(fake: FakeSso, opts: ApplyOptions) -> None:
    # An earlier attempt created the set and attached one policy, then died: the snapshot is older.
    arn = fake.seed_ps("Dev", managed_policies=[RO])
    spec = PermissionSetSpec(name="Dev", managed_policies=[RO, VIEW])
    plan = Plan(
        operations=[
            PermissionSetOp(
                key="create:Dev", kind=OpKind.CREATE_PERMISSION_SET, permission_set_name="Dev", spec=spec
            )
        ]
    )
    [res] = apply_permission_sets(FakeClients(fake), plan, observed(), SyncConfig(), options=opts)
    assert res.status == "succeeded", res.message
    assert res.permission_set_arn == arn
    assert "already existed" in res.message
    assert fake.permission_sets[arn]["managed"] == {RO, VIEW}
    assert len(fake.permission_sets) == 1
    assert fake.count("AttachManagedPolicyToPermissionSet") == 1  # only the missing one


def test_create_permission_set_duplicate_not_owned_fails(fake: FakeSso, opts: ApplyOptions) -> None:
    fake.seed_ps("Dev", managed=False)
    spec = PermissionSetSpec(name="Dev", managed_policies=[RO])
    plan = Plan(
        operations=[
            PermissionSetOp(
                key="create:Dev", kind=OpKind.CREATE_PERMISSION_SET, permission_set_name="Dev", spec=spec
            )
        ]
    )
    [res] = apply_permission_sets(FakeClients(fake), plan, observed(), SyncConfig(), options=opts)
    assert res.status == "failed"
    assert "already exists and is not managed by idc-sync" in res.message
    assert res.permission_set_arn is None
    assert fake.count("AttachManagedPolicyToPermissionSet") == 0


def test_create_permission_set_transient_conflict_retried(fake: FakeSso, opts: ApplyOptions) -> None:
    fake.errors["CreatePermissionSet"] = ["ConflictException", "ConflictException"]
    spec = PermissionSetSpec(name="Dev")
    plan = Plan(
        operations=[
            PermissionSetOp(
                key="create:Dev", kind=OpKind.CREATE_PERMISSION_SET, permission_set_name="Dev", spec=spec
            )
        ]
    )
    [res] = apply_permission_sets(FakeClients(fake), plan, observed(), SyncConfig(), options=opts)
    assert res.status == "succeeded", res.message
    assert len(fake.permission_sets) == 1


def test_attach_conflict_when_already_attached_counts_as_done(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev", managed_policies=[RO])
    obs = observed(fake)
    obs.permission_sets["Dev"].managed_policies = []  # stale snapshot: the attach happened after it
    spec = PermissionSetSpec(name="Dev", managed_policies=[RO])
    plan = Plan(
        operations=[
            PermissionSetOp(
                key="update:Dev",
                kind=OpKind.UPDATE_PERMISSION_SET,
                permission_set_name="Dev",
                permission_set_arn=arn,
                spec=spec,
            )
        ]
    )
    [res] = apply_permission_sets(FakeClients(fake), plan, obs, SyncConfig(), options=opts)
    assert res.status == "succeeded", res.message
    assert res.attempts == 1
    assert fake.count("AttachManagedPolicyToPermissionSet") == 1


def test_update_computes_the_diff(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps(
        "Dev",
        Description="old",
        managed_policies=[RO, ADMIN],
        customer=[("Old", "/")],
        inline='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        boundary={"ManagedPolicyArn": RO},
    )
    spec = PermissionSetSpec(
        name="Dev",
        description="new",
        session_duration="PT2H",
        managed_policies=[RO, VIEW],
        customer_managed_policies=[CustomerPolicyRef(name="New", path="/x/")],
        inline_policy=None,
        permissions_boundary=None,
    )
    obs = observed(fake)
    obs.permission_sets["Dev"].permissions_boundary = PermissionsBoundary(managed_policy_arn=RO)
    plan = Plan(
        operations=[
            PermissionSetOp(
                key="update:Dev",
                kind=OpKind.UPDATE_PERMISSION_SET,
                permission_set_name="Dev",
                permission_set_arn=arn,
                spec=spec,
            )
        ]
    )
    [res] = apply_permission_sets(FakeClients(fake), plan, obs, SyncConfig(), options=opts)
    assert res.status == "succeeded", res.message
    ps = fake.permission_sets[arn]
    assert (ps["Description"], ps["SessionDuration"]) == ("new", "PT2H")
    assert ps["managed"] == {RO, VIEW}
    assert ps["customer"] == {("New", "/x/")}
    assert ps["inline"] is None and ps["boundary"] is None
    names = [n for n, _ in fake.calls]
    assert names.index("DetachManagedPolicyFromPermissionSet") < names.index(
        "AttachManagedPolicyToPermissionSet"
    )


def test_update_same_inline_policy_reformatted_is_not_rewritten(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps(
        "Dev",
        inline='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
    )
    spec = PermissionSetSpec(
        name="Dev",
        session_duration="PT2H",
        inline_policy='{\n  "Statement": {"Resource": "*", "Action": ["s3:*"], "Effect": "Allow"},\n  "Version": "2012-10-17"\n}',
    )
    plan = Plan(
        operations=[
            PermissionSetOp(
                key="update:Dev",
                kind=OpKind.UPDATE_PERMISSION_SET,
                permission_set_name="Dev",
                permission_set_arn=arn,
                spec=spec,
            )
        ]
    )
    [res] = apply_permission_sets(FakeClients(fake), plan, observed(fake), SyncConfig(), options=opts)
    assert res.status == "succeeded"
    assert fake.count("PutInlinePolicyToPermissionSet") == 0


def test_rerun_converges_without_duplicates(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn) for a in accounts(5)]
    fake.fail_accounts["200000000003"] = "Received a 403 status error"
    first = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert count_by_status(first) == {
        "succeeded": 4,
        "already_in_place": 0,
        "failed": 1,
        "skipped": 0,
        "deferred": 0,
    }
    fake.fail_accounts.clear()
    again = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert count_by_status(again) == {
        "succeeded": 5,
        "already_in_place": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
    }
    assert len(fake.assignments) == 5


def test_delete_assignment_already_gone_is_already_in_place(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    fake.assignments.add(("200000000001", arn, "USER", "u-alice"))
    ops = [
        asg(OpKind.DELETE_ASSIGNMENT, "200000000001", arn=arn),
        asg(OpKind.DELETE_ASSIGNMENT, "200000000002", arn=arn),
    ]
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert [(r.status, r.message) for r in results] == [
        ("succeeded", "removed"),
        ("already_in_place", "already gone"),  # a no-op is not counted as a change (issue 9, defect 10)
    ]
    assert fake.assignments == set()


def test_assignments_of_a_failed_create_are_skipped(fake: FakeSso, opts: ApplyOptions) -> None:
    fake.always["CreatePermissionSet"] = "ServiceQuotaExceededException"
    spec = PermissionSetSpec(name="New")
    ops = [
        PermissionSetOp(
            key="create:New", kind=OpKind.CREATE_PERMISSION_SET, permission_set_name="New", spec=spec
        ),
        ProvisionOp(key="provision:New:all", kind=OpKind.PROVISION_PERMISSION_SET, permission_set_name="New"),
        asg(OpKind.CREATE_ASSIGNMENT, "200000000001", ps="New"),
    ]
    plan = Plan(operations=ops)
    obs = observed(fake)
    ps_results = apply_permission_sets(FakeClients(fake), plan, obs, SyncConfig(), options=opts)
    assert [r.status for r in ps_results] == ["failed", "skipped"]
    assert "quota" in ps_results[0].message
    arns = permission_set_arns(plan, obs, ps_results)
    [res] = apply_assignments(FakeClients(fake), plan, obs, SyncConfig(), ps_arns=arns, options=opts)
    assert res.status == "skipped" and "does not exist yet" in res.message
    assert fake.count("CreateAccountAssignment") == 0


def test_created_permission_set_arn_reaches_assignments(fake: FakeSso, opts: ApplyOptions) -> None:
    spec = PermissionSetSpec(name="New", managed_policies=[RO])
    ops = [
        PermissionSetOp(
            key="create:New", kind=OpKind.CREATE_PERMISSION_SET, permission_set_name="New", spec=spec
        ),
        asg(OpKind.CREATE_ASSIGNMENT, "200000000001", ps="New"),
    ]
    plan = Plan(operations=ops)
    obs = observed(fake)
    ps_results = apply_permission_sets(FakeClients(fake), plan, obs, SyncConfig(), options=opts)
    arns = permission_set_arns(plan, obs, ps_results)
    [res] = apply_assignments(FakeClients(fake), plan, obs, SyncConfig(), ps_arns=arns, options=opts)
    assert res.status == "succeeded"
    assert res.permission_set_arn == arns["New"]


# --------------------------------------------------------------------------- permission set deletion order
def test_permission_set_deleted_after_its_assignments(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Old")
    for a in accounts(3):
        fake.assignments.add((a, arn, "USER", "u-alice"))
    ops = [
        PermissionSetOp(
            key="delete:Old",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="Old",
            permission_set_arn=arn,
        )
    ]
    ops = [asg(OpKind.DELETE_ASSIGNMENT, a, ps="Old", arn=arn) for a in accounts(3)] + ops
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Old": arn},
        options=opts,
    )
    assert [r.status for r in results] == ["succeeded"] * 4
    assert results[-1].kind == OpKind.DELETE_PERMISSION_SET and results[-1].message == "deleted"
    names = [n for n, _ in fake.calls]
    assert names.index("DeletePermissionSet") > max(
        i for i, n in enumerate(names) if n.endswith("AssignmentDeletionStatus")
    )
    assert fake.permission_sets == {}


def test_permission_set_deletion_skipped_when_assignment_deletion_failed(
    fake: FakeSso, opts: ApplyOptions
) -> None:
    arn = fake.seed_ps("Old")
    for a in accounts(2):
        fake.assignments.add((a, arn, "USER", "u-alice"))
    fake.fail_accounts["200000000001"] = "Received a 403 status error"
    ops = [asg(OpKind.DELETE_ASSIGNMENT, a, ps="Old", arn=arn) for a in accounts(2)]
    ops.append(
        PermissionSetOp(
            key="delete:Old",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="Old",
            permission_set_arn=arn,
        )
    )
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Old": arn},
        options=opts,
    )
    assert [r.status for r in results] == ["succeeded", "failed", "skipped"]
    assert fake.count("DeletePermissionSet") == 0


def test_permission_set_deletion_idempotent(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Old")
    obs = observed(fake)
    del fake.permission_sets[arn]  # deleted by an earlier attempt
    ops = [
        PermissionSetOp(
            key="delete:Old",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="Old",
            permission_set_arn=arn,
        )
    ]
    [res] = apply_permission_set_deletions(
        FakeClients(fake), Plan(operations=ops), obs, SyncConfig(), options=opts
    )
    assert (res.status, res.message) == ("already_in_place", "already gone")


def test_apply_permission_sets_ignores_deletions(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Old")
    ops = [
        PermissionSetOp(
            key="delete:Old",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="Old",
            permission_set_arn=arn,
        )
    ]
    assert (
        apply_permission_sets(
            FakeClients(fake), Plan(operations=ops), observed(fake), SyncConfig(), options=opts
        )
        == []
    )
    assert fake.count("DeletePermissionSet") == 0


# --------------------------------------------------------------------------- provisioning and logging
def test_provision_all_accounts_and_skip_after_failed_update(fake: FakeSso, opts: ApplyOptions) -> None:
    a = fake.seed_ps("A")
    b = fake.seed_ps("B")
    fake.errors["UpdatePermissionSet"] = ["ValidationException"]
    ops = [
        PermissionSetOp(
            key="update:A",
            kind=OpKind.UPDATE_PERMISSION_SET,
            permission_set_name="A",
            permission_set_arn=a,
            spec=PermissionSetSpec(name="A", session_duration="PT2H"),
        ),
        ProvisionOp(
            key="provision:A",
            kind=OpKind.PROVISION_PERMISSION_SET,
            permission_set_name="A",
            permission_set_arn=a,
        ),
        ProvisionOp(
            key="provision:B",
            kind=OpKind.PROVISION_PERMISSION_SET,
            permission_set_name="B",
            permission_set_arn=b,
        ),
    ]
    results = apply_permission_sets(
        FakeClients(fake), Plan(operations=ops), observed(fake), SyncConfig(), options=opts
    )
    assert [(r.key, r.status) for r in results] == [
        ("update:A", "failed"),
        ("provision:A", "skipped"),
        ("provision:B", "succeeded"),
    ]
    [(_, params)] = [(n, p) for n, p in fake.calls if n == "ProvisionPermissionSet"]
    assert params["TargetType"] == "ALL_PROVISIONED_ACCOUNTS" and "TargetId" not in params


def test_progress_logging(fake: FakeSso, ft: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    arn = fake.seed_ps("Dev")
    opts = ApplyOptions(
        sleep=ft.sleep, clock=ft.clock, rng=random.Random(1), progress_every=5, progress_seconds=1e9
    )
    fake.fail_accounts["200000000004"] = "nope"
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn) for a in accounts(12)]
    log = logging.getLogger("test.apply")
    with caplog.at_level(logging.INFO, logger="test.apply"):
        apply_assignments(
            FakeClients(fake),
            Plan(operations=ops),
            observed(fake),
            SyncConfig(),
            ps_arns={"Dev": arn},
            log=log,
            options=opts,
        )
    messages = [r.getMessage() for r in caplog.records]
    progress = [m for m in messages if m.startswith("applied ")]
    assert [m.split(" (")[0] for m in progress] == [
        "applied 5/12 assignments",
        "applied 10/12 assignments",
        "applied 12/12 assignments",
    ]
    assert (
        "assignments: 11 succeeded, 0 already in place, 1 failed, 0 skipped, 0 deferred (12 operations)"
        in messages
    )


def test_progress_logging_by_time(fake: FakeSso, ft: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    arn = fake.seed_ps("Dev")
    fake.polls_in_progress = 4  # each op takes 4 polling rounds of 0.5 s of fake time
    opts = ApplyOptions(
        sleep=ft.sleep, clock=ft.clock, rng=random.Random(1), progress_every=1000, progress_seconds=1.5
    )
    ops = [asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn, user=f"u{i}") for i in range(4)]
    log = logging.getLogger("test.apply.time")
    with caplog.at_level(logging.INFO, logger="test.apply.time"):
        apply_assignments(
            FakeClients(fake),
            Plan(operations=ops),
            observed(fake),
            SyncConfig(),
            ps_arns={"Dev": arn},
            log=log,
            options=opts,
        )
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("applied ")]
    assert len(progress) == 4  # every op took > 1.5 s of fake time


def test_progress_every_tenth_with_thousands_separators(
    ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    from idc_sync.apply import _Progress
    from idc_sync.model import OpResult

    log = logging.getLogger("test.apply.progress")
    progress = _Progress(12_000, "assignments", log, ApplyOptions(clock=ft.clock, progress_seconds=1e9))
    with caplog.at_level(logging.INFO, logger="test.apply.progress"):
        for i in range(3_000):
            progress.add(OpResult(key=f"k{i}", kind=OpKind.CREATE_ASSIGNMENT, status="succeeded"))
        for i in range(9_000):
            progress.defer(OpResult(key=f"d{i}", kind=OpKind.CREATE_ASSIGNMENT, status="deferred"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "applied 1,200/12,000 assignments (0 failed so far)",
        "applied 2,400/12,000 assignments (0 failed so far)",
    ]  # every 10%; a deferred operation is no progress
    assert progress.summary() == (
        "assignments: 3,000 succeeded, 0 already in place, 0 failed, 0 skipped, 9,000 deferred "
        "(12,000 operations)"
    )


def test_results_are_json_serialisable(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    ops = [asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)]
    [res] = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    dumped = res.model_dump(mode="json")
    assert dumped["kind"] == "create_assignment" and dumped["status"] == "succeeded"


def test_half_created_permission_set_is_not_assigned(fake: FakeSso, opts: ApplyOptions) -> None:
    fake.always["PutPermissionsBoundaryToPermissionSet"] = "AccessDeniedException"
    spec = PermissionSetSpec(name="New", permissions_boundary=PermissionsBoundary(managed_policy_arn=RO))
    ops = [
        PermissionSetOp(
            key="create_permission_set:New",
            kind=OpKind.CREATE_PERMISSION_SET,
            permission_set_name="New",
            spec=spec,
        ),
        asg(OpKind.CREATE_ASSIGNMENT, "200000000001", ps="New"),
    ]
    plan = Plan(operations=ops)
    obs = observed(fake)
    [created] = apply_permission_sets(FakeClients(fake), plan, obs, SyncConfig(), options=opts)
    assert created.status == "failed" and created.permission_set_arn is None
    assert "definition is incomplete" in created.message and len(fake.permission_sets) == 1
    [res] = apply_assignments(
        FakeClients(fake),
        plan,
        obs,
        SyncConfig(),
        ps_arns=permission_set_arns(plan, obs, [created]),
        options=opts,
    )
    assert res.status == "skipped"


# --------------------------------------------------------------------------- order, time budget, retry layers
def rec(day: int, record_id: str = "1") -> RecordRef:
    return RecordRef(
        app="assignments",
        app_id="2",
        record_id=record_id,
        updated_at=dt.datetime(2026, 1, day, 9, 0, tzinfo=dt.UTC),
    )


def with_records(op: AssignmentOp, *refs: RecordRef, depends_on: list[str] | None = None) -> AssignmentOp:
    return op.model_copy(update={"records": list(refs), "depends_on": depends_on or []})


def test_order_revocations_then_newest_record_first_then_the_rest() -> None:
    old = with_records(asg(OpKind.CREATE_ASSIGNMENT, "200000000001", user="old"), rec(1))
    new = with_records(asg(OpKind.CREATE_ASSIGNMENT, "200000000002", user="new"), rec(1), rec(20))
    mid = with_records(asg(OpKind.CREATE_ASSIGNMENT, "200000000003", user="mid"), rec(10))
    untimed = asg(OpKind.CREATE_ASSIGNMENT, "200000000004", user="untimed")
    revoke = asg(OpKind.DELETE_ASSIGNMENT, "200000000005", user="gone")  # record deleted: no records
    expired = with_records(asg(OpKind.DELETE_ASSIGNMENT, "200000000006", user="exp"), rec(2))
    ops = [old, new, mid, untimed, revoke, expired]
    order = [ops[i].key for i in order_assignment_operations(ops)]
    assert order == [revoke.key, expired.key, new.key, mid.key, old.key, untimed.key]


def test_order_keeps_dependencies_before_their_dependents() -> None:
    """A move (removal of the renamed set's access) waits for its replacement: the replacement is moved
    up to just before it, and the removal is no revocation (it has a dependency)."""
    replacement = with_records(asg(OpKind.CREATE_ASSIGNMENT, "200000000001", ps="New"), rec(1))
    move = with_records(
        asg(OpKind.DELETE_ASSIGNMENT, "200000000001", ps="Old"), rec(25), depends_on=[replacement.key]
    )
    other = with_records(asg(OpKind.CREATE_ASSIGNMENT, "200000000002", user="bob"), rec(10))
    ops = [other, move, replacement]
    order = [ops[i].key for i in order_assignment_operations(ops)]
    assert order == [replacement.key, move.key, other.key]


def test_newest_record_is_served_first_with_one_worker(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    ops = [
        with_records(asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn), rec(1 + i % 5))
        for i, a in enumerate(accounts(8))
    ]
    newest = with_records(asg(OpKind.CREATE_ASSIGNMENT, "299999999999", arn=arn), rec(28))
    plan = Plan(operations=[*ops, newest])
    results = apply_assignments(
        FakeClients(fake),
        plan,
        observed(fake),
        SyncConfig(assignment_concurrency=1),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert [r.key for r in results] == [op.key for op in plan.operations]  # results in plan order
    created = [p["TargetId"] for n, p in fake.calls if n == "CreateAccountAssignment"]
    assert created[0] == "299999999999"
    stamps = {op.account_id: op.records[0].updated_at for op in ops}
    assert [stamps[a] for a in created[1:]] == sorted((stamps[a] for a in created[1:]), reverse=True)


def test_deadline_defers_what_has_not_started(fake: FakeSso, ft: FakeTime, opts: ApplyOptions) -> None:
    """One worker, each operation takes two polling rounds (1 s of fake time): with a 2.5 s budget three
    operations start (at 0, 1 and 2 s); the others are deferred, nothing is sent for them, and they are
    no failure."""
    arn = fake.seed_ps("Dev")
    ops = [
        with_records(asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn), rec(20 - i))
        for i, a in enumerate(accounts(6))
    ]
    cfg = SyncConfig(assignment_concurrency=1, apply_budget_seconds=2.5)
    results = apply_assignments(
        FakeClients(fake), Plan(operations=ops), observed(fake), cfg, ps_arns={"Dev": arn}, options=opts
    )
    assert [r.status for r in results] == ["succeeded"] * 3 + ["deferred"] * 3  # newest first
    assert count_by_status(results) == {
        "succeeded": 3,
        "already_in_place": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 3,
    }
    for r in results[3:]:
        assert r.message.startswith("deferred to the next run") and r.attempts == 0 and not r.done
    assert fake.count("CreateAccountAssignment") == 3
    assert fake.outstanding == 0


def test_deadline_awaits_what_is_in_flight(fake: FakeSso, ft: FakeTime) -> None:
    """The deadline passes while requests are outstanding: they are followed to their end (nothing is left
    in flight unaccounted), only the operations not started are deferred."""
    arn = fake.seed_ps("Dev")
    fake.polls_in_progress = 6
    fake.meet(3)  # the first three are outstanding together
    opts = ApplyOptions(sleep=ft.sleep, clock=ft.clock, rng=random.Random(1), deadline=ft.now + 1.0)
    ops = [asg(OpKind.CREATE_ASSIGNMENT, a, arn=arn) for a in accounts(9)]
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        observed(fake),
        SyncConfig(assignment_concurrency=3),
        ps_arns={"Dev": arn},
        options=opts,
    )
    started = fake.count("CreateAccountAssignment")
    assert started >= 3
    assert count_by_status(results)["succeeded"] == started  # each one started was awaited to its end
    assert count_by_status(results)["deferred"] == 9 - started > 0
    assert ft.now - 1000.0 >= 3.0  # six 0.5 s rounds: awaited well past the 1 s budget
    assert fake.outstanding == 0 and len(fake.assignments) == started


def test_dependencies_hold_under_the_deadline(fake: FakeSso, ft: FakeTime, opts: ApplyOptions) -> None:
    """A move's removal never runs before its replacement exists; a permission set whose assignment
    removals were deferred is not deleted (deferred too); no new work starts after the deadline."""
    dev2 = fake.seed_ps("Dev2")
    old = fake.seed_ps("Old")
    fake.assignments.add(("200000000100", old, "USER", "u-alice"))
    fake.assignments.add(("200000000101", old, "USER", "u-alice"))
    replacement = with_records(asg(OpKind.CREATE_ASSIGNMENT, "200000000100", ps="Dev2", arn=dev2), rec(1))
    move = with_records(
        asg(OpKind.DELETE_ASSIGNMENT, "200000000100", ps="Old", arn=old), depends_on=[replacement.key]
    )
    newer = [
        with_records(asg(OpKind.CREATE_ASSIGNMENT, a, ps="Dev2", arn=dev2), rec(20)) for a in accounts(3)
    ]
    removal = asg(OpKind.DELETE_ASSIGNMENT, "200000000101", ps="Old", arn=old)  # a revocation: first
    delete_old = PermissionSetOp(
        key="delete_permission_set:Old",
        kind=OpKind.DELETE_PERMISSION_SET,
        permission_set_name="Old",
        permission_set_arn=old,
    )
    plan = Plan(operations=[*newer, replacement, move, removal, delete_old])
    cfg = SyncConfig(assignment_concurrency=1, apply_budget_seconds=2.5)
    results = apply_assignments(
        FakeClients(fake), plan, observed(fake), cfg, ps_arns={"Dev2": dev2, "Old": old}, options=opts
    )
    status = {r.key: r.status for r in results}
    assert status[removal.key] == "succeeded"  # the revocation went first
    assert [status[op.key] for op in newer] == ["succeeded", "succeeded", "deferred"]
    assert status[replacement.key] == "deferred" and status[move.key] == "deferred"
    assert status["delete_permission_set:Old"] == "deferred"
    assert ("200000000100", old, "USER", "u-alice") in fake.assignments  # the old access stays
    deleted = [p["TargetId"] for n, p in fake.calls if n == "DeleteAccountAssignment"]
    assert deleted == ["200000000101"]
    assert fake.count("DeletePermissionSet") == 0
    assert results[-1].kind == OpKind.DELETE_PERMISSION_SET


def test_move_runs_after_its_replacement_within_the_budget(fake: FakeSso, opts: ApplyOptions) -> None:
    dev2 = fake.seed_ps("Dev2")
    old = fake.seed_ps("Old")
    fake.assignments.add(("200000000100", old, "USER", "u-alice"))
    replacement = with_records(asg(OpKind.CREATE_ASSIGNMENT, "200000000100", ps="Dev2", arn=dev2), rec(1))
    move = with_records(
        asg(OpKind.DELETE_ASSIGNMENT, "200000000100", ps="Old", arn=old), depends_on=[replacement.key]
    )
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=[move, replacement]),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev2": dev2, "Old": old},
        options=opts,
    )
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    names = [n for n, _ in fake.calls]
    assert names.index("DeleteAccountAssignment") > names.index("CreateAccountAssignment")


def test_throttling_already_retried_by_botocore_is_not_retried_again(
    fake: FakeSso, opts: ApplyOptions
) -> None:
    """One retry layer: an error that carries botocore's retry metadata has had botocore's attempts."""
    arn = fake.seed_ps("Dev")
    throttled = ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"RequestId": "r", "RetryAttempts": 8, "MaxAttemptsReached": True},
        },
        "CreateAccountAssignment",
    )

    def create(**p: Any) -> dict[str, Any]:
        fake.calls.append(("CreateAccountAssignment", p))
        raise throttled

    fake.create_account_assignment = create  # type: ignore[method-assign]
    plan = Plan(operations=[asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)])
    [res] = apply_assignments(
        FakeClients(fake), plan, observed(fake), SyncConfig(), ps_arns={"Dev": arn}, options=opts
    )
    assert res.status == "failed" and res.attempts == 1
    assert fake.count("CreateAccountAssignment") == 1
    assert "still failing after 9 attempts" in res.message


def test_deferred_is_no_failure_in_summaries() -> None:
    from idc_sync import feedback
    from idc_sync.model import OpResult

    results = [
        OpResult(key="a", kind=OpKind.CREATE_ASSIGNMENT, status="succeeded"),
        OpResult(key="b", kind=OpKind.CREATE_ASSIGNMENT, status="deferred", attempts=0),
        OpResult(key="c", kind=OpKind.DELETE_PERMISSION_SET, status="deferred", attempts=0),
    ]
    again = [OpResult.model_validate(r.model_dump(mode="json")) for r in results]  # crosses XComs
    assert again == results and not again[1].done
    assert count_by_status(again) == {
        "succeeded": 1,
        "already_in_place": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 2,
    }
    assert feedback.summarize_results(again) == {
        "create_assignment": {"succeeded": 1, "deferred": 1},
        "delete_permission_set": {"deferred": 1},
    }
    outcome = feedback.outcome_counts(again, Plan())
    assert outcome["failed"] == 0 and outcome["applied"] == 1


def test_no_permission_set_deletion_starts_after_the_deadline(
    fake: FakeSso, ft: FakeTime, opts: ApplyOptions
) -> None:
    arn = fake.seed_ps("Old")
    ops = [
        PermissionSetOp(
            key="delete_permission_set:Old",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="Old",
            permission_set_arn=arn,
        )
    ]
    late = ApplyOptions(sleep=ft.sleep, clock=ft.clock, deadline=ft.now)  # already reached
    [res] = apply_assignments(
        FakeClients(fake), Plan(operations=ops), observed(fake), SyncConfig(), ps_arns={}, options=late
    )
    assert res.status == "deferred" and res.message.startswith("deferred to the next run")
    assert fake.count("DeletePermissionSet") == 0 and arn in fake.permission_sets


def test_a_dependency_cycle_ends_skipped_not_hung(fake: FakeSso, opts: ApplyOptions) -> None:
    arn = fake.seed_ps("Dev")
    a = asg(OpKind.CREATE_ASSIGNMENT, "200000000001", arn=arn)
    b = asg(OpKind.CREATE_ASSIGNMENT, "200000000002", arn=arn)
    a.depends_on, b.depends_on = [b.key], [a.key]
    ok = asg(OpKind.CREATE_ASSIGNMENT, "200000000003", arn=arn)
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=[a, b, ok]),
        observed(fake),
        SyncConfig(),
        ps_arns={"Dev": arn},
        options=opts,
    )
    assert [r.status for r in results] == ["skipped", "skipped", "succeeded"]
    assert fake.count("CreateAccountAssignment") == 1
