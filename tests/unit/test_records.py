"""records.py: raw kintone record JSON -> DesiredState, with per-record problems and never a crash."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from idc_sync.config import AssignmentFields, PermissionSetFields, SyncConfig
from idc_sync.idc_fields import normalise_session_duration, normalise_target
from idc_sync.model import (
    CustomerPolicyRef,
    DesiredState,
    PermissionsBoundary,
    PermissionSetSpec,
    Problem,
    RecordRef,
)
from idc_sync.records import (
    parse_customer_policy,
    parse_desired_state,
    parse_permissions_boundary,
)

ACCOUNT = "123456789012"
OU = "ou-ab12-cdefgh34"


# --------------------------------------------------------------------------- record builders (kintone JSON)
def _system(rid: int, modifier: str = "modifier", revision: int = 3) -> dict[str, Any]:
    return {
        "$id": {"type": "__ID__", "value": str(rid)},
        "$revision": {"type": "__REVISION__", "value": str(revision)},
        "Record_number": {"type": "RECORD_NUMBER", "value": str(rid)},
        "Updated_by": {"type": "MODIFIER", "value": {"code": modifier, "name": modifier.title()}},
        "Created_by": {"type": "CREATOR", "value": {"code": "creator", "name": "Creator"}},
        "Created_datetime": {"type": "CREATED_TIME", "value": "2024-05-01T01:02:00Z"},
        "Updated_datetime": {"type": "UPDATED_TIME", "value": "2024-05-02T03:04:00Z"},
    }


def ps_record(
    rid: int,
    name: str = "ReadOnly",
    *,
    description: str = "",
    session_duration: str = "PT1H",
    managed_policies: str = "",
    cmp: list[tuple[str, str]] | None = None,
    inline_policy: str = "",
    permissions_boundary: str = "",
    relay_state: str = "",
    owners: list[str] | None = None,
    modifier: str = "modifier",
    fields: PermissionSetFields | None = None,
) -> dict[str, Any]:
    f = fields or PermissionSetFields()
    rows = [
        {
            "id": str(1000 + i),
            "value": {
                f.cmp_name: {"type": "SINGLE_LINE_TEXT", "value": n},
                f.cmp_path: {"type": "SINGLE_LINE_TEXT", "value": p},
            },
        }
        for i, (n, p) in enumerate(cmp or [])
    ]
    return {
        **_system(rid, modifier),
        f.name: {"type": "SINGLE_LINE_TEXT", "value": name},
        f.description: {"type": "MULTI_LINE_TEXT", "value": description},
        f.session_duration: {"type": "DROP_DOWN", "value": session_duration},
        f.managed_policies: {"type": "MULTI_LINE_TEXT", "value": managed_policies},
        f.customer_managed_policies: {"type": "SUBTABLE", "value": rows},
        f.inline_policy: {"type": "MULTI_LINE_TEXT", "value": inline_policy},
        f.permissions_boundary: {"type": "SINGLE_LINE_TEXT", "value": permissions_boundary},
        f.relay_state: {"type": "SINGLE_LINE_TEXT", "value": relay_state},
        f.owners: {"type": "USER_SELECT", "value": [{"code": c, "name": c.title()} for c in owners or []]},
    }


def asg_record(
    rid: int,
    *,
    principal_type: str = "USER",
    users: list[str] | None = None,
    group_name: str = "",
    targets: str = ACCOUNT,
    permission_set: str = "ReadOnly",
    expires_on: str | None = None,
    reason: str = "",
    modifier: str = "modifier",
    fields: AssignmentFields | None = None,
) -> dict[str, Any]:
    f = fields or AssignmentFields()
    return {
        **_system(rid, modifier),
        f.principal_type: {"type": "RADIO_BUTTON", "value": principal_type},
        f.users: {"type": "USER_SELECT", "value": [{"code": c, "name": c.title()} for c in users or []]},
        f.group_name: {"type": "SINGLE_LINE_TEXT", "value": group_name},
        f.targets: {"type": "MULTI_LINE_TEXT", "value": targets},
        f.permission_set: {"type": "SINGLE_LINE_TEXT", "value": permission_set},
        f.expires_on: {"type": "DATE", "value": expires_on},
        f.reason: {"type": "MULTI_LINE_TEXT", "value": reason},
    }


CONFIG = SyncConfig(permission_sets_app_id="11", assignments_app_id="12")


def parse(
    ps: list[dict[str, Any]], asg: list[dict[str, Any]] | None = None, config: SyncConfig = CONFIG
) -> DesiredState:
    return parse_desired_state(ps, asg or [], config)


def codes(state: DesiredState, severity: str | None = None) -> list[str]:
    return [p.code for p in state.problems if severity is None or p.severity == severity]


def ref(item: Problem | PermissionSetSpec) -> RecordRef:
    assert item.record is not None
    return item.record


def only(state: DesiredState, code: str) -> Problem:
    found = [p for p in state.problems if p.code == code]
    assert len(found) == 1, state.problems
    return found[0]


# --------------------------------------------------------------------------- permission sets
def test_full_permission_set_record() -> None:
    state = parse(
        [
            ps_record(
                5,
                "Developers",
                description="  Developer access  \n",
                session_duration="PT4H",
                managed_policies="ReadOnlyAccess\njob-function/ViewOnlyAccess\n\n"
                "arn:aws:iam::aws:policy/PowerUserAccess\nReadOnlyAccess\n",
                cmp=[("TeamPolicy", ""), ("Other", "/team/"), ("", "")],
                inline_policy='{"Version": "2012-10-17", "Statement": []}\n',
                permissions_boundary="customer:/boundaries/DevBoundary",
                relay_state=" https://console.aws.amazon.com/ec2/ ",
                owners=["alice", "bob", "modifier"],
            )
        ]
    )
    assert state.problems == []
    spec = state.permission_sets["Developers"]
    assert spec.description == "Developer access"
    assert spec.session_duration == "PT4H"
    assert spec.managed_policies == [
        "arn:aws:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
    ]
    assert spec.customer_managed_policies == [
        CustomerPolicyRef(name="TeamPolicy", path="/"),
        CustomerPolicyRef(name="Other", path="/team/"),
    ]
    assert spec.inline_policy == '{"Version": "2012-10-17", "Statement": []}\n'  # kept as written
    assert spec.permissions_boundary == PermissionsBoundary(
        customer_managed_policy=CustomerPolicyRef(name="DevBoundary", path="/boundaries/")
    )
    assert spec.relay_state == "https://console.aws.amazon.com/ec2/"
    ref = spec.record
    assert ref is not None
    assert (ref.app, ref.app_id, ref.record_id, ref.revision) == ("permission_sets", "11", "5", "3")
    assert ref.mentions == ("modifier", "alice", "bob")  # modifier first, owners after, no duplicates
    assert ref.created_at == dt.datetime(2024, 5, 1, 1, 2, tzinfo=dt.UTC)
    assert ref.updated_at == dt.datetime(2024, 5, 2, 3, 4, tzinfo=dt.UTC)
    assert state.records_read == {"permission_sets": 1, "assignments": 0}
    assert state.held_permission_sets == []


def test_minimal_permission_set_defaults() -> None:
    spec = parse([ps_record(1, "Min", session_duration="")]).permission_sets["Min"]
    assert spec.session_duration == "PT1H"
    assert spec.description == ""
    assert spec.managed_policies == [] and spec.customer_managed_policies == []
    assert spec.inline_policy is None and spec.permissions_boundary is None and spec.relay_state is None


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
def test_blank_inline_policy_is_none(text: str) -> None:
    assert parse([ps_record(1, inline_policy=text)]).permission_sets["ReadOnly"].inline_policy is None


def test_invalid_inline_policy_json_is_kept_for_validation() -> None:
    spec = parse([ps_record(1, inline_policy="{not json")]).permission_sets["ReadOnly"]
    assert spec.inline_policy == "{not json"


def test_missing_name() -> None:
    state = parse([ps_record(1, "  "), ps_record(2, "Good")])
    p = only(state, "missing_name")
    assert p.severity == "error" and p.record is not None and p.record.record_id == "1"
    assert p.params == {"field": "name"}
    assert list(state.permission_sets) == ["Good"]  # one bad record never blocks others
    assert state.held_permission_sets == []


def test_duplicate_permission_set_name_first_record_wins_case_insensitive() -> None:
    state = parse([ps_record(9, "admin", owners=["zed"]), ps_record(3, "Admin"), ps_record(4, "Admin")])
    assert list(state.permission_sets) == ["Admin"]
    assert ref(state.permission_sets["Admin"]).record_id == "3"
    dups = [p for p in state.problems if p.code == "duplicate_permission_set_name"]
    assert sorted(ref(p).record_id for p in dups) == ["4", "9"]
    assert all(p.params["first_record_id"] == "3" for p in dups)
    assert ref(next(p for p in dups if ref(p).record_id == "9")).mentions == ("modifier", "zed")
    assert state.held_permission_sets == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT1H", "PT1H"),
        ("PT12H", "PT12H"),
        ("pt2h", "PT2H"),
        ("PT1H30M", "PT1H30M"),
        ("PT90M", "PT90M"),
        ("PT3600S", "PT3600S"),  # sso-admin's Duration allows seconds (it used to be refused here only)
        (" pt1h30m ", "PT1H30M"),
        ("PT13H", None),
        ("PT12H1S", None),
        ("PT30M", None),
        ("P1D", None),
        ("1h", None),
        ("PT", None),
    ],
)
def test_parse_session_duration(value: str, expected: str | None) -> None:
    assert normalise_session_duration(value) == expected
    state = parse([ps_record(1, "Ops", session_duration=value)])
    if expected is None:
        assert codes(state) == ["invalid_session_duration"] and state.held_permission_sets == ["Ops"]
    else:
        assert state.problems == [] and state.permission_sets["Ops"].session_duration == expected


def test_invalid_session_duration_holds_the_permission_set() -> None:
    state = parse([ps_record(1, "Ops", session_duration="PT24H")])
    p = only(state, "invalid_session_duration")
    assert p.params == {"field": "session_duration", "value": "PT24H"}
    assert state.permission_sets == {}
    assert state.held_permission_sets == ["Ops"]


def test_invalid_managed_policy_line_holds_the_whole_permission_set() -> None:
    state = parse(
        [
            ps_record(
                1, "Ops", managed_policies="ReadOnlyAccess\narn:aws:iam::123456789012:policy/Mine\nbad name!"
            )
        ]
    )
    bad = [p for p in state.problems if p.code == "invalid_managed_policy"]
    assert [(p.params["line"], p.params["value"]) for p in bad] == [
        (2, "arn:aws:iam::123456789012:policy/Mine"),
        (3, "name!"),  # "bad" alone is a valid name
    ]
    assert "Ops" not in state.permission_sets and state.held_permission_sets == ["Ops"]


def test_managed_policies_accept_commas_and_whitespace() -> None:
    spec = parse([ps_record(1, managed_policies="  ReadOnlyAccess , SecurityAudit\r\n\t")]).permission_sets[
        "ReadOnly"
    ]
    assert spec.managed_policies == [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/SecurityAudit",
    ]


def test_customer_managed_policies_rows() -> None:
    spec = parse(
        [ps_record(1, cmp=[("B", "team"), ("A", "/"), ("A", ""), ("", ""), ("", "/")])]
    ).permission_sets["ReadOnly"]
    assert spec.customer_managed_policies == [
        CustomerPolicyRef(name="A", path="/"),
        CustomerPolicyRef(name="B", path="/team/"),
    ]


def test_invalid_customer_managed_policy() -> None:
    state = parse([ps_record(1, "X", cmp=[("bad name", "/"), ("", "/orphan/"), ("Ok", "/a b/")])])
    bad = [p for p in state.problems if p.code == "invalid_customer_managed_policy"]
    assert [p.params["row"] for p in bad] == [1, 2, 3]
    assert state.held_permission_sets == ["X"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "PowerUserAccess",
            PermissionsBoundary(managed_policy_arn="arn:aws:iam::aws:policy/PowerUserAccess"),
        ),
        (
            "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
            PermissionsBoundary(managed_policy_arn="arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"),
        ),
        (
            "customer:Boundary",
            PermissionsBoundary(customer_managed_policy=CustomerPolicyRef(name="Boundary")),
        ),
        (
            "Customer:/a/b/Boundary",
            PermissionsBoundary(customer_managed_policy=CustomerPolicyRef(name="Boundary", path="/a/b/")),
        ),
        ("customer:", None),
        ("arn:aws:iam::123456789012:policy/Mine", None),
        ("two words", None),
    ],
)
def test_parse_permissions_boundary(value: str, expected: PermissionsBoundary | None) -> None:
    assert parse_permissions_boundary(value) == expected


def test_invalid_permissions_boundary_problem() -> None:
    state = parse([ps_record(1, "X", permissions_boundary="customer:")])
    assert only(state, "invalid_permissions_boundary").params == {
        "field": "permissions_boundary",
        "value": "customer:",
    }
    assert state.held_permission_sets == ["X"]


def test_parse_customer_policy() -> None:
    assert parse_customer_policy("Name") == CustomerPolicyRef(name="Name", path="/")
    assert parse_customer_policy("/p/q/Name") == CustomerPolicyRef(name="Name", path="/p/q/")
    assert parse_customer_policy("p/Name") == CustomerPolicyRef(name="Name", path="/p/")
    assert parse_customer_policy("") is None


def test_invalid_description_non_latin1_and_too_long() -> None:
    state = parse([ps_record(1, "Ja", description="開発者用"), ps_record(2, "Long", description="x" * 701)])
    bad = [p for p in state.problems if p.code == "invalid_description"]
    assert [ref(p).record_id for p in bad] == ["1", "2"]
    assert bad[0].params["characters"] and bad[1].params["length"] == 701
    assert state.held_permission_sets == ["Ja", "Long"]
    assert parse([ps_record(1, "Ok", description="Café (Latin-1 is fine)")]).problems == []


def test_invalid_relay_state() -> None:
    state = parse([ps_record(1, "X", relay_state="https://例え.jp/")])
    assert only(state, "invalid_relay_state").params["field"] == "relay_state"


def test_several_errors_on_one_record_are_all_reported() -> None:
    state = parse([ps_record(1, "", session_duration="PT99H", managed_policies="a b!")])
    assert set(codes(state)) == {"missing_name", "invalid_session_duration", "invalid_managed_policy"}
    assert state.held_permission_sets == []  # no name: nothing to hold


# --------------------------------------------------------------------------- field codes and missing fields
def test_field_code_overrides() -> None:
    pf = PermissionSetFields(
        name="ps_name", managed_policies="aws_policies", cmp_name="n", cmp_path="p", owners="owner"
    )
    af = AssignmentFields(targets="accounts", permission_set="ps", users="members")
    config = SyncConfig(permission_set_fields=pf, assignment_fields=af)
    state = parse(
        [
            ps_record(
                1, "Custom", managed_policies="ReadOnlyAccess", cmp=[("Team", "/")], owners=["own"], fields=pf
            )
        ],
        [asg_record(2, users=["alice"], targets=ACCOUNT, permission_set="Custom", fields=af)],
        config,
    )
    assert state.problems == []
    spec = state.permission_sets["Custom"]
    assert spec.managed_policies == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    assert spec.customer_managed_policies == [CustomerPolicyRef(name="Team")]
    assert spec.record is not None and spec.record.mentions == ("modifier", "own")
    assert [(a.principal_name, a.target, a.permission_set_name) for a in state.assignments] == [
        ("alice", ACCOUNT, "Custom")
    ]
    assert state.assignments[0].record.app_id == "2"  # default app id from config


def test_missing_field_is_one_run_level_problem_and_holds_names() -> None:
    records = [ps_record(1, "A"), ps_record(2, "B")]
    for r in records:
        del r["inline_policy"]
    state = parse(records, [asg_record(3, users=["u"], permission_set="A")])
    p = only(state, "missing_field")
    assert p.record is None and p.params == {"field": "inline_policy", "app": "permission_sets", "records": 2}
    assert state.permission_sets == {}
    assert state.held_permission_sets == ["A", "B"]
    # the assignment of a held permission set is still understood (plan decides what to do with it)
    assert len(state.assignments) == 1 and "unknown_permission_set" not in codes(state)


def test_missing_field_with_wrong_configured_code_in_assignments() -> None:
    config = SyncConfig(assignment_fields=AssignmentFields(targets="nope"))
    state = parse([ps_record(1)], [asg_record(2, users=["u"]), asg_record(3, users=["v"])], config)
    p = only(state, "missing_field")
    assert p.params == {"field": "nope", "app": "assignments", "records": 2}
    assert state.assignments == []


def test_reason_field_is_optional() -> None:
    record = asg_record(2, users=["u"])
    del record["reason"]
    state = parse([ps_record(1)], [record])
    assert state.problems == [] and len(state.assignments) == 1


def test_unreadable_record_does_not_crash() -> None:
    weird = ps_record(1, "Weird")
    weird["owners"] = {"type": "USER_SELECT", "value": 42}  # not a list
    asg = asg_record(3, users=["u"], permission_set="Fine")
    asg["targets"] = {"type": "MULTI_LINE_TEXT"}  # no value
    state = parse([weird, ps_record(2, "Fine")], [asg, asg_record(4, users=["v"], permission_set="Fine")])
    bad = [p for p in state.problems if p.code == "unreadable_record"]
    assert [ref(p).record_id for p in bad] == ["1", "3"]
    assert "Fine" in state.permission_sets and state.held_permission_sets == ["Weird"]
    assert [a.principal_name for a in state.assignments] == ["v"]


# --------------------------------------------------------------------------- assignments
def test_user_assignment_expands_users_x_targets() -> None:
    state = parse(
        [ps_record(1)],
        [
            asg_record(
                7,
                users=["alice", "bob"],
                targets=f"{ACCOUNT}\n{OU}",
                modifier="carol",
                expires_on="2030-01-31",
            )
        ],
    )
    assert state.problems == []
    got = [(a.principal_type, a.principal_name, a.target, a.permission_set_name) for a in state.assignments]
    assert got == [
        ("USER", "alice", ACCOUNT, "ReadOnly"),
        ("USER", "alice", OU, "ReadOnly"),
        ("USER", "bob", ACCOUNT, "ReadOnly"),
        ("USER", "bob", OU, "ReadOnly"),
    ]
    ref = state.assignments[0].record
    assert (ref.app, ref.app_id, ref.record_id, ref.revision) == ("assignments", "12", "7", "3")
    assert ref.mentions == ("carol",)  # only the modifier for assignment records
    assert all(a.expires_on == dt.date(2030, 1, 31) for a in state.assignments)
    assert state.records_read == {"permission_sets": 1, "assignments": 1}


def test_user_name_template() -> None:
    config = SyncConfig(user_name_template="{code}@example.com")
    state = parse([ps_record(1)], [asg_record(2, users=["alice"])], config)
    assert state.assignments[0].principal_name == "alice@example.com"


@pytest.mark.parametrize("template", ["{login}", "{0}", "{code"])
def test_invalid_user_name_template(template: str) -> None:
    state = parse([ps_record(1)], [asg_record(2, users=["alice"])], SyncConfig(user_name_template=template))
    p = only(state, "invalid_user_name_template")
    assert p.params["template"] == template
    assert state.assignments == []


def test_group_assignment() -> None:
    state = parse([ps_record(1)], [asg_record(2, principal_type="GROUP", group_name="  Platform Admins ")])
    assert [(a.principal_type, a.principal_name) for a in state.assignments] == [("GROUP", "Platform Admins")]


def test_principal_type_is_case_insensitive_and_trimmed() -> None:
    state = parse([ps_record(1)], [asg_record(2, principal_type=" group ", group_name="G")])
    assert state.assignments[0].principal_type == "GROUP"


@pytest.mark.parametrize("value", ["", "ROLE"])
def test_invalid_principal_type(value: str) -> None:
    state = parse([ps_record(1)], [asg_record(2, principal_type=value, users=["alice"])])
    assert only(state, "invalid_principal_type").params == {"field": "principal_type", "value": value}
    assert state.assignments == []


def test_no_principals() -> None:
    state = parse(
        [ps_record(1)],
        [
            asg_record(2, users=[]),
            asg_record(3, principal_type="GROUP", group_name="  "),
            asg_record(4, users=["ok"]),
        ],
    )
    bad = [p for p in state.problems if p.code == "no_principals"]
    assert [(ref(p).record_id, p.params["principal_type"]) for p in bad] == [("2", "USER"), ("3", "GROUP")]
    assert [a.principal_name for a in state.assignments] == ["ok"]


def test_ignored_fields_are_warnings() -> None:
    state = parse(
        [ps_record(1)],
        [
            asg_record(2, users=["alice"], group_name="G"),
            asg_record(3, principal_type="GROUP", group_name="G", users=["bob"]),
        ],
    )
    assert codes(state) == ["ignored_field", "ignored_field"]
    assert codes(state, "error") == []
    assert [(a.principal_type, a.principal_name) for a in state.assignments] == [
        ("USER", "alice"),
        ("GROUP", "G"),
    ]


def test_targets_whitespace_separators_and_normalisation() -> None:
    text = (
        f'  {ACCOUNT}  \n\n\t1111-2222-3333, 444455556666;OU-AB12-CDEFGH34 \r\n  \n"555566667777"\n{ACCOUNT}'
    )
    state = parse([ps_record(1)], [asg_record(2, users=["a"], targets=text)])
    assert state.problems == []
    assert [a.target for a in state.assignments] == [
        ACCOUNT,
        "111122223333",
        "444455556666",
        OU,
        "555566667777",
    ]


def test_japanese_separators() -> None:
    state = parse(
        [ps_record(1)],
        [asg_record(2, users=["a"], targets="111122223333\u3001444455556666\uff0c555566667777")],
    )
    assert [a.target for a in state.assignments] == ["111122223333", "444455556666", "555566667777"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ACCOUNT, ACCOUNT),
        ("1234-5678-9012", ACCOUNT),
        (OU, OU),
        ("Ou-AB12-CDEFGH34", OU),
        ("12345678901", None),
        ("1234567890123", None),
        ("r-ab12", None),
        ("ou-ab", None),
        ("account-1", None),
    ],
)
def test_normalise_target(value: str, expected: str | None) -> None:
    assert normalise_target(value) == expected


def test_invalid_target_line_does_not_block_the_other_targets() -> None:
    state = parse(
        [ps_record(1)],
        [asg_record(2, users=["alice"], targets=f"{ACCOUNT}\n12345678901\nprod-account\n{OU}")],
    )
    bad = [p for p in state.problems if p.code == "invalid_target"]
    assert [(p.params["line"], p.params["value"]) for p in bad] == [(2, "12345678901"), (3, "prod-account")]
    assert "leading zero" in bad[0].message
    assert [a.target for a in state.assignments] == [ACCOUNT, OU]


def test_no_targets() -> None:
    state = parse([ps_record(1)], [asg_record(2, users=["alice"], targets=" \n \n")])
    assert only(state, "no_targets").params == {"field": "targets"}
    assert state.assignments == []


def test_only_invalid_targets_gives_no_assignment() -> None:
    state = parse([ps_record(1)], [asg_record(2, users=["alice"], targets="nope")])
    assert codes(state) == ["invalid_target"] and state.assignments == []


def test_missing_and_unknown_permission_set() -> None:
    state = parse(
        [ps_record(1, "ReadOnly")],
        [asg_record(2, users=["a"], permission_set=""), asg_record(3, users=["a"], permission_set="Nope")],
    )
    assert only(state, "missing_permission_set").params == {"field": "permission_set"}
    # A name the permission sets app does not have may be the old name of a renamed record (a lookup keeps
    # the value it copied): the record is understood, and the plan, which knows IdC, says which it is.
    assert "unknown_permission_set" not in codes(state)
    assert [a.permission_set_name for a in state.assignments] == ["Nope"]


def test_permission_set_with_errors_is_not_unknown_for_assignments() -> None:
    state = parse(
        [ps_record(1, "Broken", session_duration="PT99H")],
        [asg_record(2, users=["a"], permission_set="Broken")],
    )
    assert codes(state) == ["invalid_session_duration"]
    assert state.held_permission_sets == ["Broken"]
    assert [a.permission_set_name for a in state.assignments] == ["Broken"]


@pytest.mark.parametrize("value", ["2024/01/31", "31.01.2024", "tomorrow", "2024-02-30"])
def test_invalid_expires_on_rejects_the_whole_record(value: str) -> None:
    state = parse([ps_record(1)], [asg_record(2, users=["a"], expires_on=value)])
    assert only(state, "invalid_expires_on").params == {"field": "expires_on", "value": value}
    assert state.assignments == []  # never turn a mistyped expiry into permanent access


@pytest.mark.parametrize("value", [None, "", "  "])
def test_empty_expires_on_is_permanent(value: str | None) -> None:
    state = parse([ps_record(1)], [asg_record(2, users=["a"], expires_on=value)])
    assert state.problems == [] and state.assignments[0].expires_on is None


def test_duplicate_assignments_keep_first_record_and_warn_later() -> None:
    state = parse(
        [ps_record(1)],
        [
            asg_record(20, users=["alice", "bob"], targets=f"{ACCOUNT}\n{OU}"),
            asg_record(10, users=["alice"], targets=ACCOUNT),
        ],
    )
    assert len(state.assignments) == 4
    first = next(a for a in state.assignments if a.principal_name == "alice" and a.target == ACCOUNT)
    assert first.record.record_id == "10"  # records are processed by record id
    p = only(state, "duplicate_assignment")
    assert p.severity == "warning" and p.record is not None and p.record.record_id == "20"
    assert p.params["count"] == 1 and p.params["first_record_ids"] == "10"
    assert p.params["example"] == f"USER:alice -> {ACCOUNT} (ReadOnly)"


def test_duplicate_assignment_keeps_the_most_generous_expiry() -> None:
    state = parse(
        [ps_record(1)],
        [
            asg_record(1, users=["a"], expires_on="2030-01-01"),
            asg_record(2, users=["a"], expires_on="2031-01-01"),
            asg_record(3, users=["b"], expires_on="2030-01-01"),
            asg_record(4, users=["b"]),
        ],
    )
    by_user = {a.principal_name: a for a in state.assignments}
    assert by_user["a"].expires_on == dt.date(2031, 1, 1)
    assert by_user["a"].record.record_id == "1"
    assert by_user["b"].expires_on is None
    assert codes(state) == ["duplicate_assignment", "duplicate_assignment"]


def test_same_user_twice_in_one_record_is_not_a_duplicate() -> None:
    record = asg_record(2, users=["a"], targets=ACCOUNT)
    record["users"]["value"].append({"code": "a", "name": "A"})
    state = parse([ps_record(1)], [record])
    assert state.problems == [] and len(state.assignments) == 1


def test_users_and_groups_with_same_name_are_distinct() -> None:
    state = parse(
        [ps_record(1)],
        [asg_record(1, users=["ops"]), asg_record(2, principal_type="GROUP", group_name="ops")],
    )
    assert state.problems == [] and len(state.assignments) == 2


def test_app_ids_override() -> None:
    state = parse_desired_state(
        [ps_record(1)],
        [asg_record(2, users=["a"])],
        CONFIG,
        app_ids={"permission_sets": "101", "assignments": "102"},
    )
    assert ref(state.permission_sets["ReadOnly"]).app_id == "101"
    assert state.assignments[0].record.app_id == "102"


def test_empty_input() -> None:
    state = parse([], [])
    assert state.permission_sets == {} and state.assignments == [] and state.problems == []
    assert state.records_read == {"permission_sets": 0, "assignments": 0}


def test_one_bad_record_among_many() -> None:
    ps = [ps_record(i, f"PS{i}") for i in range(1, 51)] + [ps_record(99, "Bad", session_duration="x")]
    asg = [asg_record(100 + i, users=[f"u{i}"], permission_set=f"PS{i}") for i in range(1, 51)]
    asg.append(asg_record(999, users=["x"], permission_set="Missing"))
    state = parse(ps, asg)
    assert len(state.permission_sets) == 50 and len(state.assignments) == 51  # "Missing": the plan decides
    assert sorted(codes(state)) == ["invalid_session_duration"]


def test_state_round_trips_as_json() -> None:
    state = parse(
        [ps_record(1, owners=["o"])],
        [asg_record(2, users=["a"], expires_on="2030-01-01", targets="x\n" + ACCOUNT)],
    )
    again = DesiredState.model_validate(state.model_dump(mode="json"))
    assert again == state


def test_problem_messages_are_english_and_say_what_to_do() -> None:
    state = parse(
        [ps_record(1, ""), ps_record(2, "X", session_duration="bad")],
        [asg_record(3, principal_type="?", targets="", permission_set="", expires_on="no")],
    )
    for p in state.problems:
        assert (p.message and p.message.isascii()) or "'" in p.message
        assert p.code and p.severity == "error"
    assert {p.code for p in state.problems} >= {
        "missing_name",
        "invalid_session_duration",
        "invalid_principal_type",
        "no_targets",
        "missing_permission_set",
        "invalid_expires_on",
    }


def test_wrong_subtable_field_code_is_not_read_as_empty() -> None:
    config = SyncConfig(permission_set_fields=PermissionSetFields(cmp_name="policy_name"))
    state = parse([ps_record(1, "T", cmp=[("TeamPolicy", "/")]), ps_record(2, "NoRows")], config=config)
    p = only(state, "missing_field")
    assert p.params == {
        "field": "customer_managed_policies.policy_name",
        "app": "permission_sets",
        "records": 1,
    }
    assert state.held_permission_sets == ["T"]
    assert list(state.permission_sets) == ["NoRows"]  # no rows: nothing can be misread


# --------------------------------------------------------------------------- hostile records (issue 9)
@pytest.mark.parametrize(
    "value",
    [
        "\uff12" * 12,  # full-width digits
        "\u0662" * 12,  # Arabic-Indic digits
        "\u06f2" * 12,  # extended Arabic-Indic digits
        "\uff11\uff12\uff13\uff14-\uff15\uff16\uff17\uff18-\uff19\uff10\uff11\uff12",  # dashed, full-width
        "12345678901\uff12",  # one full-width digit among ASCII ones
        "ou-ab12-\u212adefgh34",  # KELVIN SIGN: .lower() makes it an ASCII "k"
    ],
)
def test_non_ascii_digits_and_letters_are_not_ids(value: str) -> None:
    assert normalise_target(value) is None
    state = parse([ps_record(1)], [asg_record(2, users=["alice"], targets=value)])
    problem = only(state, "invalid_target")
    assert problem.params["value"] == value
    assert state.assignments == []


def test_non_ascii_digit_target_says_to_use_ascii_digits() -> None:
    from idc_sync import messages

    state = parse([ps_record(1)], [asg_record(2, users=["alice"], targets="\uff12" * 12)])
    problem = only(state, "invalid_target")
    assert "ASCII digits 0-9" in problem.message and "leading zero" not in problem.message
    assert "ASCII digits 0-9" in messages.render_problem(problem, "en")
    assert "半角数字" in messages.render_problem(problem, "ja")


@pytest.mark.parametrize("value", ["PT\uff14H", "PT\u0664H", "PT1H\uff13\uff10M"])
def test_session_duration_with_non_ascii_digits_is_invalid(value: str) -> None:
    assert normalise_session_duration(value) is None
    state = parse([ps_record(1, session_duration=value)])
    assert codes(state) == ["invalid_session_duration"]
    assert state.permission_sets == {} and state.held_permission_sets == ["ReadOnly"]


def test_customer_policy_name_must_be_ascii() -> None:
    state = parse([ps_record(1, cmp=[("\u958b\u767a", "/")])])
    assert codes(state) == ["invalid_customer_managed_policy"]


def test_hostile_inline_policies_are_kept_as_text_for_validation() -> None:
    deep = "[" * 3000
    huge = '{"Statement": [' + ", ".join(["{}"] * 10000) + "]}"
    state = parse([ps_record(1, "Deep", inline_policy=deep), ps_record(2, "Huge", inline_policy=huge)])
    assert state.problems == []
    assert state.permission_sets["Deep"].inline_policy == deep
    assert state.permission_sets["Huge"].inline_policy == huge


def test_unexpected_error_in_one_record_is_its_problem_and_logged_with_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from idc_sync import records

    real = records._parse_permission_set

    def parse_one(record: dict[str, Any], config: SyncConfig, app_id: str) -> Any:
        if record["name"]["value"] == "Bad":
            raise RecursionError("maximum recursion depth exceeded")
        return real(record, config, app_id)

    monkeypatch.setattr(records, "_parse_permission_set", parse_one)
    with caplog.at_level("ERROR", logger="idc_sync.records"):
        state = parse([ps_record(1, "Bad"), ps_record(2, "Good")])
    problem = only(state, "unreadable_record")
    assert ref(problem).record_id == "1"
    assert problem.params == {"error": "RecursionError: maximum recursion depth exceeded"}
    assert list(state.permission_sets) == ["Good"] and state.held_permission_sets == ["Bad"]
    assert any(r.exc_info and r.exc_info[0] is RecursionError for r in caplog.records)
