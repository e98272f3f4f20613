"""The sandbox's sso-admin through an unmodified boto3 client (and raw HTTP for requests boto3 refuses)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from idc_sandbox import aws_sso_admin
from idc_sandbox.core import FaultRule, ManualClock, Sandbox
from idc_sandbox.state import Account, Assignment, Group, User

MGMT = "111111111111"
OWNER = "222222222222"  # delegated administrator
MEMBERS = [f"{n:012d}" for n in range(333333333333, 333333333333 + 12)]  # 12 member accounts
A1, A2, A3 = MEMBERS[0], MEMBERS[1], MEMBERS[2]
SUSPENDED = "999999999999"
USER1 = "9067a1b2c3-11111111-2222-3333-4444-555555555555"
USER2 = "9067a1b2c3-22222222-2222-3333-4444-555555555555"
GROUP1 = "9067a1b2c3-33333333-2222-3333-4444-555555555555"
UNKNOWN_PRINCIPAL = "9067a1b2c3-44444444-2222-3333-4444-555555555555"
READONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
VIEWONLY = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
    }
)
PS_ARN_RE = re.compile(r"arn:aws:sso:::permissionSet/ssoins-[0-9a-f]{16}/ps-[0-9a-f]{16}")
TARGET = {"TargetType": "AWS_ACCOUNT"}


class _Current:
    """The sandbox of the running test, for :func:`wait` (which advances its clock)."""

    sandbox: Sandbox | None = None


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    """A small organization: management account, delegated admin, 12 members, one suspended account.

    Time is a :class:`ManualClock`: an async request stays IN_PROGRESS until a test (or :func:`wait`)
    advances it past ``async_latency_seconds``, however slow the machine.
    """
    sandbox.clock = ManualClock()
    _Current.sandbox = sandbox
    sandbox.config.async_latency_seconds = 0.05
    sandbox.config.rate_limits["sso-admin"] = 0  # unlimited, except in the throttling test
    org = sandbox.world.organization
    org.management_account_id = MGMT
    for i, acct in enumerate([MGMT, OWNER, *MEMBERS]):
        org.accounts[acct] = Account(acct, f"acct-{i}", f"aws+{i}@example.com", org.root_id)
    org.accounts[SUSPENDED] = Account(SUSPENDED, "gone", "gone@example.com", org.root_id, state="SUSPENDED")
    sandbox.world.identity_center.owner_account_id = OWNER
    store = sandbox.world.identity_store
    store.users[USER1] = User(USER1, "alice@example.com", "Alice")
    store.users[USER2] = User(USER2, "bob@example.com", "Bob")
    store.groups[GROUP1] = Group(GROUP1, "Developers")
    return sandbox


@pytest.fixture
def sso(sb: Sandbox, aws_client: Callable[..., Any]) -> Any:
    # max_attempts=0: no retries at all (botocore counts retries, so the fixture default of 1 retries once)
    return aws_client("sso-admin", max_attempts=0)


@pytest.fixture
def inst(sb: Sandbox) -> str:
    return sb.world.identity_center.instance_arn


@pytest.fixture
def raw(sandbox_url: str) -> Callable[..., requests.Response]:
    def post(operation: str, body: Any = None, *, data: bytes | None = None) -> requests.Response:
        payload = data if data is not None else json.dumps(body if body is not None else {}).encode()
        return requests.post(
            sandbox_url + "/",
            data=payload,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"SWBExternalService.{operation}",
            },
            timeout=10,
        )

    return post


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    resp = exc.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Message"]


def make_ps(sso: Any, inst: str, name: str = "ReadOnly", **kwargs: Any) -> str:
    return str(
        sso.create_permission_set(InstanceArn=inst, Name=name, **kwargs)["PermissionSet"]["PermissionSetArn"]
    )


def wait(sso: Any, inst: str, kind: str, request_id: str) -> dict[str, Any]:
    """Poll the matching Describe...Status; while IN_PROGRESS, let the async latency pass on the sandbox's
    clock. One latency must be enough for the request to reach its terminal state."""
    sandbox = _Current.sandbox
    assert sandbox is not None and isinstance(sandbox.clock, ManualClock)
    for _poll in range(2):
        if kind == "create":
            status = sso.describe_account_assignment_creation_status(
                InstanceArn=inst, AccountAssignmentCreationRequestId=request_id
            )["AccountAssignmentCreationStatus"]
        elif kind == "delete":
            status = sso.describe_account_assignment_deletion_status(
                InstanceArn=inst, AccountAssignmentDeletionRequestId=request_id
            )["AccountAssignmentDeletionStatus"]
        else:
            status = sso.describe_permission_set_provisioning_status(
                InstanceArn=inst, ProvisionPermissionSetRequestId=request_id
            )["PermissionSetProvisioningStatus"]
        if status["Status"] != "IN_PROGRESS":
            return dict(status)
        sandbox.clock.advance(sandbox.config.async_latency_seconds)
    raise AssertionError(f"{kind} request {request_id} still IN_PROGRESS after its latency")


def assign(
    sso: Any, inst: str, ps: str, account: str, principal: str = USER1, ptype: str = "USER"
) -> dict[str, Any]:
    status = sso.create_account_assignment(
        InstanceArn=inst,
        PermissionSetArn=ps,
        TargetId=account,
        PrincipalId=principal,
        PrincipalType=ptype,
        **TARGET,
    )["AccountAssignmentCreationStatus"]
    return wait(sso, inst, "create", status["RequestId"])


def unassign(
    sso: Any, inst: str, ps: str, account: str, principal: str = USER1, ptype: str = "USER"
) -> dict[str, Any]:
    status = sso.delete_account_assignment(
        InstanceArn=inst,
        PermissionSetArn=ps,
        TargetId=account,
        PrincipalId=principal,
        PrincipalType=ptype,
        **TARGET,
    )["AccountAssignmentDeletionStatus"]
    return wait(sso, inst, "delete", status["RequestId"])


def provision(sso: Any, inst: str, ps: str, account: str | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = (
        {"TargetType": "AWS_ACCOUNT", "TargetId": account}
        if account
        else {"TargetType": "ALL_PROVISIONED_ACCOUNTS"}
    )
    status = sso.provision_permission_set(InstanceArn=inst, PermissionSetArn=ps, **kwargs)
    return wait(sso, inst, "provision", status["PermissionSetProvisioningStatus"]["RequestId"])


def provisioned_to(sso: Any, inst: str, account: str, status: str | None = None) -> list[str]:
    kwargs = {"ProvisioningStatus": status} if status else {}
    pages = sso.get_paginator("list_permission_sets_provisioned_to_account").paginate(
        InstanceArn=inst, AccountId=account, **kwargs
    )
    return [arn for page in pages for arn in page["PermissionSets"]]


def accounts_for(sso: Any, inst: str, ps: str, status: str | None = None) -> list[str]:
    kwargs = {"ProvisioningStatus": status} if status else {}
    resp = sso.list_accounts_for_provisioned_permission_set(InstanceArn=inst, PermissionSetArn=ps, **kwargs)
    return list(resp["AccountIds"])


# =========================================================================== instance and permission sets
def test_list_instances_reports_the_delegated_admin_instance(sso: Any, sb: Sandbox) -> None:
    instances = sso.list_instances()["Instances"]
    assert len(instances) == 1
    inst = instances[0]
    assert re.fullmatch(r"arn:aws:sso:::instance/ssoins-[0-9a-f]{16}", inst["InstanceArn"])
    assert inst["OwnerAccountId"] == OWNER
    assert inst["IdentityStoreId"] == sb.world.identity_store.id
    assert inst["Status"] == "ACTIVE"


def test_create_describe_update_permission_set(sso: Any, inst: str) -> None:
    created = sso.create_permission_set(
        InstanceArn=inst,
        Name="Admin.Ops@team",
        Description="Operators",
        SessionDuration="PT8H",
        RelayState="https://console.aws.amazon.com/ec2/",
        Tags=[{"Key": "managed-by", "Value": "idc-sync"}],
    )["PermissionSet"]
    arn = created["PermissionSetArn"]
    assert PS_ARN_RE.fullmatch(arn)
    assert arn.split("/")[1] == inst.rsplit("/", 1)[1]
    described = sso.describe_permission_set(InstanceArn=inst, PermissionSetArn=arn)["PermissionSet"]
    assert described["Name"] == "Admin.Ops@team"
    assert described["Description"] == "Operators"
    assert described["SessionDuration"] == "PT8H"
    assert described["RelayState"] == "https://console.aws.amazon.com/ec2/"
    assert described["CreatedDate"].year >= 2024  # epoch seconds parsed by botocore into a datetime
    sso.update_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, SessionDuration="PT2H", Description="New"
    )
    described = sso.describe_permission_set(InstanceArn=inst, PermissionSetArn=arn)["PermissionSet"]
    assert (described["SessionDuration"], described["Description"]) == ("PT2H", "New")
    tags = sso.list_tags_for_resource(InstanceArn=inst, ResourceArn=arn)["Tags"]
    assert tags == [{"Key": "managed-by", "Value": "idc-sync"}]


def test_default_session_duration_is_one_hour(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    described = sso.describe_permission_set(InstanceArn=inst, PermissionSetArn=arn)["PermissionSet"]
    assert described["SessionDuration"] == "PT1H"
    assert "Description" not in described


def test_list_permission_sets_paginates(sso: Any, inst: str) -> None:
    arns = [make_ps(sso, inst, f"PS{i:02d}") for i in range(25)]
    first = sso.list_permission_sets(InstanceArn=inst, MaxResults=10)
    assert len(first["PermissionSets"]) == 10 and first["NextToken"]
    pages = list(
        sso.get_paginator("list_permission_sets").paginate(
            InstanceArn=inst, PaginationConfig={"PageSize": 10}
        )
    )
    assert [len(p["PermissionSets"]) for p in pages] == [10, 10, 5]
    assert "NextToken" not in pages[-1]
    assert [a for p in pages for a in p["PermissionSets"]] == arns


@pytest.mark.parametrize("max_results", [101, 1000])
def test_max_results_above_model_bound_is_validation_error(sso: Any, inst: str, max_results: int) -> None:
    with pytest.raises(ClientError) as exc:
        sso.list_permission_sets(InstanceArn=inst, MaxResults=max_results)
    code, status, message = error(exc)
    assert (code, status) == ("ValidationException", 400)
    assert (
        "at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100"
        in message
    )


def test_bad_next_token_is_validation_error(sso: Any, inst: str) -> None:
    for i in range(3):
        make_ps(sso, inst, f"PS{i}")
    token = sso.list_permission_sets(InstanceArn=inst, MaxResults=1)["NextToken"]
    with pytest.raises(ClientError) as exc:
        sso.list_permission_sets(InstanceArn=inst, NextToken="bm90LWEtdG9rZW4=")
    assert error(exc)[0] == "ValidationException"
    with pytest.raises(ClientError) as exc:  # a token of another operation
        sso.list_account_assignment_creation_status(InstanceArn=inst, NextToken=token)
    assert error(exc)[0] == "ValidationException"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"Name": "x" * 33}, "Member must have length less than or equal to 32"),
        ({"Name": "has space"}, "Member must satisfy regular expression pattern"),
        ({"Name": "日本語"}, "Member must satisfy regular expression pattern"),
        ({"Name": "ok", "Description": "d" * 701}, "Member must have length less than or equal to 700"),
        ({"Name": "ok", "Description": "権限セット"}, "at 'description'"),
        ({"Name": "ok", "RelayState": "r" * 241}, "Member must have length less than or equal to 240"),
        ({"Name": "ok", "SessionDuration": "1H"}, "at 'sessionDuration'"),
        ({"Name": "ok", "SessionDuration": "PT13H"}, "between PT1H and PT12H"),
        ({"Name": "ok", "SessionDuration": "PT30M"}, "between PT1H and PT12H"),
        (
            {"Name": "ok", "Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(76)]},
            "length less than or equal to 75",
        ),
        ({"Name": "ok", "Tags": [{"Key": "aws:reserved", "Value": "v"}]}, "reserved"),
        ({"Name": "ok", "Tags": [{"Key": "k" * 129, "Value": "v"}]}, "at 'tags.1.member.key'"),
    ],
)
def test_create_permission_set_validation(sso: Any, inst: str, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ClientError) as exc:
        sso.create_permission_set(InstanceArn=inst, **kwargs)
    code, status, message = error(exc)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message


def test_session_duration_bounds_accepted(sso: Any, inst: str) -> None:
    make_ps(sso, inst, "One", SessionDuration="PT1H")
    make_ps(sso, inst, "Twelve", SessionDuration="PT12H")
    make_ps(sso, inst, "Mixed", SessionDuration="PT1H30M")


def test_duplicate_name_is_conflict(sso: Any, inst: str) -> None:
    make_ps(sso, inst, "Dup")
    with pytest.raises(ClientError) as exc:
        make_ps(sso, inst, "Dup")
    code, status, message = error(exc)
    assert (code, status) == ("ConflictException", 400)
    assert "Dup" in message


def test_unknown_instance_and_permission_set_are_not_found(sso: Any, inst: str) -> None:
    other = "arn:aws:sso:::instance/ssoins-0000000000000000"
    with pytest.raises(ClientError) as exc:
        sso.list_permission_sets(InstanceArn=other)
    assert error(exc)[:2] == ("ResourceNotFoundException", 400)
    missing = f"arn:aws:sso:::permissionSet/{inst.rsplit('/', 1)[1]}/ps-0123456789abcdef"
    for call in (
        sso.describe_permission_set,
        sso.delete_permission_set,
        sso.list_managed_policies_in_permission_set,
    ):
        with pytest.raises(ClientError) as exc:
            call(InstanceArn=inst, PermissionSetArn=missing)
        assert error(exc)[0] == "ResourceNotFoundException"


def test_malformed_permission_set_arn_is_validation_error(sso: Any, inst: str) -> None:
    with pytest.raises(ClientError) as exc:
        sso.describe_permission_set(
            InstanceArn=inst, PermissionSetArn="arn:aws:sso:::permissionSet/nope/ps-1"
        )
    code, _, message = error(exc)
    assert code == "ValidationException"
    assert "at 'permissionSetArn'" in message


# =========================================================================== policies
def test_managed_policies_attach_list_detach(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=READONLY
    )
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=VIEWONLY
    )
    listed = sso.list_managed_policies_in_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert listed["AttachedManagedPolicies"] == [
        {"Name": "ReadOnlyAccess", "Arn": READONLY},
        {"Name": "ViewOnlyAccess", "Arn": VIEWONLY},
    ]
    with pytest.raises(ClientError) as exc:
        sso.attach_managed_policy_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=READONLY
        )
    assert error(exc)[:2] == ("ConflictException", 400)
    sso.detach_managed_policy_from_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=READONLY
    )
    with pytest.raises(ClientError) as exc:
        sso.detach_managed_policy_from_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=READONLY
        )
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:  # customer managed ARN where an AWS managed one is expected
        sso.attach_managed_policy_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn="arn:aws:iam::123456789012:policy/Mine"
        )
    assert error(exc)[0] == "ValidationException"


def test_customer_managed_policy_references(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    sso.attach_customer_managed_policy_reference_to_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, CustomerManagedPolicyReference={"Name": "Boundary"}
    )
    sso.attach_customer_managed_policy_reference_to_permission_set(
        InstanceArn=inst,
        PermissionSetArn=arn,
        CustomerManagedPolicyReference={"Name": "Team", "Path": "/teams/"},
    )
    refs = sso.list_customer_managed_policy_references_in_permission_set(
        InstanceArn=inst, PermissionSetArn=arn
    )
    assert refs["CustomerManagedPolicyReferences"] == [
        {"Name": "Boundary", "Path": "/"},
        {"Name": "Team", "Path": "/teams/"},
    ]
    with pytest.raises(ClientError) as exc:
        sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=inst,
            PermissionSetArn=arn,
            CustomerManagedPolicyReference={"Name": "Boundary", "Path": "/"},
        )
    assert error(exc)[0] == "ConflictException"
    sso.detach_customer_managed_policy_reference_from_permission_set(
        InstanceArn=inst,
        PermissionSetArn=arn,
        CustomerManagedPolicyReference={"Name": "Team", "Path": "/teams/"},
    )
    with pytest.raises(ClientError) as exc:
        sso.detach_customer_managed_policy_reference_from_permission_set(
            InstanceArn=inst,
            PermissionSetArn=arn,
            CustomerManagedPolicyReference={"Name": "Team", "Path": "/teams/"},
        )
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=inst,
            PermissionSetArn=arn,
            CustomerManagedPolicyReference={"Name": "X", "Path": "no-slash"},
        )
    assert error(exc)[0] == "ValidationException"


def test_more_than_twenty_attached_policies_exceeds_quota(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    for i in range(12):
        sso.attach_managed_policy_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=f"arn:aws:iam::aws:policy/Policy{i}"
        )
    for i in range(8):
        sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, CustomerManagedPolicyReference={"Name": f"Cmp{i}"}
        )
    with pytest.raises(ClientError) as exc:
        sso.attach_managed_policy_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn="arn:aws:iam::aws:policy/OneTooMany"
        )
    assert error(exc)[:2] == ("ServiceQuotaExceededException", 400)
    with pytest.raises(ClientError) as exc:
        sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, CustomerManagedPolicyReference={"Name": "OneTooMany"}
        )
    assert error(exc)[0] == "ServiceQuotaExceededException"


def test_inline_policy_put_get_delete(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    assert (
        sso.get_inline_policy_for_permission_set(InstanceArn=inst, PermissionSetArn=arn)["InlinePolicy"] == ""
    )
    sso.put_inline_policy_to_permission_set(InstanceArn=inst, PermissionSetArn=arn, InlinePolicy=POLICY)
    got = sso.get_inline_policy_for_permission_set(InstanceArn=inst, PermissionSetArn=arn)["InlinePolicy"]
    assert json.loads(got) == json.loads(POLICY)
    sso.delete_inline_policy_from_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert (
        sso.get_inline_policy_for_permission_set(InstanceArn=inst, PermissionSetArn=arn)["InlinePolicy"] == ""
    )
    sso.delete_inline_policy_from_permission_set(InstanceArn=inst, PermissionSetArn=arn)  # idempotent


def _big_policy(n_actions: int, pad: str = "") -> str:
    actions = [f"s3:Get{i:05d}" for i in range(n_actions)]
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]},
        indent=pad or None,
    )


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "Statement"),
        (_big_policy(800), "10240 non-whitespace"),  # ~11,300 non-whitespace characters
        (_big_policy(1200, pad="          "), "length less than or equal to 32768"),
    ],
)
def test_inline_policy_validation(sso: Any, inst: str, policy: str, fragment: str) -> None:
    arn = make_ps(sso, inst)
    with pytest.raises(ClientError) as exc:
        sso.put_inline_policy_to_permission_set(InstanceArn=inst, PermissionSetArn=arn, InlinePolicy=policy)
    code, status, message = error(exc)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message


def test_inline_policy_whitespace_does_not_count_towards_10240(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    policy = _big_policy(500, pad="      ")  # ~8,000 non-whitespace characters, ~20,000 in total
    assert len(policy) > 10_240
    sso.put_inline_policy_to_permission_set(InstanceArn=inst, PermissionSetArn=arn, InlinePolicy=policy)


def test_permissions_boundary(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    with pytest.raises(ClientError) as exc:
        sso.get_permissions_boundary_for_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert error(exc)[0] == "ResourceNotFoundException"
    sso.put_permissions_boundary_to_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, PermissionsBoundary={"ManagedPolicyArn": READONLY}
    )
    got = sso.get_permissions_boundary_for_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert got["PermissionsBoundary"] == {"ManagedPolicyArn": READONLY}
    sso.put_permissions_boundary_to_permission_set(
        InstanceArn=inst,
        PermissionSetArn=arn,
        PermissionsBoundary={"CustomerManagedPolicyReference": {"Name": "Boundary"}},
    )
    got = sso.get_permissions_boundary_for_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert got["PermissionsBoundary"] == {"CustomerManagedPolicyReference": {"Name": "Boundary", "Path": "/"}}
    with pytest.raises(ClientError) as exc:
        sso.put_permissions_boundary_to_permission_set(
            InstanceArn=inst,
            PermissionSetArn=arn,
            PermissionsBoundary={
                "ManagedPolicyArn": READONLY,
                "CustomerManagedPolicyReference": {"Name": "B"},
            },
        )
    assert error(exc)[0] == "ValidationException"
    sso.delete_permissions_boundary_from_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    with pytest.raises(ClientError) as exc:
        sso.delete_permissions_boundary_from_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert error(exc)[0] == "ResourceNotFoundException"


# =========================================================================== tags
def test_tags_on_permission_set_and_instance(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst, Tags=[{"Key": "a", "Value": "1"}])
    sso.tag_resource(
        InstanceArn=inst, ResourceArn=arn, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}]
    )
    tags = {
        t["Key"]: t["Value"] for t in sso.list_tags_for_resource(InstanceArn=inst, ResourceArn=arn)["Tags"]
    }
    assert tags == {"a": "3", "b": "2"}
    sso.untag_resource(InstanceArn=inst, ResourceArn=arn, TagKeys=["a", "missing"])
    assert sso.list_tags_for_resource(InstanceArn=inst, ResourceArn=arn)["Tags"] == [
        {"Key": "b", "Value": "2"}
    ]
    sso.tag_resource(ResourceArn=inst, Tags=[{"Key": "env", "Value": "sandbox"}])
    assert sso.list_tags_for_resource(ResourceArn=inst)["Tags"] == [{"Key": "env", "Value": "sandbox"}]
    missing = f"arn:aws:sso:::permissionSet/{inst.rsplit('/', 1)[1]}/ps-0123456789abcdef"
    with pytest.raises(ClientError) as exc:
        sso.list_tags_for_resource(InstanceArn=inst, ResourceArn=missing)
    assert error(exc)[0] == "ResourceNotFoundException"


def test_tag_quota(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(70)])
    sso.tag_resource(
        InstanceArn=inst, ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "w"} for i in range(65, 75)]
    )
    with pytest.raises(ClientError) as exc:
        sso.tag_resource(InstanceArn=inst, ResourceArn=arn, Tags=[{"Key": "one-more", "Value": "v"}])
    assert error(exc)[:2] == ("ServiceQuotaExceededException", 400)


# =========================================================================== account assignments (async)
def test_create_assignment_is_async_then_succeeds(sso: Any, inst: str, sb: Sandbox) -> None:
    sb.config.async_latency_seconds = 0.3
    arn = make_ps(sso, inst)
    status = sso.create_account_assignment(
        InstanceArn=inst, PermissionSetArn=arn, TargetId=A1, PrincipalId=USER1, PrincipalType="USER", **TARGET
    )["AccountAssignmentCreationStatus"]
    assert status["Status"] == "IN_PROGRESS"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", status["RequestId"])
    assert (status["TargetId"], status["PermissionSetArn"], status["PrincipalId"]) == (A1, arn, USER1)
    again = sso.describe_account_assignment_creation_status(
        InstanceArn=inst, AccountAssignmentCreationRequestId=status["RequestId"]
    )["AccountAssignmentCreationStatus"]
    assert again["Status"] == "IN_PROGRESS"
    assert (
        sso.list_account_assignments(InstanceArn=inst, AccountId=A1, PermissionSetArn=arn)[
            "AccountAssignments"
        ]
        == []
    )
    final = wait(sso, inst, "create", status["RequestId"])
    assert final["Status"] == "SUCCEEDED" and "FailureReason" not in final
    listed = sso.list_account_assignments(InstanceArn=inst, AccountId=A1, PermissionSetArn=arn)[
        "AccountAssignments"
    ]
    assert listed == [
        {"AccountId": A1, "PermissionSetArn": arn, "PrincipalType": "USER", "PrincipalId": USER1}
    ]
    assert provisioned_to(sso, inst, A1) == [arn]
    assert accounts_for(sso, inst, arn) == [A1]
    statuses = sso.list_account_assignment_creation_status(InstanceArn=inst)[
        "AccountAssignmentsCreationStatus"
    ]
    assert [s["RequestId"] for s in statuses] == [status["RequestId"]]
    assert (
        sso.list_account_assignment_creation_status(InstanceArn=inst, Filter={"Status": "FAILED"})[
            "AccountAssignmentsCreationStatus"
        ]
        == []
    )


def test_group_assignment_and_list_paginates(sso: Any, inst: str, sb: Sandbox) -> None:
    arn = make_ps(sso, inst)
    extra = [f"9067a1b2c3-{i:08d}-aaaa-bbbb-cccc-dddddddddddd" for i in range(5)]
    for uid in extra:
        sb.world.identity_store.users[uid] = User(uid, f"{uid}@example.com", uid)
    assert assign(sso, inst, arn, A1, GROUP1, "GROUP")["Status"] == "SUCCEEDED"
    for uid in extra:
        assert assign(sso, inst, arn, A1, uid)["Status"] == "SUCCEEDED"
    pages = list(
        sso.get_paginator("list_account_assignments").paginate(
            InstanceArn=inst, AccountId=A1, PermissionSetArn=arn, PaginationConfig={"PageSize": 4}
        )
    )
    assert [len(p["AccountAssignments"]) for p in pages] == [4, 2]
    assert {(a["PrincipalType"], a["PrincipalId"]) for p in pages for a in p["AccountAssignments"]} == {
        ("GROUP", GROUP1),
        *(("USER", uid) for uid in extra),
    }


def test_create_existing_assignment_is_idempotent(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    assert assign(sso, inst, arn, A1)["Status"] == "SUCCEEDED"
    assert assign(sso, inst, arn, A1)["Status"] == "SUCCEEDED"
    listed = sso.list_account_assignments(InstanceArn=inst, AccountId=A1, PermissionSetArn=arn)[
        "AccountAssignments"
    ]
    assert len(listed) == 1


def test_delete_assignment_deprovisions_after_the_last_one(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1, USER1)
    assign(sso, inst, arn, A1, USER2)
    assert unassign(sso, inst, arn, A1, USER1)["Status"] == "SUCCEEDED"
    assert provisioned_to(sso, inst, A1) == [arn]  # USER2 still holds it
    deleted = unassign(sso, inst, arn, A1, USER2)
    assert deleted["Status"] == "SUCCEEDED"
    assert (
        sso.list_account_assignments(InstanceArn=inst, AccountId=A1, PermissionSetArn=arn)[
            "AccountAssignments"
        ]
        == []
    )
    assert provisioned_to(sso, inst, A1) == []
    statuses = sso.list_account_assignment_deletion_status(InstanceArn=inst)[
        "AccountAssignmentsDeletionStatus"
    ]
    assert len(statuses) == 2


def test_delete_missing_assignment_succeeds_as_noop(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    assert unassign(sso, inst, arn, A1, USER2)["Status"] == "SUCCEEDED"


def test_async_failed_fault_ends_failed_with_reason(sso: Any, inst: str, sb: Sandbox) -> None:
    arn = make_ps(sso, inst)
    sb.faults.add(FaultRule("sso-admin", "async_failed", operation="CreateAccountAssignment", count=1))
    failed = assign(sso, inst, arn, A1)
    assert failed["Status"] == "FAILED"
    assert failed["FailureReason"].startswith("Received a 403 status error: Access denied by IAM")
    assert (
        sso.list_account_assignments(InstanceArn=inst, AccountId=A1, PermissionSetArn=arn)[
            "AccountAssignments"
        ]
        == []
    )
    assert provisioned_to(sso, inst, A1) == []
    failed_list = sso.list_account_assignment_creation_status(InstanceArn=inst, Filter={"Status": "FAILED"})
    assert len(failed_list["AccountAssignmentsCreationStatus"]) == 1
    assert assign(sso, inst, arn, A1)["Status"] == "SUCCEEDED"  # the fault fired once


def test_async_failed_fault_with_custom_message_on_provisioning(sso: Any, inst: str, sb: Sandbox) -> None:
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1)
    sb.faults.add(FaultRule("sso-admin", "async_failed", operation="ProvisionPermissionSet", message="boom"))
    result = provision(sso, inst, arn, A1)
    assert (result["Status"], result["FailureReason"]) == ("FAILED", "boom")


def test_outstanding_assignment_operations_are_limited(sso: Any, inst: str, sb: Sandbox) -> None:
    sb.config.async_latency_seconds = 30
    arn = make_ps(sso, inst)
    for acct in MEMBERS[:10]:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=acct,
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    with pytest.raises(ClientError) as exc:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=MEMBERS[10],
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    code, status, message = error(exc)
    assert (code, status) == ("ThrottlingException", 400)
    assert "too many requests" in message
    in_progress = sso.list_account_assignment_creation_status(
        InstanceArn=inst, Filter={"Status": "IN_PROGRESS"}
    )
    assert len(in_progress["AccountAssignmentsCreationStatus"]) == 10


def test_outstanding_limit_frees_up_when_requests_complete(sso: Any, inst: str, sb: Sandbox) -> None:
    sb.config.max_outstanding_assignment_ops = 2
    sb.config.async_latency_seconds = 0.2
    arn = make_ps(sso, inst)
    for acct in (A1, A2):
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=acct,
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    with pytest.raises(ClientError):
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=A3,
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    sb.clock.advance(0.2)  # type: ignore[attr-defined]  # the first two complete: room for a third
    assert assign(sso, inst, arn, A3)["Status"] == "SUCCEEDED"


def test_second_operation_on_the_same_account_conflicts(sso: Any, inst: str, sb: Sandbox) -> None:
    sb.config.async_latency_seconds = 30
    ps1 = make_ps(sso, inst, "One")
    ps2 = make_ps(sso, inst, "Two")
    sso.create_account_assignment(
        InstanceArn=inst, PermissionSetArn=ps1, TargetId=A1, PrincipalId=USER1, PrincipalType="USER", **TARGET
    )
    with pytest.raises(ClientError) as exc:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=ps2,
            TargetId=A1,
            PrincipalId=USER2,
            PrincipalType="USER",
            **TARGET,
        )
    assert error(exc) == ("ConflictException", 400, "There is a conflicting operation in process.")
    with pytest.raises(ClientError) as exc:
        sso.provision_permission_set(
            InstanceArn=inst, PermissionSetArn=ps2, TargetType="AWS_ACCOUNT", TargetId=A1
        )
    assert error(exc)[0] == "ConflictException"
    # another account is fine
    other = sso.create_account_assignment(
        InstanceArn=inst, PermissionSetArn=ps2, TargetId=A2, PrincipalId=USER2, PrincipalType="USER", **TARGET
    )
    assert other["AccountAssignmentCreationStatus"]["Status"] == "IN_PROGRESS"


def test_concurrent_provisioning_is_limited(sso: Any, inst: str, sb: Sandbox) -> None:
    arn = make_ps(sso, inst)
    sb.config.async_latency_seconds = 30
    for acct in MEMBERS[:3]:
        sso.provision_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, TargetType="AWS_ACCOUNT", TargetId=acct
        )
    with pytest.raises(ClientError) as exc:
        sso.provision_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, TargetType="AWS_ACCOUNT", TargetId=MEMBERS[3]
        )
    assert error(exc)[:2] == ("ThrottlingException", 400)
    listed = sso.list_permission_set_provisioning_status(InstanceArn=inst, Filter={"Status": "IN_PROGRESS"})
    assert len(listed["PermissionSetsProvisioningStatus"]) == 3


def test_unknown_request_ids_are_not_found(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    created = assign(sso, inst, arn, A1)
    with pytest.raises(ClientError) as exc:  # a creation request is not a deletion request
        sso.describe_account_assignment_deletion_status(
            InstanceArn=inst, AccountAssignmentDeletionRequestId=created["RequestId"]
        )
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        sso.describe_permission_set_provisioning_status(
            InstanceArn=inst, ProvisionPermissionSetRequestId="00000000-0000-4000-8000-000000000000"
        )
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        sso.describe_account_assignment_creation_status(
            InstanceArn=inst, AccountAssignmentCreationRequestId="x" * 36
        )
    assert error(exc)[0] == "ValidationException"


# =========================================================================== principals and accounts
def test_unknown_principal_is_not_found(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    with pytest.raises(ClientError) as exc:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=A1,
            PrincipalId=UNKNOWN_PRINCIPAL,
            PrincipalType="USER",
            **TARGET,
        )
    assert error(exc)[:2] == ("ResourceNotFoundException", 400)
    with pytest.raises(ClientError) as exc:  # a group id is not a user id
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=A1,
            PrincipalId=GROUP1,
            PrincipalType="USER",
            **TARGET,
        )
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=A1,
            PrincipalId="not-a-guid",
            PrincipalType="USER",
            **TARGET,
        )
    assert error(exc)[0] == "ValidationException"


def test_principal_deleted_while_in_progress_fails(sso: Any, inst: str, sb: Sandbox) -> None:
    sb.config.async_latency_seconds = 0.2
    arn = make_ps(sso, inst)
    status = sso.create_account_assignment(
        InstanceArn=inst, PermissionSetArn=arn, TargetId=A1, PrincipalId=USER2, PrincipalType="USER", **TARGET
    )["AccountAssignmentCreationStatus"]
    with sb.lock:
        del sb.world.identity_store.users[USER2]
    final = wait(sso, inst, "create", status["RequestId"])
    assert final["Status"] == "FAILED"
    assert USER2 in final["FailureReason"]


def test_unknown_and_inactive_accounts(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    with pytest.raises(ClientError) as exc:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId="123412341234",
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        sso.provision_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, TargetType="AWS_ACCOUNT", TargetId="123412341234"
        )
    assert error(exc)[0] == "ResourceNotFoundException"
    failed = assign(sso, inst, arn, SUSPENDED)
    assert failed["Status"] == "FAILED" and "ACTIVE" in failed["FailureReason"]
    with pytest.raises(ClientError) as exc:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId="abcdefghijkl",
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    assert error(exc)[0] == "ValidationException"


def test_unsupported_managed_policy_fails_provisioning(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn="arn:aws:iam::aws:policy/NoSuchPolicyForSure"
    )
    failed = assign(sso, inst, arn, A1)
    assert failed["Status"] == "FAILED"
    assert "Not supported policy arn:aws:iam::aws:policy/NoSuchPolicyForSure" in failed["FailureReason"]


# =========================================================================== provisioning and staleness
def test_changes_make_accounts_stale_until_provisioned(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    other = make_ps(sso, inst, "Other")
    assign(sso, inst, arn, A1)
    assign(sso, inst, arn, A2)
    assign(sso, inst, other, A1)
    latest, stale = "LATEST_PERMISSION_SET_PROVISIONED", "LATEST_PERMISSION_SET_NOT_PROVISIONED"
    assert sorted(provisioned_to(sso, inst, A1, latest)) == sorted([arn, other])
    assert provisioned_to(sso, inst, A1, stale) == []

    sso.attach_managed_policy_to_permission_set(
        InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=READONLY
    )
    assert provisioned_to(sso, inst, A1, stale) == [arn]
    assert provisioned_to(sso, inst, A1, latest) == [other]
    assert accounts_for(sso, inst, arn, stale) == [A1, A2]
    assert accounts_for(sso, inst, arn, latest) == []

    result = provision(sso, inst, arn, A1)
    assert (result["Status"], result["AccountId"], result["PermissionSetArn"]) == ("SUCCEEDED", A1, arn)
    assert accounts_for(sso, inst, arn, latest) == [A1]
    assert accounts_for(sso, inst, arn, stale) == [A2]

    result = provision(sso, inst, arn)  # ALL_PROVISIONED_ACCOUNTS
    assert result["Status"] == "SUCCEEDED" and "AccountId" not in result
    assert accounts_for(sso, inst, arn, latest) == [A1, A2]


@pytest.mark.parametrize(
    "change",
    [
        lambda sso, inst, arn: sso.update_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, Description="changed"
        ),
        lambda sso, inst, arn: sso.update_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, SessionDuration="PT4H"
        ),
        lambda sso, inst, arn: sso.put_inline_policy_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, InlinePolicy=POLICY
        ),
        lambda sso, inst, arn: sso.put_permissions_boundary_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, PermissionsBoundary={"ManagedPolicyArn": READONLY}
        ),
        lambda sso, inst, arn: sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, CustomerManagedPolicyReference={"Name": "Team"}
        ),
    ],
)
def test_every_definition_change_needs_provisioning(sso: Any, inst: str, change: Callable[..., Any]) -> None:
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1)
    change(sso, inst, arn)
    assert accounts_for(sso, inst, arn, "LATEST_PERMISSION_SET_NOT_PROVISIONED") == [A1]
    assert provision(sso, inst, arn)["Status"] == "SUCCEEDED"
    assert accounts_for(sso, inst, arn, "LATEST_PERMISSION_SET_PROVISIONED") == [A1]


def test_tagging_does_not_need_provisioning(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1)
    sso.tag_resource(InstanceArn=inst, ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}])
    assert accounts_for(sso, inst, arn, "LATEST_PERMISSION_SET_NOT_PROVISIONED") == []


def test_provision_to_an_account_without_assignments(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    assert provision(sso, inst, arn, A3)["Status"] == "SUCCEEDED"
    assert provisioned_to(sso, inst, A3) == [arn]
    with pytest.raises(ClientError) as exc:
        sso.provision_permission_set(InstanceArn=inst, PermissionSetArn=arn, TargetType="AWS_ACCOUNT")
    assert error(exc)[0] == "ValidationException"


# =========================================================================== delete permission set
def test_delete_permission_set_with_assignments_conflicts(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1)
    with pytest.raises(ClientError) as exc:
        sso.delete_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    code, status, message = error(exc)
    assert (code, status) == ("ConflictException", 400)
    assert "ApplicationProfile" in message
    unassign(sso, inst, arn, A1)
    sso.delete_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert sso.list_permission_sets(InstanceArn=inst)["PermissionSets"] == []


def test_delete_permission_set_still_provisioned_conflicts(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    provision(sso, inst, arn, A2)
    with pytest.raises(ClientError) as exc:
        sso.delete_permission_set(InstanceArn=inst, PermissionSetArn=arn)
    assert error(exc)[0] == "ConflictException"


# =========================================================================== delegated administrator
def test_management_account_is_out_of_reach(sso: Any, inst: str) -> None:
    arn = make_ps(sso, inst)
    with pytest.raises(ClientError) as exc:
        sso.create_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=MGMT,
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    code, status, message = error(exc)
    assert (code, status) == ("AccessDeniedException", 400)
    assert message.startswith(f"User: arn:aws:sts::{OWNER}:assumed-role/")
    assert (
        f"is not authorized to perform: sso:CreateAccountAssignment on resource: arn:aws:sso:::account/{MGMT}"
        in message
    )
    with pytest.raises(ClientError) as exc:
        sso.delete_account_assignment(
            InstanceArn=inst,
            PermissionSetArn=arn,
            TargetId=MGMT,
            PrincipalId=USER1,
            PrincipalType="USER",
            **TARGET,
        )
    assert error(exc)[0] == "AccessDeniedException"
    with pytest.raises(ClientError) as exc:
        sso.provision_permission_set(
            InstanceArn=inst, PermissionSetArn=arn, TargetType="AWS_ACCOUNT", TargetId=MGMT
        )
    assert error(exc)[0] == "AccessDeniedException"
    # reading the management account is allowed
    assert (
        sso.list_permission_sets_provisioned_to_account(InstanceArn=inst, AccountId=MGMT)["PermissionSets"]
        == []
    )
    assert (
        sso.list_account_assignments(InstanceArn=inst, AccountId=MGMT, PermissionSetArn=arn)[
            "AccountAssignments"
        ]
        == []
    )


def test_permission_set_provisioned_to_management_account_is_read_only(
    sso: Any, inst: str, sb: Sandbox
) -> None:
    arn = aws_sso_admin.create_permission_set_direct(sb, "OrgAdmin", managed_policies=[READONLY])
    aws_sso_admin.add_assignment_direct(sb, MGMT, arn, "USER", USER1)
    attempts: list[tuple[str, Callable[[], Any]]] = [
        (
            "UpdatePermissionSet",
            lambda: sso.update_permission_set(InstanceArn=inst, PermissionSetArn=arn, Description="x"),
        ),
        ("DeletePermissionSet", lambda: sso.delete_permission_set(InstanceArn=inst, PermissionSetArn=arn)),
        (
            "AttachManagedPolicyToPermissionSet",
            lambda: sso.attach_managed_policy_to_permission_set(
                InstanceArn=inst, PermissionSetArn=arn, ManagedPolicyArn=VIEWONLY
            ),
        ),
        (
            "PutInlinePolicyToPermissionSet",
            lambda: sso.put_inline_policy_to_permission_set(
                InstanceArn=inst, PermissionSetArn=arn, InlinePolicy=POLICY
            ),
        ),
        (
            "ProvisionPermissionSet",
            lambda: sso.provision_permission_set(
                InstanceArn=inst, PermissionSetArn=arn, TargetType="ALL_PROVISIONED_ACCOUNTS"
            ),
        ),
        (
            "CreateAccountAssignment",  # even to a member account
            lambda: sso.create_account_assignment(
                InstanceArn=inst,
                PermissionSetArn=arn,
                TargetId=A1,
                PrincipalId=USER1,
                PrincipalType="USER",
                **TARGET,
            ),
        ),
        (
            "TagResource",
            lambda: sso.tag_resource(InstanceArn=inst, ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]),
        ),
    ]
    for operation, attempt in attempts:
        with pytest.raises(ClientError) as exc:
            attempt()
        code, _, message = error(exc)
        assert code == "AccessDeniedException", operation
        assert f"sso:{operation} on resource: {arn}" in message
    # reads still work
    assert (
        sso.describe_permission_set(InstanceArn=inst, PermissionSetArn=arn)["PermissionSet"]["Name"]
        == "OrgAdmin"
    )
    assert provisioned_to(sso, inst, MGMT) == [arn]
    listed = sso.list_account_assignments(InstanceArn=inst, AccountId=MGMT, PermissionSetArn=arn)[
        "AccountAssignments"
    ]
    assert [a["PrincipalId"] for a in listed] == [USER1]


def test_list_assignments_for_principal_needs_the_management_account(
    sso: Any, inst: str, sb: Sandbox
) -> None:
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1)
    with pytest.raises(ClientError) as exc:
        sso.list_account_assignments_for_principal(InstanceArn=inst, PrincipalId=USER1, PrincipalType="USER")
    assert error(exc)[0] == "AccessDeniedException"
    sb.world.identity_center.owner_account_id = MGMT  # an instance administered from the management account
    listed = sso.list_account_assignments_for_principal(
        InstanceArn=inst, PrincipalId=USER1, PrincipalType="USER", Filter={"AccountId": A1}
    )["AccountAssignments"]
    assert listed == [
        {"AccountId": A1, "PermissionSetArn": arn, "PrincipalId": USER1, "PrincipalType": "USER"}
    ]
    # ... and then the management account is a normal target
    assert assign(sso, inst, arn, MGMT)["Status"] == "SUCCEEDED"


# =========================================================================== throttling and faults
def test_rate_limit_throttles_a_burst(sso: Any, sb: Sandbox) -> None:
    sb.config.rate_limits["sso-admin"] = 20.0
    clock = sb.clock = ManualClock()
    codes = []

    def burst(n: int) -> None:
        for _ in range(n):
            try:
                sso.list_instances()
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    burst(45)  # a burst of one second's worth (20), then throttled
    assert codes == ["ok"] * 20 + ["ThrottlingException"] * 25
    clock.advance(0.5)  # half a second refills 10 tokens
    burst(11)
    assert codes[45:] == ["ok"] * 10 + ["ThrottlingException"]
    throttled = [c for c in sb.calls.calls("sso-admin", "ListInstances") if c.error == "ThrottlingException"]
    assert len(throttled) == codes.count("ThrottlingException")


def test_injected_faults_use_the_service_errors(sso: Any, inst: str, sb: Sandbox) -> None:
    for kind, code, status in [
        ("throttle", "ThrottlingException", 400),
        ("conflict", "ConflictException", 400),
        ("access_denied", "AccessDeniedException", 400),
        ("error5xx", "InternalServerException", 500),
    ]:
        sb.faults.add(FaultRule("sso-admin", kind, operation="ListPermissionSets", count=1))
        with pytest.raises(ClientError) as exc:
            sso.list_permission_sets(InstanceArn=inst)
        assert error(exc)[:2] == (code, status)
    assert sso.list_permission_sets(InstanceArn=inst)["PermissionSets"] == []


def test_calls_are_recorded_with_identifying_params(sso: Any, inst: str, sb: Sandbox) -> None:
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1)
    calls = sb.calls.calls("sso-admin", "CreateAccountAssignment")
    assert len(calls) == 1
    assert calls[0].params["TargetId"] == A1 and calls[0].params["PermissionSetArn"] == arn


# =========================================================================== raw HTTP: bad requests never 500
def test_raw_unknown_operation(raw: Callable[..., requests.Response]) -> None:
    resp = raw("NoSuchOperation", {})
    assert resp.status_code == 400
    assert resp.json()["__type"] == "UnknownOperationException"


def test_raw_missing_required_member(raw: Callable[..., requests.Response], inst: str) -> None:
    resp = raw("CreatePermissionSet", {"InstanceArn": inst})
    assert resp.status_code == 400
    body = resp.json()
    assert body["__type"] == "ValidationException"
    assert "Value null at 'name' failed to satisfy constraint: Member must not be null" in body["message"]
    resp = raw("CreateAccountAssignment", {})
    assert resp.status_code == 400 and resp.json()["message"].startswith("6 validation errors detected: ")


def test_raw_malformed_json_and_wrong_types(raw: Callable[..., requests.Response], inst: str) -> None:
    resp = raw("ListPermissionSets", data=b"{not json")
    assert resp.status_code == 400 and resp.json()["__type"] == "SerializationException"
    resp = raw("ListPermissionSets", data=b"[1, 2]")
    assert resp.status_code == 400 and resp.json()["__type"] == "SerializationException"
    resp = raw("ListPermissionSets", {"InstanceArn": inst, "MaxResults": "ten"})
    assert resp.status_code == 400 and resp.json()["__type"] == "SerializationException"
    resp = raw("CreatePermissionSet", {"InstanceArn": inst, "Name": "x", "Tags": {"k": "v"}})
    assert resp.status_code == 400 and resp.json()["__type"] == "SerializationException"


def test_raw_max_results_below_bound(raw: Callable[..., requests.Response], inst: str) -> None:
    resp = raw("ListPermissionSets", {"InstanceArn": inst, "MaxResults": 0})
    assert resp.status_code == 400
    assert "Member must have value greater than or equal to 1" in resp.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"InstanceArn": None},
        {"InstanceArn": 12, "PermissionSetArn": []},
        {
            "InstanceArn": "arn:aws:sso:::instance/ssoins-72230e6a59fa4ba3",
            "PermissionSetArn": "x",
            "Tags": [None],
        },
        {"InstanceArn": "arn:aws:sso:::instance/ssoins-72230e6a59fa4ba3", "Filter": "IN_PROGRESS"},
        {"InstanceArn": "arn:aws:sso:::instance/ssoins-72230e6a59fa4ba3", "NextToken": "%%%"},
        {
            "ResourceArn": "arn:aws:sso:::instance/ssoins-72230e6a59fa4ba3",
            "Tags": [{"Key": "k"}],
            "TagKeys": [1],
        },
    ],
)
def test_raw_no_operation_answers_500_to_garbage(
    raw: Callable[..., requests.Response], body: dict[str, Any]
) -> None:
    for operation in aws_sso_admin.OPERATIONS:
        resp = raw(operation, body)
        assert resp.status_code < 500, (operation, body, resp.text)
        assert resp.headers["x-amzn-ErrorType"] if resp.status_code >= 400 else True


# =========================================================================== in-process seeding helpers
def test_direct_helpers_seed_a_world_visible_through_the_api(sso: Any, inst: str, sb: Sandbox) -> None:
    arn = aws_sso_admin.create_permission_set_direct(
        sb,
        "Seeded",
        description="from a seed",
        session_duration="PT4H",
        managed_policies=[READONLY],
        customer_managed=[("Team", "/teams/")],
        inline_policy=json.loads(POLICY),
        boundary={"ManagedPolicyArn": VIEWONLY},
        tags={"owner": "seed"},
    )
    assert PS_ARN_RE.fullmatch(arn)
    with pytest.raises(ValueError):
        aws_sso_admin.create_permission_set_direct(sb, "Seeded")
    aws_sso_admin.add_assignment_direct(sb, A1, arn, "GROUP", GROUP1)
    aws_sso_admin.provision_direct(sb, A2, arn, stale=True)
    assert (
        aws_sso_admin.find_permission_set_direct(sb, "Seeded")
        is sb.world.identity_center.permission_sets[arn]
    )
    described = sso.describe_permission_set(InstanceArn=inst, PermissionSetArn=arn)["PermissionSet"]
    assert (described["Description"], described["SessionDuration"]) == ("from a seed", "PT4H")
    assert json.loads(
        sso.get_inline_policy_for_permission_set(InstanceArn=inst, PermissionSetArn=arn)["InlinePolicy"]
    )
    assert accounts_for(sso, inst, arn, "LATEST_PERMISSION_SET_PROVISIONED") == [A1]
    assert accounts_for(sso, inst, arn, "LATEST_PERMISSION_SET_NOT_PROVISIONED") == [A2]
    listed = sso.list_account_assignments(InstanceArn=inst, AccountId=A1, PermissionSetArn=arn)[
        "AccountAssignments"
    ]
    assert listed == [
        {"AccountId": A1, "PermissionSetArn": arn, "PrincipalType": "GROUP", "PrincipalId": GROUP1}
    ]


def test_direct_world_changes_after_api_reads_are_seen(sso: Any, inst: str, sb: Sandbox) -> None:
    """Seed loaders and other modules write the state dataclasses directly; reads must notice."""
    arn = make_ps(sso, inst)
    assign(sso, inst, arn, A1)
    assert accounts_for(sso, inst, arn) == [A1]
    with sb.lock:
        ic = sb.world.identity_center
        ic.assignments.add(Assignment(A2, arn, "GROUP", GROUP1))
        ic.provisioned[(A2, arn)] = ic.permission_sets[arn].version
    assert accounts_for(sso, inst, arn) == [A1, A2]
    listed = sso.list_account_assignments(InstanceArn=inst, AccountId=A2, PermissionSetArn=arn)[
        "AccountAssignments"
    ]
    assert [a["PrincipalId"] for a in listed] == [GROUP1]
    assert provisioned_to(sso, inst, A2) == [arn]
