"""canonical_policy / managed_policy_arn."""

from __future__ import annotations

import json

import pytest

from idc_sync.policy import canonical_policy, managed_policy_arn, managed_policy_name, policies_equal

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"},
        {
            "Effect": "Deny",
            "NotAction": "iam:*",
            "NotResource": ["arn:aws:s3:::b"],
            "Condition": {"StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}},
        },
    ],
}


def test_none_and_blank_are_no_policy() -> None:
    assert canonical_policy(None) is None
    assert canonical_policy("  \n ") is None


def test_whitespace_and_key_order_do_not_matter() -> None:
    a = json.dumps(POLICY, indent=4)
    b = json.dumps({"Statement": POLICY["Statement"], "Version": "2012-10-17"}, separators=(",", ":"))
    assert canonical_policy(a) == canonical_policy(b)
    assert "\n" not in (canonical_policy(a) or "") and " " not in (canonical_policy(a) or "")


def test_string_vs_single_element_list_and_statement_object() -> None:
    a = '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}'
    b = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["*"]}]}'
    assert canonical_policy(a) == canonical_policy(b)


def test_action_order_condition_values_and_statement_order_are_sets() -> None:
    swapped = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Condition": {
                    "StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1", "us-east-1"]}
                },
                "NotResource": "arn:aws:s3:::b",
                "NotAction": ["iam:*"],
                "Effect": "Deny",
            },
            {
                "Resource": ["*"],
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Effect": "Allow",
                "Sid": "Read",
            },
        ],
    }
    assert canonical_policy(json.dumps(swapped)) == canonical_policy(json.dumps(POLICY))


def test_real_differences_are_kept() -> None:
    other = json.loads(json.dumps(POLICY))
    other["Statement"][0]["Action"].append("s3:PutObject")
    assert canonical_policy(json.dumps(other)) != canonical_policy(json.dumps(POLICY))
    deny = json.loads(json.dumps(POLICY))
    deny["Statement"][0]["Effect"] = "Deny"
    assert canonical_policy(json.dumps(deny)) != canonical_policy(json.dumps(POLICY))


def test_principal_values_normalised() -> None:
    a = '{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"sts:AssumeRole"}]}'
    b = '{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::1:root"]},"Action":["sts:AssumeRole"]}]}'
    assert canonical_policy(a) == canonical_policy(b)


def test_canonical_is_idempotent_and_valid_json() -> None:
    once = canonical_policy(json.dumps(POLICY))
    assert once is not None
    assert canonical_policy(once) == once
    assert json.loads(once)["Version"] == "2012-10-17"


def test_bad_json_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        canonical_policy('{"Version": "2012-10-17",')


def test_policies_equal_tolerates_bad_json() -> None:
    assert policies_equal("{bad", " {bad ")
    assert not policies_equal("{bad", '{"a":1}')
    assert policies_equal(None, "")
    assert policies_equal('{"a": [1]}', '{"a":[1]}')


@pytest.mark.parametrize(
    ("given", "arn"),
    [
        ("ReadOnlyAccess", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
        ("  AdministratorAccess ", "arn:aws:iam::aws:policy/AdministratorAccess"),
        ("job-function/ViewOnlyAccess", "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"),
        ("/job-function/ViewOnlyAccess", "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"),
        ("service-role/AWSConfigRole", "arn:aws:iam::aws:policy/service-role/AWSConfigRole"),
        ("arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
        ("arn:aws-us-gov:iam::aws:policy/ReadOnlyAccess", "arn:aws-us-gov:iam::aws:policy/ReadOnlyAccess"),
    ],
)
def test_managed_policy_arn(given: str, arn: str) -> None:
    assert managed_policy_arn(given) == arn


def test_managed_policy_arn_rejects_empty_and_name_round_trip() -> None:
    with pytest.raises(ValueError):
        managed_policy_arn("  ")
    assert (
        managed_policy_name(managed_policy_arn("job-function/ViewOnlyAccess"))
        == "job-function/ViewOnlyAccess"
    )
