"""The sandbox's IAM GetPolicy (query protocol, XML) through an unmodified boto3 client and raw HTTP."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from idc_sandbox import aws_iam
from idc_sandbox.core import FaultRule, Sandbox

NS = {"iam": aws_iam.XMLNS}


@pytest.fixture
def iam(sandbox: Sandbox, aws_client: Callable[..., Any]) -> Any:
    sandbox.config.rate_limits["iam"] = 0
    return aws_client("iam", max_attempts=0)


def _err(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    return exc.value.response  # type: ignore[return-value]


def test_catalog_is_the_real_list_of_aws_managed_policies() -> None:
    names = aws_iam.managed_policy_names()
    assert len(names) > 1000
    assert names == sorted(names)
    for expected in (
        "AdministratorAccess",
        "ReadOnlyAccess",
        "PowerUserAccess",
        "job-function/ViewOnlyAccess",
        "job-function/Billing",
        "service-role/AWSLambdaRole",
    ):
        assert expected in names
    raw = json.loads(resources.files("idc_sandbox").joinpath("managed_policies.json").read_text())
    assert set(raw) == set(names)
    assert all(v["DefaultVersionId"].startswith("v") for v in raw.values())
    assert aws_iam.managed_policy_arn("job-function/ViewOnlyAccess") == (
        "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
    )


def test_get_policy_of_aws_managed_policies(iam: Any, sandbox: Sandbox) -> None:
    policy = iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")["Policy"]
    assert policy["PolicyName"] == "ReadOnlyAccess"
    assert policy["Path"] == "/"
    assert policy["Arn"] == "arn:aws:iam::aws:policy/ReadOnlyAccess"
    assert policy["DefaultVersionId"].startswith("v")
    assert policy["PolicyId"].startswith("ANPA") and len(policy["PolicyId"]) == 21
    assert policy["IsAttachable"] is True
    assert policy["AttachmentCount"] == 0
    assert policy["CreateDate"].year == 2015
    # stable across calls
    assert (
        iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")["Policy"]["PolicyId"]
        == policy["PolicyId"]
    )

    view = iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/job-function/ViewOnlyAccess")["Policy"]
    assert (view["PolicyName"], view["Path"]) == ("ViewOnlyAccess", "/job-function/")
    calls = sandbox.calls.calls("iam", "GetPolicy")
    assert [c.params["PolicyArn"] for c in calls][-1] == "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"


def test_missing_policy_is_no_such_entity_404(iam: Any) -> None:
    with pytest.raises(iam.exceptions.NoSuchEntityException) as exc:
        iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccesss")
    err = _err(exc)
    assert err["Error"]["Code"] == "NoSuchEntity"
    assert err["Error"]["Type"] == "Sender"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "arn:aws:iam::aws:policy/ReadOnlyAccesss" in err["Error"]["Message"]
    # a real name under the wrong path does not exist either
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/ViewOnlyAccess")
    # customer managed policies are not modelled
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_policy(PolicyArn="arn:aws:iam::222222222222:policy/team/MyPolicy")


def test_malformed_arn_is_invalid_input(iam: Any) -> None:
    with pytest.raises(iam.exceptions.InvalidInputException) as exc:
        iam.get_policy(PolicyArn="arn:aws:iam::aws:role/NotAPolicy")
    assert _err(exc)["Error"]["Code"] == "InvalidInput"
    assert _err(exc)["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_throttling_and_retry(sandbox: Sandbox, aws_client: Callable[..., Any]) -> None:
    sandbox.config.rate_limits["iam"] = 3.0
    iam = aws_client("iam", max_attempts=0)
    codes = []
    for _ in range(10):
        try:
            iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
    assert codes[:3] == ["ok"] * 3 and "Throttling" in codes

    sandbox.config.rate_limits["iam"] = 0
    sandbox.faults.add(FaultRule(service="iam", kind="throttle", count=2))
    retrying = aws_client("iam", max_attempts=3)
    assert retrying.get_policy(PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")["Policy"]["PolicyName"]
    sandbox.faults.add(FaultRule(service="iam", kind="error5xx", count=1))
    with pytest.raises(ClientError) as exc:
        iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    assert _err(exc)["Error"]["Code"] == "ServiceFailure"
    assert _err(exc)["ResponseMetadata"]["HTTPStatusCode"] == 500


# --------------------------------------------------------------------------- raw HTTP
def _post(url: str, form: dict[str, str], service: str = "iam") -> requests.Response:
    auth = (
        f"AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )
    return requests.post(
        url,
        data=form,
        headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        timeout=10,
    )


def _error_of(resp: requests.Response) -> dict[str, str]:
    root = ET.fromstring(resp.text)
    assert root.tag == f"{{{aws_iam.XMLNS}}}ErrorResponse"
    error = root.find("iam:Error", NS)
    assert error is not None
    out = {child.tag.split("}")[1]: child.text or "" for child in error}
    request_id = root.find("iam:RequestId", NS)
    assert request_id is not None and request_id.text
    return out


def test_raw_success_is_get_policy_response_xml(sandbox: Sandbox, sandbox_url: str) -> None:
    resp = _post(
        sandbox_url,
        {
            "Action": "GetPolicy",
            "Version": "2010-05-08",
            "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
        },
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(resp.text)
    assert root.tag == f"{{{aws_iam.XMLNS}}}GetPolicyResponse"
    name = root.find("iam:GetPolicyResult/iam:Policy/iam:PolicyName", NS)
    assert name is not None and name.text == "AdministratorAccess"
    assert root.find("iam:ResponseMetadata/iam:RequestId", NS) is not None


def test_raw_bad_requests_use_the_iam_error_format(sandbox: Sandbox, sandbox_url: str) -> None:
    resp = _post(sandbox_url, {"Action": "DeleteAccount", "Version": "2010-05-08"})
    assert resp.status_code == 400
    assert _error_of(resp) == {
        "Type": "Sender",
        "Code": "InvalidAction",
        "Message": "Could not find operation DeleteAccount for version 2010-05-08",
    }
    resp = _post(sandbox_url, {"Action": "GetPolicy", "Version": "2010-05-08"})
    assert resp.status_code == 400 and _error_of(resp)["Code"] == "ValidationError"
    resp = _post(sandbox_url, {"Version": "2010-05-08"})
    assert resp.status_code == 400 and _error_of(resp)["Code"] == "MissingAction"
    resp = _post(sandbox_url, {"Action": "GetPolicy", "Version": "2010-05-08", "PolicyArn": "short"})
    assert resp.status_code == 400 and _error_of(resp)["Code"] == "ValidationError"
    resp = _post(
        sandbox_url,
        {"Action": "GetPolicy", "Version": "2010-05-08", "PolicyArn": "arn:aws:iam::aws:policy/Nope"},
    )
    assert resp.status_code == 404
    assert _error_of(resp) == {
        "Type": "Sender",
        "Code": "NoSuchEntity",
        "Message": "Policy arn:aws:iam::aws:policy/Nope was not found.",
    }
    codes = [(c.operation, c.error) for c in sandbox.calls.calls("iam")]
    assert ("DeleteAccount", "InvalidAction") in codes and ("GetPolicy", "NoSuchEntity") in codes
