"""The hostile-input catalog (issue 14), record side: what a requester (or an attacker with write access to
one record) can put in kintone, each kind beside a good record.

For every kind: reading the records and checking the policies never raises; the hostile record gets the
problem it deserves, on itself; the messages are bounded (a record cannot make a comment or a log line
megabytes long) and carry no control or zero-width characters; and the good record still yields its
permission set and assignment: one record never fails the run for the others.

Upstream responses (truncated, mistyped, huge; cursors that expire mid-read) are in
``tests/component/test_hostile_upstreams.py``; whole-run cases (deep nesting, 10,000 statements, markup
in Slack and comments) in ``tests/integration/test_hostile_records.py`` and ``test_notify_sinks.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from idc_sync.messages import render_problem
from idc_sync.model import Problem
from idc_sync.records import parse_desired_state
from idc_sync.validation import MAX_FINDINGS_PER_RECORD, validate_permission_sets
from tests.unit.test_records import CONFIG, asg_record, ps_record

GOOD_PS = ps_record(1, "Good", managed_policies="arn:aws:iam::aws:policy/ReadOnlyAccess")
GOOD_ASG = asg_record(1, users=["alice"], targets="123456789012", permission_set="Good")
MAX_MESSAGE = 2_000
INVISIBLE = {
    chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)
}


def _policy(**extra: Any) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            **extra,
        }
    )


def _nested(depth: int) -> str:
    return '{"Version":"2012-10-17","Statement":' + "[" * depth + "]" * depth + "}"


# (kind, permission set records, assignment records, codes the hostile record must get: any of them)
CATALOG: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], set[str]]] = [
    ("zero-width character in a name", [ps_record(2, "Read\u200bOnly")], [], {"invalid_name"}),
    ("control characters in a name", [ps_record(2, "Admin\x1b[31m\x07")], [], {"invalid_name"}),
    ("newline in a name", [ps_record(2, "Admin\nAccess")], [], {"invalid_name"}),
    ("name of 100,000 characters", [ps_record(2, "A" * 100_000)], [], {"invalid_name"}),
    ("description of 1 MB", [ps_record(2, "Big", description="d" * 1_000_000)], [], {"invalid_description"}),
    (
        "inline policy of 2 MB",
        [ps_record(2, "Huge", inline_policy=_policy(Pad="x" * 2_000_000))],
        [],
        {"inline_policy_too_large"},
    ),
    (
        "inline policy nested 100,000 deep",
        [ps_record(2, "Deep", inline_policy=_nested(100_000))],
        [],
        {"inline_policy_not_json", "inline_policy_invalid_statement", "inline_policy_too_large"},
    ),
    (
        "inline policy with a raw NUL byte",
        [ps_record(2, "Nul", inline_policy=_policy(Sid="ab").replace("ab", "a\x00b"))],
        [],
        {"inline_policy_invalid_characters", "inline_policy_not_json"},
    ),
    (
        "inline policy that is a JSON string",
        [ps_record(2, "Str", inline_policy=json.dumps("Allow everything"))],
        [],
        {"inline_policy_not_object"},
    ),
    (
        "inline policy with 10,000 statements",
        [
            ps_record(
                2, "Many", inline_policy=json.dumps({"Version": "2012-10-17", "Statement": [{}] * 10_000})
            )
        ],
        [],
        {"inline_policy_too_large", "inline_policy_invalid_statement", "inline_policy_invalid_effect"},
    ),
    (
        "managed policy path traversal",
        [ps_record(2, "Trav", managed_policies="arn:aws:iam::aws:policy/../../../etc/passwd")],
        [],
        set(),
    ),  # a well-formed ARN: Access Analyzer / IAM answer "not found" in a run
    (
        "managed policy of another account",
        [ps_record(2, "Other", managed_policies="arn:aws:iam::999999999999:policy/Admin")],
        [],
        {"invalid_managed_policy"},
    ),
    (
        "500 managed policies",
        [
            ps_record(
                2, "Lots", managed_policies="\n".join(f"arn:aws:iam::aws:policy/P{i}" for i in range(500))
            )
        ],
        [],
        {"too_many_policies", "many_policies_quota"},
    ),
    (
        "300 customer managed policies",
        [ps_record(2, "Cmps", cmp=[(f"p{i}", "/") for i in range(300)])],
        [],
        {"too_many_policies", "many_policies_quota"},
    ),
    (
        "customer policy path with traversal",
        [ps_record(2, "CmpPath", cmp=[("p", "/../../")])],
        [],
        set(),
    ),  # IAM allows it; not found in a run
    (
        "relay state with a javascript: URL",
        [ps_record(2, "Relay", relay_state="javascript:alert(1)")],
        [],
        {"invalid_relay_state"},
    ),
    (
        "relay state of 100,000 characters",
        [ps_record(2, "Relay2", relay_state="https://x/" + "a" * 100_000)],
        [],
        {"invalid_relay_state"},
    ),
    (
        "session duration of 9,999 hours",
        [ps_record(2, "Long", session_duration="PT9999H")],
        [],
        {"invalid_session_duration"},
    ),
    (
        "negative session duration",
        [ps_record(2, "Neg", session_duration="-PT1H")],
        [],
        {"invalid_session_duration"},
    ),
    (
        "permissions boundary of another account",
        [ps_record(2, "Bound", permissions_boundary="arn:aws:iam::999999999999:policy/B")],
        [],
        {"invalid_permissions_boundary"},
    ),
    (
        "two records with one name",
        [ps_record(2, "Twin"), ps_record(3, "Twin")],
        [],
        {"duplicate_permission_set_name"},
    ),
    (
        "name that differs only by case from another",
        [ps_record(2, "good")],
        [],
        {"duplicate_permission_set_name", "invalid_name"},
    ),
    (
        "account id in full-width digits",
        [],
        [asg_record(2, users=["bob"], targets="\uff11" * 12, permission_set="Good")],
        {"invalid_target"},
    ),
    (
        "account id in Arabic-Indic digits",
        [],
        [asg_record(2, users=["bob"], targets="\u0661" * 12, permission_set="Good")],
        {"invalid_target"},
    ),
    (
        "account id with the letter O for a zero",
        [],
        [asg_record(2, users=["bob"], targets="12345678901O", permission_set="Good")],
        {"invalid_target"},
    ),
    (
        "account id with a zero-width space",
        [],
        [asg_record(2, users=["bob"], targets="1234567\u200b89012", permission_set="Good")],
        {"invalid_target"},
    ),
    (
        "an OU id with markup",
        [],
        [asg_record(2, users=["bob"], targets="ou-<!channel>", permission_set="Good")],
        {"invalid_target"},
    ),
    (
        "20,000 target lines",
        [],
        [asg_record(2, users=["bob"], targets="\n".join(["nope"] * 20_000), permission_set="Good")],
        {"invalid_target"},
    ),
    ("no principal at all", [], [asg_record(2, users=[], permission_set="Good")], {"no_principals"}),
    (
        "a group name with Slack markup",
        [],
        [
            asg_record(
                2, principal_type="GROUP", group_name="<!channel> <https://evil|x>", permission_set="Good"
            )
        ],
        set(),
    ),
    (
        "a principal type that is not offered",
        [],
        [asg_record(2, principal_type="ROOT", users=["bob"], permission_set="Good")],
        {"no_principals", "invalid_principal_type"},
    ),
    (
        "an expiry date that is no date",
        [],
        [asg_record(2, users=["bob"], expires_on="31/12/2099", permission_set="Good")],
        {"invalid_expiry", "invalid_expires_on"},
    ),
    (
        "a permission set nobody defines",
        [],
        [asg_record(2, users=["bob"], permission_set="Good\u200b")],
        set(),
    ),
]


def _ids(state: Any) -> set[str]:
    return {p.record.record_id for p in state.problems if p.record is not None}


def _bounded(problems: list[Problem]) -> None:
    """What people read of each problem (the comment text, ja and en) is bounded and shows no invisible
    character as if it were not there."""
    for p in problems:
        for language in ("ja", "en"):
            text = render_problem(p, language)
            assert len(text) <= MAX_MESSAGE, (p.code, len(text))
            assert not INVISIBLE & set(text), (p.code, text[:200])


@pytest.mark.parametrize(("kind", "ps", "asg", "wanted"), CATALOG, ids=[c[0] for c in CATALOG])
def test_hostile_record_is_told_and_bounded_and_the_good_record_still_syncs(
    kind: str, ps: list[dict[str, Any]], asg: list[dict[str, Any]], wanted: set[str]
) -> None:
    started = time.process_time()
    state = parse_desired_state([GOOD_PS, *ps], [GOOD_ASG, *asg], CONFIG)
    report = validate_permission_sets(state, None, CONFIG)
    cpu = time.process_time() - started
    problems = [*state.problems, *report.problems]
    hostile = [p for p in problems if p.record is not None and p.record.record_id != "1"]
    if wanted:
        assert wanted & {p.code for p in hostile}, [(p.code, p.message[:120]) for p in hostile]
    assert len(hostile) <= MAX_FINDINGS_PER_RECORD + 10, len(hostile)  # bounded, whatever the record holds
    _bounded(problems)
    # the good records are untouched by their neighbour
    assert not [
        p for p in problems if p.record is not None and p.record.record_id == "1" and p.severity == "error"
    ]
    assert "Good" in state.permission_sets and "Good" not in report.blocked
    assert any(a.permission_set_name == "Good" and a.principal_name == "alice" for a in state.assignments)
    assert cpu < 30, (
        f"{kind}: {cpu:.1f} s of CPU"
    )  # a bound on work, not a timing claim: 30 s is absurdly large


def test_the_catalog_has_thirty_kinds() -> None:
    assert len({c[0] for c in CATALOG}) >= 30
