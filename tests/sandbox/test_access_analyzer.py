"""The sandbox's Access Analyzer ValidatePolicy through an unmodified boto3 client and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from idc_sandbox.aws_access_analyzer import validate_policy_text
from idc_sandbox.core import FaultRule, Sandbox

LEARN = "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html"


@pytest.fixture
def aa(sandbox: Sandbox, aws_client: Callable[..., Any]) -> Any:
    sandbox.config.rate_limits["accessanalyzer"] = 0
    return aws_client("accessanalyzer", max_attempts=0)


def _policy(*statements: dict[str, Any], version: str | None = "2012-10-17", indent: int | None = 2) -> str:
    doc: dict[str, Any] = {}
    if version is not None:
        doc["Version"] = version
    doc["Statement"] = list(statements)
    return json.dumps(doc, indent=indent)


def _findings(aa: Any, text: str, policy_type: str = "IDENTITY_POLICY") -> list[dict[str, Any]]:
    pages = aa.get_paginator("validate_policy").paginate(policyDocument=text, policyType=policy_type)
    return [f for p in pages for f in p["findings"]]


def _codes(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["findingType"], f["issueCode"]) for f in findings]


def _spanned(text: str, location: dict[str, Any]) -> str:
    span = location["span"]
    return text[span["start"]["offset"] : span["end"]["offset"]]


def test_clean_policy_has_no_findings(aa: Any, sandbox: Sandbox) -> None:
    text = _policy(
        {
            "Sid": "Read",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": "arn:aws:s3:::b/*",
        },
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*"},
    )
    resp = aa.validate_policy(policyDocument=text, policyType="IDENTITY_POLICY")
    assert resp["findings"] == []
    assert sandbox.calls.counters()["accessanalyzer"]["ValidatePolicy"] == 1


def test_star_star_matches_what_the_real_service_returns(aa: Any) -> None:
    # Spans the real service returned for AdministratorAccess (Action 51..54, Resource 68..71 on line 1)
    text = '{"Version": "2012-10-17", "Statement": [{"Action": "*", "Resource": "*", "Effect": "Allow"}]}'
    findings = _findings(aa, text)
    assert _codes(findings) == [
        ("WARNING", "CREATE_SLR_WITH_STAR_IN_ACTION_AND_RESOURCE"),
        ("SECURITY_WARNING", "PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE"),
    ]
    for finding in findings:
        assert [loc["path"] for loc in finding["locations"]] == [
            [{"value": "Statement"}, {"index": 0}, {"value": "Action"}],
            [{"value": "Statement"}, {"index": 0}, {"value": "Resource"}],
        ]
        assert [(loc["span"]["start"], loc["span"]["end"]) for loc in finding["locations"]] == [
            ({"line": 1, "column": 51, "offset": 51}, {"line": 1, "column": 54, "offset": 54}),
            ({"line": 1, "column": 68, "offset": 68}, {"line": 1, "column": 71, "offset": 71}),
        ]
    assert findings[1]["learnMoreLink"] == (
        f"{LEARN}#access-analyzer-reference-policy-checks-security-warning-pass-role-with-star-in-action-and-resource"
    )
    assert findings[0]["learnMoreLink"].endswith(
        "general-warning-create-slr-with-star-in-action-and-resource"
    )


def test_pass_role_with_star_resource_spans_point_into_multiline_text(aa: Any) -> None:
    text = _policy({"Effect": "Allow", "Action": ["ec2:RunInstances", "iam:PassRole"], "Resource": "*"})
    (finding,) = _findings(aa, text)
    assert (finding["findingType"], finding["issueCode"]) == (
        "SECURITY_WARNING",
        "PASS_ROLE_WITH_STAR_IN_RESOURCE",
    )
    action, resource = finding["locations"]
    assert action["path"] == [{"value": "Statement"}, {"index": 0}, {"value": "Action"}, {"index": 1}]
    assert _spanned(text, action) == '"iam:PassRole"'
    assert _spanned(text, resource) == '"*"'
    start = action["span"]["start"]
    line_text = text.splitlines()[start["line"] - 1]
    assert line_text[start["column"] :].startswith('"iam:PassRole"')
    # the condition key the finding recommends silences it
    guarded = _policy(
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        }
    )
    assert _findings(aa, guarded) == []


def test_allow_not_action_with_star_resource_is_a_security_warning(aa: Any) -> None:
    text = _policy({"Effect": "Allow", "NotAction": ["iam:CreateUser"], "Resource": "*"})
    assert _codes(_findings(aa, text)) == [
        ("SECURITY_WARNING", "PASS_ROLE_WITH_NOT_ACTION_AND_STAR_IN_RESOURCE")
    ]
    excluded = _policy({"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"})
    assert _findings(aa, excluded) == []


def test_version_checks(aa: Any) -> None:
    missing = _findings(aa, _policy({"Effect": "Deny", "Action": "s3:*", "Resource": "*"}, version=None))
    assert _codes(missing) == [("WARNING", "MISSING_VERSION")]
    bad_text = _policy({"Effect": "Deny", "Action": "s3:*", "Resource": "*"}, version="2020-01-01")
    bad = _findings(aa, bad_text)
    assert _codes(bad) == [("ERROR", "INVALID_VERSION")]
    assert _spanned(bad_text, bad[0]["locations"][0]) == '"2020-01-01"'


def test_statement_grammar_errors(aa: Any) -> None:
    text = _policy(
        {"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject"},
        {"Action": "s3:GetObject", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Principal": {"AWS": "*"},
            "Colour": "red",
        },
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "bucket/*"},
    )
    findings = _findings(aa, text)
    assert _codes(findings) == [
        ("ERROR", "INVALID_EFFECT"),
        ("ERROR", "MISSING_ACTION"),
        ("ERROR", "MISSING_RESOURCE"),
        ("ERROR", "MISSING_EFFECT"),
        ("ERROR", "INVALID_POLICY_ELEMENT"),
        ("ERROR", "UNSUPPORTED_PRINCIPAL"),
        ("ERROR", "INVALID_ARN_PREFIX"),
    ]
    assert _spanned(text, findings[0]["locations"][0]) == '"allow"'
    assert findings[1]["locations"][0]["path"] == [{"value": "Statement"}, {"index": 1}]
    assert _spanned(text, findings[1]["locations"][0]).startswith("{")
    assert _spanned(text, findings[4]["locations"][0]) == '"Colour"'


def test_unknown_services_and_actions(aa: Any) -> None:
    text = _policy(
        {
            "Effect": "Allow",
            "Action": [
                "ssm-sapx:GetOperation",
                "iam:GetRolee",
                "iam:ListRoles",
                "sts:TagSession",
                "s3:AnythingGoes",
            ],
            "Resource": "*",
        }
    )
    findings = _findings(aa, text)
    assert _codes(findings) == [("ERROR", "INVALID_SERVICE_IN_ACTION"), ("ERROR", "INVALID_ACTION")]
    assert (
        findings[0]["findingDetails"]
        == "The service ssm-sapx:GetOperation specified in the action does not exist."
    )
    assert (
        findings[1]["findingDetails"] == "The action iam:GetRolee does not exist. Did you mean iam:GetRole?"
    )
    assert _spanned(text, findings[1]["locations"][0]) == '"iam:GetRolee"'


def test_suggestions_redundancy_and_empty_arrays(aa: Any) -> None:
    text = _policy(
        {
            "Sid": "One",
            "Effect": "Allow",
            "Action": ["s3:*", "s3:GetObject"],
            "Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::b/key"],
        },
        {
            "Sid": "Two",
            "Effect": "Allow",
            "Action": ["s3:*", "s3:GetObject"],
            "Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::b/key"],
        },
        {"Effect": "Allow", "Action": [], "Resource": "*"},
    )
    findings = _findings(aa, text)
    assert _codes(findings) == [
        ("SUGGESTION", "REDUNDANT_ACTION"),
        ("SUGGESTION", "REDUNDANT_RESOURCE"),
        ("SUGGESTION", "REDUNDANT_ACTION"),
        ("SUGGESTION", "REDUNDANT_RESOURCE"),
        ("SUGGESTION", "REDUNDANT_STATEMENT"),
        ("SUGGESTION", "EMPTY_ARRAY_ACTION"),
    ]
    assert findings[0]["findingDetails"].endswith("remove the redundant action such as: s3:GetObject.")
    assert [_spanned(text, loc) for loc in findings[0]["locations"]] == ['"s3:*"', '"s3:GetObject"']
    assert findings[4]["locations"][0]["path"] == [{"value": "Statement"}, {"index": 1}]


def test_sid_rules(aa: Any) -> None:
    text = _policy(
        {"Sid": "Same", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
        {"Sid": "Same", "Effect": "Deny", "Action": "ec2:*", "Resource": "*"},
        {"Sid": "not valid!", "Effect": "Deny", "Action": "sqs:*", "Resource": "*"},
    )
    assert _codes(_findings(aa, text)) == [("ERROR", "INVALID_SID_UNIQUENESS"), ("ERROR", "INVALID_SID")]


def test_resource_policy_needs_a_principal(aa: Any) -> None:
    text = _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})
    assert _codes(_findings(aa, text, "RESOURCE_POLICY")) == [("ERROR", "MISSING_PRINCIPAL")]


def test_findings_paginate(aa: Any) -> None:
    text = _policy(*({"Effect": "Allow", "Action": f"nope{i}:Do", "Resource": "*"} for i in range(5)))
    first = aa.validate_policy(policyDocument=text, policyType="IDENTITY_POLICY", maxResults=2)
    assert len(first["findings"]) == 2 and first["nextToken"]
    pages = list(
        aa.get_paginator("validate_policy").paginate(
            policyDocument=text, policyType="IDENTITY_POLICY", PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["findings"]) for p in pages] == [2, 2, 1]
    details = [f["findingDetails"] for p in pages for f in p["findings"]]
    assert details == [f"The service nope{i}:Do specified in the action does not exist." for i in range(5)]


# --------------------------------------------------------------------------- unparsable input
def test_unparsable_policy_is_validation_exception_by_default(aa: Any) -> None:
    with pytest.raises(ClientError) as exc:
        aa.validate_policy(
            policyDocument='{"Version": "2012-10-17", "Statement": [', policyType="IDENTITY_POLICY"
        )
    err = exc.value.response
    assert err["Error"]["Code"] == "ValidationException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["reason"] == "cannotParse"


def test_unparsable_policy_as_json_syntax_error_finding(aa: Any, sandbox: Sandbox) -> None:
    sandbox.config.access_analyzer_syntax_error_as_finding = True
    text = '{\n  "Version": "2012-10-17",\n  "Statement": [}\n'
    (finding,) = _findings(aa, text)
    assert (finding["findingType"], finding["issueCode"]) == ("ERROR", "JSON_SYNTAX_ERROR")
    start = finding["locations"][0]["span"]["start"]
    assert start == {"line": 3, "column": 16, "offset": text.index("}")}
    assert (
        finding["findingDetails"] == f"Fix the JSON syntax error at index {start['offset']} line 3 column 16."
    )


def test_position_scanner_handles_escapes_and_unicode() -> None:
    text = '{"Version":"2012-10-17","Statement":{"Sid":"caf\\u00e9\\"x","Effect":"Allow","Action":"iam:PassRole","Resource":"*"}}'
    codes = [(f["issueCode"], f["locations"][0]["path"]) for f in validate_policy_text(text)]
    assert ("INVALID_SID", [{"value": "Statement"}, {"value": "Sid"}]) in codes
    pass_role = next(
        f for f in validate_policy_text(text) if f["issueCode"] == "PASS_ROLE_WITH_STAR_IN_RESOURCE"
    )
    span = pass_role["locations"][0]["span"]
    assert text[span["start"]["offset"] : span["end"]["offset"]] == '"iam:PassRole"'


# --------------------------------------------------------------------------- throttling, faults, raw HTTP
def test_throttling_is_429_with_retry_after(
    aa: Any, sandbox: Sandbox, aws_client: Callable[..., Any]
) -> None:
    sandbox.config.rate_limits["accessanalyzer"] = 3.0
    text = _policy({"Effect": "Deny", "Action": "s3:*", "Resource": "*"})
    codes = []
    for _ in range(10):
        try:
            aa.validate_policy(policyDocument=text, policyType="IDENTITY_POLICY")
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            assert exc.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    assert codes[:3] == ["ok"] * 3 and "ThrottlingException" in codes

    sandbox.config.rate_limits["accessanalyzer"] = 0
    sandbox.faults.add(FaultRule(service="accessanalyzer", kind="throttle", count=2))
    retrying = aws_client("accessanalyzer", max_attempts=3)
    assert retrying.validate_policy(policyDocument=text, policyType="IDENTITY_POLICY")["findings"] == []
    sandbox.faults.add(FaultRule(service="accessanalyzer", kind="error5xx", count=1))
    with pytest.raises(ClientError) as exc:
        aa.validate_policy(policyDocument=text, policyType="IDENTITY_POLICY")
    assert exc.value.response["Error"]["Code"] == "InternalServerException"


def _raw(url: str, body: Any, query: str = "") -> requests.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.post(
        f"{url}/policy/validation{query}", data=data, headers={"Content-Type": "application/json"}, timeout=10
    )


def test_raw_bad_requests_are_validation_exceptions(sandbox: Sandbox, sandbox_url: str) -> None:
    r = _raw(sandbox_url, {"policyType": "IDENTITY_POLICY"})
    assert r.status_code == 400 and r.headers["x-amzn-ErrorType"] == "ValidationException"
    assert r.json()["reason"] == "fieldValidationFailed"
    assert r.json()["fieldList"][0]["name"] == "policyDocument"
    r = _raw(sandbox_url, {"policyDocument": "{}", "policyType": "SOMETHING"})
    assert r.status_code == 400 and r.json()["fieldList"][0]["name"] == "policyType"
    r = _raw(sandbox_url, "{{{")
    assert r.status_code == 400 and r.json()["reason"] == "cannotParse"
    r = _raw(sandbox_url, {"policyDocument": {"Version": "2012-10-17"}, "policyType": "IDENTITY_POLICY"})
    assert r.status_code == 400 and r.headers["x-amzn-ErrorType"] == "ValidationException"
    r = _raw(sandbox_url, {"policyDocument": "{}", "policyType": "IDENTITY_POLICY", "locale": "XX"})
    assert r.status_code == 400
    r = _raw(sandbox_url, {"policyDocument": "{}", "policyType": "IDENTITY_POLICY"}, "?maxResults=0")
    assert r.status_code == 400
    r = _raw(sandbox_url, {"policyDocument": "{}", "policyType": "IDENTITY_POLICY"}, "?nextToken=%25%25")
    assert r.status_code == 400
    r = _raw(sandbox_url, {"policyDocument": "[]", "policyType": "IDENTITY_POLICY"})
    assert r.status_code == 200 and r.json()["findings"][0]["issueCode"] == "DATA_TYPE_MISMATCH"
    r = _raw(sandbox_url, {"policyDocument": "{}", "policyType": "IDENTITY_POLICY", "locale": "JA"})
    assert r.status_code == 200
    assert [f["issueCode"] for f in r.json()["findings"]] == ["MISSING_VERSION", "MISSING_STATEMENT"]
    errors = [c.error for c in sandbox.calls.calls("accessanalyzer", "ValidatePolicy")]
    assert errors.count("ValidationException") == 7 and errors.count(None) == 2
