"""canonical_policy / managed_policy_arn."""

from __future__ import annotations

import json

import pytest

from idc_sync import safe_json
from idc_sync.policy import canonical_policy, managed_policy_arn, managed_policy_name, policies_equal
from idc_sync.safe_json import MAX_DEPTH, UnsafeJsonError

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


# --------------------------------------------------------------------------- hostile records (issue 9)
def test_deeply_nested_policy_raises_a_clear_value_error_not_recursion_error() -> None:
    with pytest.raises(UnsafeJsonError) as info:
        canonical_policy("[" * 3000)
    assert isinstance(info.value, ValueError)
    assert (info.value.reason, info.value.line, info.value.column) == ("too_deep", 1, MAX_DEPTH + 1)
    assert not policies_equal("[" * 3000, '{"Version": "2012-10-17", "Statement": []}')


def test_depth_limit_counts_structure_not_brackets_inside_strings() -> None:
    sid = "[" * 5000 + "{" * 5000
    policy = {**POLICY, "Statement": [{**POLICY["Statement"][0], "Sid": sid}]}  # type: ignore[dict-item]
    assert canonical_policy(json.dumps(policy)) is not None
    assert safe_json.nesting_depth(json.dumps(policy))[0] == 4  # doc, Statement, statement, Action
    assert safe_json.nesting_depth('["a\\"[[[", [1]]')[0] == 2  # an escaped quote does not end the string


def test_real_policies_are_far_below_the_depth_limit() -> None:
    nested = json.dumps({"Version": "2012-10-17", "Statement": [{"Condition": {"A": {"k": ["v"]}}}]})
    assert safe_json.nesting_depth(nested)[0] == 6
    assert safe_json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_huge_number_and_huge_text_are_limited() -> None:
    with pytest.raises(UnsafeJsonError) as info:
        canonical_policy('{"Version": ' + "9" * 5000 + "}")
    assert (info.value.reason, info.value.column) == ("number_too_long", 13)
    with pytest.raises(UnsafeJsonError) as info:
        canonical_policy(" " * safe_json.MAX_CHARS + "{}")
    assert info.value.reason == "too_large"


def test_unterminated_string_is_linear_not_quadratic() -> None:
    # '"\"' repeated: every quote starts a string that never ends; a backtracking regex would be O(n^2).
    text = '"\\"' * (safe_json.MAX_CHARS // 3)
    assert safe_json.nesting_depth(text) == (0, 0)
    with pytest.raises(UnsafeJsonError) as info:
        safe_json.loads(text)
    assert info.value.reason == "not_json"


def test_ten_thousand_statements_canonicalise() -> None:
    text = json.dumps({"Version": "2012-10-17", "Statement": [{}] * 10000})
    assert canonical_policy(text) == '{"Statement":[{}],"Version":"2012-10-17"}'
