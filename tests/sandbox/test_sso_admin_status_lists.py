"""ListAccountAssignmentCreationStatus / ...DeletionStatus of the sandbox against botocore's model.

apply follows its outstanding assignment requests with these two calls (``Filter={"Status":
"IN_PROGRESS"}``), so the sandbox must answer them as the model says: items with exactly Status, RequestId
and CreatedDate (no FailureReason: that is Describe's), the status filter, MaxResults/NextToken paging, and
creation and deletion requests listed apart. Time is a ManualClock: requests end when a test advances it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from idc_sandbox.aws_sso_admin import add_assignment_direct, create_permission_set_direct
from idc_sandbox.core import FaultRule, ManualClock, Sandbox
from idc_sandbox.state import Account, User

ACCOUNTS = [f"60000000000{i}" for i in range(4)]
USER = str(uuid.UUID(int=7))


@pytest.fixture
def clock(sandbox: Sandbox) -> ManualClock:
    manual = ManualClock()
    sandbox.clock = manual
    sandbox.config.async_latency_seconds = 1.0
    sandbox.config.rate_limits["sso-admin"] = 0
    org = sandbox.world.organization
    for i, acc in enumerate(ACCOUNTS):
        org.accounts[acc] = Account(acc, f"m{i}", f"m{i}@example.com", org.root_id)
    sandbox.world.identity_store.users[USER] = User(USER, "alice", "Alice")
    return manual


@pytest.fixture
def sso(clock: ManualClock, aws_client: Callable[..., Any]) -> Any:
    return aws_client("sso-admin", max_attempts=0)


def metadata_members() -> set[str]:
    model = botocore.session.get_session().get_service_model("sso-admin")
    return set(model.shape_for("AccountAssignmentOperationStatusMetadata").members)


def start(sso: Any, sandbox: Sandbox, arn: str, account: str, *, delete: bool = False) -> str:
    params = {
        "InstanceArn": sandbox.world.identity_center.instance_arn,
        "TargetId": account,
        "TargetType": "AWS_ACCOUNT",
        "PermissionSetArn": arn,
        "PrincipalType": "USER",
        "PrincipalId": USER,
    }
    if delete:
        return str(sso.delete_account_assignment(**params)["AccountAssignmentDeletionStatus"]["RequestId"])
    return str(sso.create_account_assignment(**params)["AccountAssignmentCreationStatus"]["RequestId"])


def listed(sso: Any, inst: str, kind: str = "Creation", **kwargs: Any) -> list[dict[str, Any]]:
    op = getattr(sso, f"list_account_assignment_{kind.lower()}_status")
    return list(op(InstanceArn=inst, **kwargs)[f"AccountAssignments{kind}Status"])


def test_items_have_the_model_fields_and_the_filter_follows_the_status(
    sandbox: Sandbox, clock: ManualClock, sso: Any
) -> None:
    inst = sandbox.world.identity_center.instance_arn
    arn = create_permission_set_direct(sandbox, "Dev", tags={"managed-by": "idc-sync"})
    ids = [start(sso, sandbox, arn, acc) for acc in ACCOUNTS[:3]]

    items = listed(sso, inst)
    assert sorted(i["RequestId"] for i in items) == sorted(ids)
    assert all(set(i) == metadata_members() == {"Status", "RequestId", "CreatedDate"} for i in items)
    assert all(isinstance(i["CreatedDate"], dt.datetime) for i in items)
    running = listed(sso, inst, Filter={"Status": "IN_PROGRESS"})
    assert sorted(i["RequestId"] for i in running) == sorted(ids)
    assert listed(sso, inst, Filter={"Status": "SUCCEEDED"}) == []

    clock.advance(1.0)
    assert listed(sso, inst, Filter={"Status": "IN_PROGRESS"}) == []
    done = listed(sso, inst, Filter={"Status": "SUCCEEDED"})
    assert sorted(i["RequestId"] for i in done) == sorted(ids)
    assert {i["Status"] for i in listed(sso, inst)} == {"SUCCEEDED"}


def test_creations_and_deletions_are_listed_apart_and_failed_has_no_reason_in_the_list(
    sandbox: Sandbox, clock: ManualClock, sso: Any
) -> None:
    inst = sandbox.world.identity_center.instance_arn
    arn = create_permission_set_direct(sandbox, "Dev", tags={"managed-by": "idc-sync"})
    add_assignment_direct(sandbox, ACCOUNTS[3], arn, "USER", USER)
    sandbox.faults.add(
        FaultRule(service="sso-admin", kind="async_failed", operation="CreateAccountAssignment", count=1)
    )
    failing = start(sso, sandbox, arn, ACCOUNTS[0])
    removal = start(sso, sandbox, arn, ACCOUNTS[3], delete=True)
    assert [i["RequestId"] for i in listed(sso, inst)] == [failing]
    assert [i["RequestId"] for i in listed(sso, inst, "Deletion")] == [removal]

    clock.advance(1.0)
    [failed] = listed(sso, inst, Filter={"Status": "FAILED"})
    assert failed["RequestId"] == failing and "FailureReason" not in failed
    described = sso.describe_account_assignment_creation_status(
        InstanceArn=inst, AccountAssignmentCreationRequestId=failing
    )["AccountAssignmentCreationStatus"]
    assert described["Status"] == "FAILED" and described["FailureReason"]
    assert [i["Status"] for i in listed(sso, inst, "Deletion")] == ["SUCCEEDED"]


def test_paging_and_bounds(sandbox: Sandbox, clock: ManualClock, sso: Any) -> None:
    inst = sandbox.world.identity_center.instance_arn
    arn = create_permission_set_direct(sandbox, "Dev", tags={"managed-by": "idc-sync"})
    ids = [start(sso, sandbox, arn, acc) for acc in ACCOUNTS]
    first = sso.list_account_assignment_creation_status(InstanceArn=inst, MaxResults=1)
    assert len(first["AccountAssignmentsCreationStatus"]) == 1 and first["NextToken"]
    pages = sso.get_paginator("list_account_assignment_creation_status").paginate(
        InstanceArn=inst, Filter={"Status": "IN_PROGRESS"}, PaginationConfig={"PageSize": 3}
    )
    seen = [i["RequestId"] for page in pages for i in page["AccountAssignmentsCreationStatus"]]
    assert sorted(seen) == sorted(ids)
    for bad in ({"MaxResults": 101}, {"Filter": {"Status": "DONE"}}):
        with pytest.raises(ClientError) as exc:
            sso.list_account_assignment_creation_status(InstanceArn=inst, **bad)
        assert exc.value.response["Error"]["Code"] == "ValidationException"
