"""The sandbox's organizations through an unmodified boto3 client (and raw HTTP for requests boto3 refuses)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from idc_sandbox.core import FaultRule, ManualClock, Sandbox
from idc_sandbox.state import Account, OrganizationalUnit

MGMT = "111111111111"
ROOT = "r-ab12"
OU_WORK = "ou-ab12-11111111"
OU_PROD = "ou-ab12-22222222"  # nested below OU_WORK
OU_EMPTY = "ou-ab12-33333333"
MEMBERS = [f"{n:012d}" for n in range(300000000000, 300000000000 + 44)]
SUSPENDED = "999999999991"
CLOSED = "999999999992"
ALL_IDS = sorted([MGMT, *MEMBERS, SUSPENDED, CLOSED])


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.config.rate_limits["organizations"] = 0  # unlimited, except in the throttling tests
    sandbox.config.organizations_empty_page_rate = 0.0  # deterministic pages, except where tested
    org = sandbox.world.organization
    org.management_account_id = MGMT
    assert org.root_id == ROOT
    org.ous[OU_WORK] = OrganizationalUnit(OU_WORK, "Workloads", ROOT)
    org.ous[OU_PROD] = OrganizationalUnit(OU_PROD, "Prod", OU_WORK)
    org.ous[OU_EMPTY] = OrganizationalUnit(OU_EMPTY, "Empty", ROOT)
    org.accounts[MGMT] = Account(MGMT, "management", "root@example.com", ROOT)
    for i, acct in enumerate(MEMBERS):
        parent = OU_PROD if i < 10 else OU_WORK if i < 30 else ROOT
        org.accounts[acct] = Account(acct, f"member-{i}", f"aws+{i}@example.com", parent)
    org.accounts[SUSPENDED] = Account(SUSPENDED, "old", "old@example.com", OU_WORK, state="SUSPENDED")
    org.accounts[CLOSED] = Account(CLOSED, "gone", "gone@example.com", OU_WORK, state="CLOSED")
    return sandbox


@pytest.fixture
def orgs(sb: Sandbox, aws_client: Callable[..., Any]) -> Any:
    # retries "max_attempts" counts retries after the first attempt: 0 shows every error as it is
    return aws_client("organizations", max_attempts=0)


def _err(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    return exc.value.response  # type: ignore[return-value]


def _raw(url: str, op: str, body: Any) -> requests.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.post(
        url,
        data=data,
        headers={
            "X-Amz-Target": f"AWSOrganizationsV20161128.{op}",
            "Content-Type": "application/x-amz-json-1.1",
        },
        timeout=10,
    )


# --------------------------------------------------------------------------- organization, roots
def test_describe_organization_names_the_management_account(orgs: Any) -> None:
    org = orgs.describe_organization()["Organization"]
    assert org["MasterAccountId"] == MGMT
    assert org["MasterAccountEmail"] == "root@example.com"
    assert org["FeatureSet"] == "ALL"
    assert org["Arn"] == f"arn:aws:organizations::{MGMT}:organization/{org['Id']}"
    assert org["MasterAccountArn"] == f"arn:aws:organizations::{MGMT}:account/{org['Id']}/{MGMT}"


def test_list_roots(orgs: Any) -> None:
    roots = orgs.list_roots()["Roots"]
    assert [r["Id"] for r in roots] == [ROOT]
    assert roots[0]["Arn"].endswith(f"/{ROOT}") and roots[0]["Name"] == "Root"


# --------------------------------------------------------------------------- accounts and pagination
def test_list_accounts_pages_of_at_most_20(orgs: Any) -> None:
    pages = list(orgs.get_paginator("list_accounts").paginate())
    assert [len(p["Accounts"]) for p in pages] == [20, 20, 7]
    assert [a["Id"] for p in pages for a in p["Accounts"]] == ALL_IDS
    small = orgs.list_accounts(MaxResults=5)
    assert len(small["Accounts"]) == 5 and small["NextToken"]


def test_list_accounts_max_results_bounds(orgs: Any) -> None:
    with pytest.raises(ClientError) as exc:
        orgs.list_accounts(MaxResults=21)  # botocore checks only the minimum
    err = _err(exc)
    assert err["Error"]["Code"] == "InvalidInputException"
    assert err["Reason"] == "MAX_VALUE_EXCEEDED"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_empty_pages_with_next_token_and_the_paginator_still_gets_everyone(orgs: Any, sb: Sandbox) -> None:
    # rate 1: every page is preceded by empty ones (the sandbox bounds how many in a row), so what
    # this shows does not depend on the random draw
    sb.config.organizations_empty_page_rate = 1.0
    # a naive loop sees empty pages that still carry a NextToken
    seen: list[str] = []
    empty_with_token = 0
    kwargs: dict[str, Any] = {"MaxResults": 10}
    while True:
        page = orgs.list_accounts(**kwargs)
        if not page["Accounts"] and page.get("NextToken"):
            empty_with_token += 1
        seen += [a["Id"] for a in page["Accounts"]]
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    assert empty_with_token > 0
    assert seen == ALL_IDS
    # botocore's paginator follows NextToken through the empty pages
    pages = list(orgs.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20}))
    assert any(not p["Accounts"] for p in pages)
    assert [a["Id"] for p in pages for a in p["Accounts"]] == ALL_IDS
    children = [
        a["Id"]
        for p in orgs.get_paginator("list_accounts_for_parent").paginate(ParentId=OU_PROD)
        for a in p["Accounts"]
    ]
    assert children == sorted(MEMBERS[:10])


def test_empty_pages_never_starve_a_client(orgs: Any, sb: Sandbox) -> None:
    sb.config.organizations_empty_page_rate = 1.0
    pages = list(orgs.get_paginator("list_accounts").paginate())
    assert [a["Id"] for p in pages for a in p["Accounts"]] == ALL_IDS
    assert sum(1 for p in pages if not p["Accounts"]) >= 3


def test_accounts_carry_state_and_deprecated_status(orgs: Any) -> None:
    accounts = {a["Id"]: a for p in orgs.get_paginator("list_accounts").paginate() for a in p["Accounts"]}
    assert (accounts[MEMBERS[0]]["State"], accounts[MEMBERS[0]]["Status"]) == ("ACTIVE", "ACTIVE")
    assert (accounts[SUSPENDED]["State"], accounts[SUSPENDED]["Status"]) == ("SUSPENDED", "SUSPENDED")
    assert (accounts[CLOSED]["State"], accounts[CLOSED]["Status"]) == ("CLOSED", "SUSPENDED")
    assert accounts[MGMT]["JoinedMethod"] == "INVITED" and accounts[MEMBERS[0]]["JoinedMethod"] == "CREATED"
    one = orgs.describe_account(AccountId=MEMBERS[3])["Account"]
    assert one["Name"] == "member-3" and one["Email"] == "aws+3@example.com"
    assert one["Arn"].endswith(f"/{MEMBERS[3]}")
    assert one["JoinedTimestamp"].year >= 2024


def test_describe_account_errors(orgs: Any) -> None:
    with pytest.raises(ClientError) as exc:
        orgs.describe_account(AccountId="123456789012")
    assert _err(exc)["Error"]["Code"] == "AccountNotFoundException"
    with pytest.raises(ClientError) as exc:
        orgs.describe_account(AccountId="12345")
    assert _err(exc)["Error"]["Code"] == "InvalidInputException"
    assert _err(exc)["Reason"] == "INVALID_PATTERN"


# --------------------------------------------------------------------------- tree
def test_tree_walk_ous_accounts_children_parents(orgs: Any) -> None:
    top = orgs.list_organizational_units_for_parent(ParentId=ROOT)["OrganizationalUnits"]
    assert [(o["Id"], o["Name"]) for o in top] == [(OU_WORK, "Workloads"), (OU_EMPTY, "Empty")]
    nested = orgs.list_organizational_units_for_parent(ParentId=OU_WORK)["OrganizationalUnits"]
    assert [o["Id"] for o in nested] == [OU_PROD]
    assert nested[0]["Arn"].endswith(f"/{OU_PROD}")
    assert orgs.list_organizational_units_for_parent(ParentId=OU_PROD)["OrganizationalUnits"] == []

    under_work = [
        a["Id"]
        for p in orgs.get_paginator("list_accounts_for_parent").paginate(ParentId=OU_WORK)
        for a in p["Accounts"]
    ]
    assert under_work == sorted([*MEMBERS[10:30], SUSPENDED, CLOSED])
    at_root = orgs.list_accounts_for_parent(ParentId=ROOT)["Accounts"]
    assert {a["Id"] for a in at_root} == {MGMT, *MEMBERS[30:]}

    kids = orgs.list_children(ParentId=OU_WORK, ChildType="ORGANIZATIONAL_UNIT")["Children"]
    assert kids == [{"Id": OU_PROD, "Type": "ORGANIZATIONAL_UNIT"}]
    accounts = orgs.list_children(ParentId=OU_PROD, ChildType="ACCOUNT")["Children"]
    assert {c["Id"] for c in accounts} == set(MEMBERS[:10])
    assert orgs.list_parents(ChildId=OU_PROD)["Parents"] == [{"Id": OU_WORK, "Type": "ORGANIZATIONAL_UNIT"}]
    assert orgs.list_parents(ChildId=MGMT)["Parents"] == [{"Id": ROOT, "Type": "ROOT"}]
    assert (
        orgs.describe_organizational_unit(OrganizationalUnitId=OU_PROD)["OrganizationalUnit"]["Name"]
        == "Prod"
    )


def test_unknown_parent_and_bad_ids(orgs: Any) -> None:
    with pytest.raises(ClientError) as exc:
        orgs.list_accounts_for_parent(ParentId="ou-ab12-99999999")
    assert _err(exc)["Error"]["Code"] == "ParentNotFoundException"
    with pytest.raises(ClientError) as exc:
        orgs.list_organizational_units_for_parent(ParentId="r-zz99")
    assert _err(exc)["Error"]["Code"] == "ParentNotFoundException"
    with pytest.raises(ClientError) as exc:
        orgs.list_accounts_for_parent(ParentId="not-a-parent")
    assert _err(exc)["Error"]["Code"] == "InvalidInputException"
    with pytest.raises(ClientError) as exc:
        orgs.list_parents(ChildId="ou-ab12-99999999")
    assert _err(exc)["Error"]["Code"] == "ChildNotFoundException"
    with pytest.raises(ClientError) as exc:
        orgs.describe_organizational_unit(OrganizationalUnitId="ou-ab12-99999999")
    assert _err(exc)["Error"]["Code"] == "OrganizationalUnitNotFoundException"


# --------------------------------------------------------------------------- throttling and faults
def test_burst_over_the_token_bucket_is_too_many_requests(orgs: Any, sb: Sandbox) -> None:
    sb.config.rate_limits["organizations"] = 4.0
    sb.clock = ManualClock()  # no token comes back during the burst, however slow the machine
    codes = []
    for _ in range(15):
        try:
            orgs.describe_organization()
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert codes == ["ok"] * 4 + ["TooManyRequestsException"] * 11
    counters = sb.calls.counters()["organizations"]
    assert counters["DescribeOrganization"] == 15


def test_botocore_retries_too_many_requests(sb: Sandbox, aws_client: Callable[..., Any]) -> None:
    sb.faults.add(FaultRule(service="organizations", kind="throttle", operation="ListRoots", count=2))
    orgs = aws_client("organizations", max_attempts=3)
    assert orgs.list_roots()["Roots"][0]["Id"] == ROOT
    assert [c.error for c in sb.calls.calls("organizations", "ListRoots")] == [
        "TooManyRequestsException",
        "TooManyRequestsException",
        None,
    ]


def test_injected_5xx_is_service_exception(orgs: Any, sb: Sandbox) -> None:
    sb.faults.add(FaultRule(service="organizations", kind="error5xx", count=1))
    with pytest.raises(ClientError) as exc:
        orgs.list_roots()
    assert _err(exc)["Error"]["Code"] == "ServiceException"
    assert _err(exc)["ResponseMetadata"]["HTTPStatusCode"] == 500


# --------------------------------------------------------------------------- raw HTTP
def test_raw_bad_requests_are_proper_errors(sb: Sandbox, sandbox_url: str) -> None:
    r = _raw(sandbox_url, "CloseEverything", {})
    assert r.status_code == 400 and r.json()["__type"] == "UnknownOperationException"
    r = _raw(sandbox_url, "ListAccountsForParent", {})
    assert r.status_code == 400
    assert r.json()["__type"] == "InvalidInputException" and r.json()["Reason"] == "INPUT_REQUIRED"
    r = _raw(sandbox_url, "ListChildren", {"ParentId": ROOT, "ChildType": "POLICY"})
    assert r.status_code == 400 and r.json()["Reason"] == "INVALID_ENUM"
    r = _raw(sandbox_url, "ListAccounts", "[1, 2")
    assert r.status_code == 400 and r.json()["__type"] == "SerializationException"
    r = _raw(sandbox_url, "ListAccounts", {"NextToken": "garbage"})
    assert r.status_code == 400 and r.json()["Reason"] == "INVALID_NEXT_TOKEN"
    r = _raw(sandbox_url, "ListAccounts", {"MaxResults": 0})
    assert r.status_code == 400 and r.json()["Reason"] == "MIN_VALUE_EXCEEDED"
    r = _raw(sandbox_url, "ListAccounts", {"MaxResults": "ten"})
    assert r.status_code == 400 and r.json()["__type"] == "SerializationException"
    # a token of one operation is not valid for another
    token = _raw(sandbox_url, "ListAccounts", {"MaxResults": 1}).json()["NextToken"]
    r = _raw(sandbox_url, "ListAccountsForParent", {"ParentId": ROOT, "NextToken": token})
    assert r.status_code == 400 and r.json()["Reason"] == "INVALID_NEXT_TOKEN"
