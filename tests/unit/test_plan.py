"""compute_plan / render_plan: pure tests on hand-built desired and observed states."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from idc_sync.config import SyncConfig
from idc_sync.model import (
    AssignmentSpec,
    CustomerPolicyRef,
    DesiredState,
    ObservedState,
    OpKind,
    PermissionsBoundary,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    Problem,
    Scope,
)
from idc_sync.plan import DRIFT_REPORT, PRINCIPAL_PENDING, compute_plan, permission_set_changes, render_plan
from tests.unit.builders import (
    A1,
    A2,
    A3,
    A4,
    A5,
    MGMT,
    NESTED,
    PROD,
    RO,
    TODAY,
    all_accounts,
    asg,
    asg_rec,
    codes,
    held,
    keys,
    observed,
    plan_of,
    ps_arn,
    ps_rec,
    spec,
    state,
)


# --------------------------------------------------------------------------- permission sets
def test_new_permission_set_is_created_with_its_spec_and_record() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()})
    plan, problems = plan_of(desired, observed())
    assert keys(plan) == ["create_permission_set:Dev"]
    op = plan.operations[0]
    assert op.spec is not None and op.spec.managed_policies == [RO]
    assert op.records == [ps_rec("ps-Dev")]
    assert problems == []


def test_unchanged_managed_permission_set_plans_nothing() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()})
    plan, problems = plan_of(desired, observed([state(provisioned_accounts=[A1])]))
    assert plan.is_empty() and problems == []


def test_changed_fields_update_then_provision_every_provisioned_account() -> None:
    desired = DesiredState(
        permission_sets={
            "Dev": spec(
                description="new",
                session_duration="PT4H",
                relay_state="https://console.aws.amazon.com/s3",
                managed_policies=[RO, "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"],
                customer_managed_policies=[CustomerPolicyRef(name="Extra", path="/team/")],
                permissions_boundary=PermissionsBoundary(managed_policy_arn=RO),
                inline_policy='{"Version":"2012-10-17","Statement":[]}',
            )
        }
    )
    obs = observed([state(provisioned_accounts=[A1, A2], stale_accounts=[A3])])
    plan, _ = plan_of(desired, obs)
    assert keys(plan) == [
        "update_permission_set:Dev",
        f"provision_permission_set:Dev:{A1}",
        f"provision_permission_set:Dev:{A2}",
        f"provision_permission_set:Dev:{A3}",
    ]
    update = plan.operations[0]
    assert set(update.changes) == {
        "description",
        "session_duration",
        "relay_state",
        "managed_policies",
        "customer_managed_policies",
        "permissions_boundary",
        "inline_policy",
    }
    assert update.changes["session_duration"] == {"from": "PT1H", "to": "PT4H"}
    assert update.permission_set_arn == ps_arn(1)
    assert all(op.reason == "updated" for op in plan.of_kind(OpKind.PROVISION_PERMISSION_SET))


def test_inline_policy_and_equivalent_values_do_not_churn() -> None:
    desired_text = """{
      "Version": "2012-10-17",
      "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": ["*"]}
    }"""
    seen = (
        '{"Statement":[{"Resource":"*","Action":["s3:GetObject"],"Effect":"Allow"}],"Version":"2012-10-17"}'
    )
    desired = DesiredState(
        permission_sets={
            "Dev": spec(
                inline_policy=desired_text,
                session_duration="PT60M",
                customer_managed_policies=[CustomerPolicyRef(name="X", path="team")],
                relay_state="",
            )
        }
    )
    obs = observed(
        [
            state(
                inline_policy=seen,
                session_duration="PT1H",
                customer_managed_policies=[CustomerPolicyRef(name="X", path="/team/")],
                relay_state=None,
            )
        ]
    )
    plan, problems = plan_of(desired, obs)
    assert plan.is_empty(), render_plan(plan)
    assert problems == []


def test_invalid_desired_inline_policy_is_a_change_not_a_crash() -> None:
    desired = DesiredState(permission_sets={"Dev": spec(inline_policy="{not json")})
    plan, _ = plan_of(desired, observed([state(inline_policy='{"Version":"2012-10-17","Statement":[]}')]))
    assert keys(plan) == ["update_permission_set:Dev"]
    assert "inline_policy" in plan.operations[0].changes


def test_stale_accounts_are_provisioned_without_update() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()})
    plan, _ = plan_of(desired, observed([state(provisioned_accounts=[A1, A2], stale_accounts=[A2])]))
    assert keys(plan) == [f"provision_permission_set:Dev:{A2}"]
    assert plan.operations[0].reason == "stale provisioning"
    assert plan.operations[0].account_id == A2


def test_unmanaged_permission_set_is_never_touched() -> None:
    desired = DesiredState(
        permission_sets={"AWSAdministratorAccess": spec("AWSAdministratorAccess", description="mine")},
        assignments=[asg(A1, ps="AWSAdministratorAccess")],
    )
    obs = observed(
        [state("AWSAdministratorAccess", 9, managed=False, provisioned_accounts=[A1], stale_accounts=[A1])],
        # an assignment of an unmanaged permission set (the snapshot would not even read it)
        [held(A2, 9)],
    )
    plan, problems = plan_of(desired, obs)
    assert plan.operations == []
    assert codes(problems) == ["permission_set_not_managed"]
    assert problems[0].record == ps_rec("ps-AWSAdministratorAccess")
    assert "not managed by this pipeline" in problems[0].message
    reasons = {s.key: s.reason for s in plan.skipped}
    assert reasons["permission_set:AWSAdministratorAccess"] == "exists and is not managed by this pipeline"
    assert f"create_assignment:{A1}:AWSAdministratorAccess:USER:alice" in reasons


def test_permission_set_provisioned_to_management_account_is_not_updated() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec(description="changed")},
        assignments=[asg(A2)],
    )
    obs = observed(
        [state(provisioned_accounts=[MGMT, A1], stale_accounts=[A1])], [held(A1), held(A5, 1, "u-bob")]
    )
    plan, problems = plan_of(desired, obs)
    # IdC refuses every write on it from the delegated administrator: nothing at all is planned,
    # not even assignments in member accounts (creations nor deletions)
    assert plan.operations == []
    assert codes(problems) == ["provisioned_to_management_account"]
    assert "separate permission set" in problems[0].message
    assert problems[0].record == ps_rec("ps-Dev")
    reasons = {s.key: s.reason for s in plan.skipped}
    for key in (
        "update_permission_set:Dev",
        f"provision_permission_set:Dev:{A1}",
        f"create_assignment:{A2}:Dev:USER:alice",
        f"delete_assignment:{A1}:Dev:USER:alice",
        f"delete_assignment:{A5}:Dev:USER:bob",
    ):
        assert reasons[key] == "provisioned to the management account", key
    assert MGMT not in all_accounts(plan)


def test_managed_permission_set_not_in_kintone_is_deleted_after_its_assignments() -> None:
    obs = observed(
        [state("Old", 2, provisioned_accounts=[A1])], [held(A1, 2), held(A2, 2, "g-admins", "GROUP")]
    )
    plan, _ = plan_of(DesiredState(records_read={"assignments": 3}), obs)
    assert keys(plan) == [
        f"delete_assignment:{A1}:Old:USER:alice",
        f"delete_assignment:{A2}:Old:GROUP:Admins",
        "delete_permission_set:Old",
    ]
    assert all(op.reason == "not in kintone" for op in plan.operations)
    assert plan.managed_assignment_count == 2


def test_permission_set_with_record_errors_is_protected() -> None:
    bad = Problem(
        code="invalid_session_duration", message="x", record=ps_rec("ps-Old"), params={"name": "Old"}
    )
    obs = observed([state("Old", 2)], [held(A1, 2)])
    plan, _ = plan_of(DesiredState(problems=[bad]), obs)
    assert plan.operations == []
    assert {s.key: s.reason for s in plan.skipped} == {
        f"delete_assignment:{A1}:Old:USER:alice": "kept: its permission set record has errors",
        "delete_permission_set:Old": "kept: its permission set record has errors",
    }


def test_permission_set_provisioned_to_management_account_is_not_deleted() -> None:
    obs = observed([state("Old", 2, provisioned_accounts=[MGMT])])
    plan, problems = plan_of(DesiredState(), obs)
    assert plan.operations == []
    assert codes(problems) == ["provisioned_to_management_account"]
    assert problems[0].record is None


def test_unmanaged_permission_set_not_in_kintone_is_left_alone() -> None:
    plan, problems = plan_of(DesiredState(), observed([state("ControlTower", 3, managed=False)]))
    assert plan.operations == [] and problems == []


# --------------------------------------------------------------------------- assignments
def test_account_target_creates_assignment_with_principal_id() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(A1)])
    plan, problems = plan_of(desired, observed([state()]))
    assert keys(plan) == [f"create_assignment:{A1}:Dev:USER:alice"]
    op = plan.operations[0]
    assert (op.principal_id, op.principal_type, op.permission_set_arn) == ("u-alice", "USER", ps_arn(1))
    assert op.records == [asg_rec("10")]
    assert problems == []


def test_assignment_for_new_permission_set_has_no_arn_yet() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(A1, "Dev", "Admins", "GROUP")])
    plan, _ = plan_of(desired, observed())
    assert keys(plan) == ["create_permission_set:Dev", f"create_assignment:{A1}:Dev:GROUP:Admins"]
    assert plan.operations[1].permission_set_arn is None
    assert plan.operations[1].principal_id == "g-admins"


def test_ou_target_expands_nested_active_accounts_only() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(PROD)])
    plan, problems = plan_of(desired, observed([state()]))
    assert sorted(op.account_id for op in plan.operations) == [A2, A3, A5]  # not A4 (SUSPENDED)
    assert problems == []


def test_ou_containing_management_account_skips_it_silently() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg("r-ab12")])
    plan, problems = plan_of(desired, observed([state()]))
    assert MGMT not in all_accounts(plan)
    assert sorted(op.account_id for op in plan.operations) == [A1, A2, A3, A5]
    assert problems == []


def test_management_account_target_is_never_an_operation() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(MGMT)])
    # even an observed managed assignment in the management account is never deleted
    plan, problems = plan_of(desired, observed([state()], [held(MGMT, 1, "u-bob")]))
    assert plan.operations == []
    assert codes(problems) == ["management_account_target"]
    assert problems[0].record == asg_rec("10")
    assert f"create_assignment:{MGMT}:Dev:USER:alice" in {s.key for s in plan.skipped}
    assert plan.managed_assignment_count == 0


def test_target_problems_unknown_and_inactive() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()},
        assignments=[
            asg("999999999999", rid="1"),
            asg("ou-ab12-zzzzzzzz", rid="2"),
            asg(A4, rid="3"),
            asg("foo", rid="4"),
        ],
    )
    plan, problems = plan_of(desired, observed([state()]))
    assert plan.operations == []
    by_code = {p.code: p for p in problems}
    assert set(by_code) == {"unknown_account", "unknown_ou", "account_not_active", "invalid_target"}
    assert by_code["account_not_active"].severity == "warning"
    assert by_code["account_not_active"].params == {"account_id": A4, "state": "SUSPENDED"}
    assert by_code["unknown_ou"].record == asg_rec("2")


def test_assignment_in_inactive_account_is_not_deleted_while_a_record_names_it() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(A4)])
    plan, _ = plan_of(desired, observed([state()], [held(A4)]))
    # the account is SUSPENDED: nothing created, and the existing assignment is not removed as
    # "not in kintone" either (its record still asks for it; the warning tells the requester)
    assert plan.operations == []
    assert [s.key for s in plan.skipped] == [f"delete_assignment:{A4}:Dev:USER:alice"]
    # same through an OU, and once the record is gone it is deleted
    plan, _ = plan_of(
        DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(NESTED)]),
        obs_a4 := observed([state()], [held(A4)]),
    )
    assert keys(plan) == [f"create_assignment:{A3}:Dev:USER:alice"]
    plan, _ = plan_of(DesiredState(permission_sets={"Dev": spec()}), obs_a4)
    assert keys(plan) == [f"delete_assignment:{A4}:Dev:USER:alice"]


def test_expired_assignment_is_deleted_with_reason_and_record() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()},
        assignments=[asg(A1, expires_on=TODAY - dt.timedelta(days=1)), asg(A2, expires_on=TODAY)],
    )
    obs = observed([state()], [held(A1), held(A2)])
    plan, _ = plan_of(desired, obs)
    assert keys(plan) == [f"delete_assignment:{A1}:Dev:USER:alice"]
    assert plan.operations[0].reason == "expired"
    assert plan.operations[0].records == [asg_rec("10")]


def test_expired_but_never_created_plans_nothing() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()}, assignments=[asg(A1, expires_on=TODAY - dt.timedelta(days=1))]
    )
    plan, _ = plan_of(desired, observed([state()]))
    assert plan.operations == []


def test_one_active_record_wins_over_an_expired_one() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()},
        assignments=[asg(A1, rid="1", expires_on=TODAY - dt.timedelta(days=3)), asg(A1, rid="2")],
    )
    plan, _ = plan_of(desired, observed([state()], [held(A1)]))
    assert plan.operations == []


def test_same_assignment_from_two_records_is_one_operation() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()}, assignments=[asg(A1, rid="1"), asg(PROD, rid="2"), asg(A2, rid="3")]
    )
    plan, _ = plan_of(desired, observed([state()]))
    ops = {op.account_id: op for op in plan.operations}
    assert ops[A2].records == [asg_rec("2"), asg_rec("3")]
    assert ops[A1].records == [asg_rec("1")]


def test_observed_assignment_not_in_kintone_is_deleted_with_readable_name() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(A1)])
    obs = observed([state()], [held(A1), held(A2, 1, "u-bob"), held(A3, 1, "u-gone")])
    plan, _ = plan_of(desired, obs)
    assert keys(plan) == [f"delete_assignment:{A2}:Dev:USER:bob", f"delete_assignment:{A3}:Dev:USER:u-gone"]
    assert plan.operations[0].principal_name == "bob"


def test_missing_principal_is_pending_not_error() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()},
        assignments=[
            asg(A1, name="carol"),
            asg(A2, name="carol"),
            asg(A1, name="NewTeam", ptype="GROUP", rid="11"),
        ],
    )
    plan, problems = plan_of(desired, observed([state()], missing=["USER:carol", "GROUP:NewTeam"]))
    assert plan.operations == []
    assert codes(problems) == ["principal_not_found", "principal_not_found"]
    assert {p.severity for p in problems} == {"pending"}
    assert problems[0].params == {"principal_type": "USER", "principal_name": "carol"}
    assert {s.reason for s in plan.skipped} == {PRINCIPAL_PENDING}
    assert len(plan.skipped) == 3


def test_unknown_permission_set_in_assignment() -> None:
    desired = DesiredState(assignments=[asg(A1, ps="Nope")])
    plan, problems = plan_of(desired, observed())
    assert plan.operations == []
    assert codes(problems) == ["unknown_permission_set"]
    assert problems[0].params == {"permission_set": "Nope", "name": "Nope", "field": "permission_set"}


def test_problem_already_reported_by_records_is_not_repeated() -> None:
    earlier = Problem(code="unknown_permission_set", message="x", record=asg_rec("10"))
    desired = DesiredState(assignments=[asg(A1, ps="Nope")], problems=[earlier])
    _, problems = plan_of(desired, observed())
    assert problems == []


def test_assignment_of_unmanaged_permission_set_not_in_kintone_keeps_existing() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(A1, ps="Ghost")])
    obs = observed([state(), state("Ghost", 5)], [held(A1, 5)])
    plan, problems = plan_of(desired, obs)
    # the record names a managed permission set that is not in the permission set app: keep what exists
    assert keys(plan, OpKind.DELETE_ASSIGNMENT) == []
    assert "unknown_permission_set" in codes(problems)


# --------------------------------------------------------------------------- drift mode
def test_report_mode_reports_deletions_and_updates_instead_of_applying() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec(description="changed")},
        assignments=[asg(A1), asg(A5, name="bob")],
    )
    obs = observed([state(provisioned_accounts=[A2]), state("Old", 2)], [held(A2), held(A1, 2)])
    plan, _ = plan_of(desired, obs, drift_mode="report")
    assert keys(plan) == [f"create_assignment:{A1}:Dev:USER:alice", f"create_assignment:{A5}:Dev:USER:bob"]
    reasons = {s.key: s.reason for s in plan.skipped}
    assert reasons == {
        "update_permission_set:Dev": DRIFT_REPORT,
        f"provision_permission_set:Dev:{A2}": DRIFT_REPORT,
        f"delete_assignment:{A2}:Dev:USER:alice": DRIFT_REPORT,
        f"delete_assignment:{A1}:Old:USER:alice": DRIFT_REPORT,
        "delete_permission_set:Old": DRIFT_REPORT,
    }


def test_bad_drift_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        plan_of(DesiredState(), observed(), drift_mode="yolo")


# --------------------------------------------------------------------------- scope
def test_scope_limits_accounts_and_permission_sets() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec(description="x"), "Ops": spec("Ops")},
        assignments=[asg(PROD), asg(A1, ps="Ops")],
    )
    obs = observed(
        [state(provisioned_accounts=[A2, A3]), state("Gone", 3)],
        [held(A2, 1, "u-bob"), held(A3, 1, "u-bob"), held(A1, 3)],
        scoped=True,
    )
    scope = Scope(accounts=[A2], permission_sets=["Dev", "Gone"])
    plan, _ = plan_of(desired, obs, scope=scope)
    assert keys(plan) == [
        "update_permission_set:Dev",
        f"provision_permission_set:Dev:{A2}",
        f"create_assignment:{A2}:Dev:USER:alice",
        f"delete_assignment:{A2}:Dev:USER:bob",
    ]
    # no Ops creation (out of scope), no deletion of Gone (assignments of other accounts were not read)


def test_scope_defaults_to_the_snapshot_scope_and_refuses_to_widen() -> None:
    desired = DesiredState(permission_sets={"Dev": spec(), "Ops": spec("Ops")})
    scope = Scope(permission_sets=["Ops"])
    obs = observed(scoped=True, scope=scope)
    plan, _ = plan_of(desired, obs)
    assert keys(plan) == ["create_permission_set:Ops"]
    with pytest.raises(ValueError):
        plan_of(desired, observed(scoped=True))


# --------------------------------------------------------------------------- shape of the plan
def big_case() -> tuple[DesiredState, ObservedState]:
    desired = DesiredState(
        permission_sets={"Dev": spec(description="d"), "New": spec("New"), "Ops": spec("Ops")},
        assignments=[asg(PROD, ps="New"), asg(A1, ps="Dev", name="Admins", ptype="GROUP"), asg(A1, ps="Ops")],
    )
    obs = observed(
        [
            state(provisioned_accounts=[A1], stale_accounts=[]),
            state("Ops", 2, stale_accounts=[A5]),
            state("Old", 3),
        ],
        [held(A1, 1, "g-admins", "GROUP"), held(A1, 1, "u-bob"), held(A2, 3)],
    )
    return desired, obs


def test_operations_are_ordered_by_kind_then_key_and_keys_are_stable() -> None:
    desired, obs = big_case()
    plan, _ = plan_of(desired, obs)
    kinds = [op.kind for op in plan.operations]
    order = list(OpKind)
    assert kinds == sorted(kinds, key=order.index)
    for kind in OpKind:
        ks = keys(plan, kind)
        assert ks == sorted(ks)
    assert keys(plan) == [
        "create_permission_set:New",
        "update_permission_set:Dev",
        f"provision_permission_set:Dev:{A1}",
        f"provision_permission_set:Ops:{A5}",
        f"create_assignment:{A1}:Ops:USER:alice",
        f"create_assignment:{A2}:New:USER:alice",
        f"create_assignment:{A3}:New:USER:alice",
        f"create_assignment:{A5}:New:USER:alice",
        f"delete_assignment:{A1}:Dev:USER:bob",
        f"delete_assignment:{A2}:Old:USER:alice",
        "delete_permission_set:Old",
    ]
    again, _ = plan_of(desired.model_copy(deep=True), obs.model_copy(deep=True))
    assert keys(again) == keys(plan)


def test_plan_round_trips_through_json() -> None:
    desired, obs = big_case()
    plan, problems = plan_of(desired, obs)
    text = json.dumps(plan.model_dump(mode="json"))
    back = Plan.model_validate(json.loads(text))
    assert back == plan
    assert [Problem.model_validate(p.model_dump(mode="json")) for p in problems] == problems
    # the observed state crosses XCom too
    assert ObservedState.model_validate(json.loads(obs.model_dump_json())) == obs


def test_render_plan_is_terraform_like() -> None:
    desired, obs = big_case()
    plan, _ = plan_of(desired, obs)
    text = render_plan(plan)
    assert text.startswith("Plan: 5 to create, 3 to change, 3 to delete")
    assert "  + permission set  New" in text
    assert "  ~ permission set  Dev" in text
    assert '        description: "" -> "d"' in text
    assert f"  + assignment  {A2}  New  USER alice  (new record)" in text
    assert f"  ~ provision  Ops -> {A5}  (stale provisioning)" in text
    assert f"  - assignment  {A1}  Dev  USER bob  (not in kintone)" in text
    assert "  - permission set  Old" in text
    empty = render_plan(Plan())
    assert "No changes" in empty


def test_permission_set_changes_reports_from_and_to() -> None:
    changes = permission_set_changes(spec(description="b"), state(description="a"))
    assert changes == {"description": {"from": "a", "to": "b"}}


def test_default_today_uses_the_configured_timezone() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()}, assignments=[asg(A1, expires_on=dt.date(2000, 1, 1))]
    )
    plan, _ = compute_plan(desired, observed([state()], [held(A1)]), SyncConfig(timezone="Asia/Tokyo"))
    assert plan.operations[0].reason == "expired"


# --------------------------------------------------------------------------- held records, full resync
def test_held_permission_set_is_neither_updated_nor_deleted_but_assignments_follow() -> None:
    desired = DesiredState(
        held_permission_sets=["Dev", "Brand"],
        assignments=[asg(A1), asg(A5, name="bob"), asg(A1, ps="Brand")],
    )
    obs = observed([state(stale_accounts=[A2])], [held(A1), held(A2, 1, "u-bob")])
    plan, problems = plan_of(desired, obs)
    # Dev exists and is managed: new assignment made, nothing deleted, no update, no PS deletion
    assert keys(plan) == [f"create_assignment:{A5}:Dev:USER:bob"]
    reasons = {s.key: s.reason for s in plan.skipped}
    assert reasons[f"delete_assignment:{A2}:Dev:USER:bob"] == "kept: its permission set record has errors"
    # Brand does not exist yet: waits for its record to be fixed, without a second problem
    assert reasons[f"create_assignment:{A1}:Brand:USER:alice"] == "its permission set record has errors"
    assert problems == []


def test_full_resync_provisions_every_account_but_never_the_management_account() -> None:
    desired = DesiredState(permission_sets={"Dev": spec(), "Root": spec("Root")})
    obs = observed(
        [
            state(provisioned_accounts=[A1, A2], stale_accounts=[A2]),
            state("Root", 2, provisioned_accounts=[MGMT, A1]),
        ]
    )
    plan, problems = plan_of(desired, obs, full_resync=True)
    assert [(op.key, op.reason) for op in plan.operations] == [
        (f"provision_permission_set:Dev:{A1}", "full resync"),
        (f"provision_permission_set:Dev:{A2}", "stale provisioning"),
    ]
    assert codes(problems) == ["provisioned_to_management_account"]
    assert f"provision_permission_set:Root:{A1}" in {s.key for s in plan.skipped}


# --------------------------------------------------------------------------- hostile records (issue 9)
def test_deeply_nested_inline_policy_is_a_change_not_a_recursion_error() -> None:
    # 3,000 nested "[" (6 KB): canonical_policy used to raise RecursionError and fail compute_diff.
    desired = DesiredState(permission_sets={"Dev": spec(inline_policy="[" * 3000)})
    plan, problems = plan_of(
        desired, observed([state(inline_policy='{"Version":"2012-10-17","Statement":[]}')])
    )
    assert keys(plan) == ["update_permission_set:Dev"]
    assert "inline_policy" in plan.operations[0].changes
    assert problems == []  # validation reports the nesting (inline_policy_too_deep) and blocks the set


def test_one_permission_set_failing_to_plan_is_a_problem_on_its_record_only(monkeypatch, caplog) -> None:
    from idc_sync import plan as plan_module

    real = plan_module.permission_set_changes

    def changes(spec_: PermissionSetSpec, state_: PermissionSetState) -> dict[str, dict[str, object]]:
        if spec_.name == "Bad":
            raise KeyError("unforeseen")
        return real(spec_, state_)

    monkeypatch.setattr(plan_module, "permission_set_changes", changes)
    desired = DesiredState(
        permission_sets={
            "Bad": spec("Bad", description="new"),
            "Dev": spec("Dev", description="new"),
        },
        assignments=[asg(A1, "Bad"), asg(A2, "Dev")],
    )
    obs = observed(
        [state("Bad", 2, provisioned_accounts=[A1]), state("Dev", 1, provisioned_accounts=[A2])],
        [held(A1, 2, "u-bob"), held(A2, 1)],
    )
    with caplog.at_level("ERROR", logger="idc_sync.plan"):
        plan, problems = plan_of(desired, obs)
    # the good set is planned as usual
    assert "update_permission_set:Dev" in keys(plan)
    assert f"provision_permission_set:Dev:{A2}" in keys(plan)
    # the failed set: no operation at all (no update, no assignment created, none deleted), one problem
    assert not [op for op in plan.operations if op.permission_set_name == "Bad"]
    skipped = {s.key: s.reason for s in plan.skipped}
    assert skipped[f"create_assignment:{A1}:Bad:USER:alice"] == "planning permission set Bad failed"
    assert f"delete_assignment:{A1}:Bad:USER:bob" in skipped
    internal = [p for p in problems if p.code == "record_internal_error"]
    assert len(internal) == 1
    assert internal[0].record == ps_rec("ps-Bad")
    assert internal[0].params["permission_set"] == "Bad"
    assert internal[0].params["step"] == "plan"
    assert "KeyError" in str(internal[0].params["error"])
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)  # traceback for admins


def test_account_target_with_non_ascii_digits_is_not_an_account() -> None:
    fullwidth = "\uff12" * 12  # full-width digit two
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(fullwidth)])
    plan, problems = plan_of(desired, observed([state()]))
    assert not [op for op in plan.operations if op.kind is OpKind.CREATE_ASSIGNMENT]
    assert codes(problems) == ["invalid_target"]  # not "unknown_account": it is no account id at all


def test_one_assignment_record_failing_to_plan_is_its_problem_and_deletes_nothing(monkeypatch) -> None:
    """Issue 9 defect 2 (plan step, assignments): an assignment record whose planning raises gets a
    ``record_internal_error`` problem; the others are planned; nothing of its permission set is deleted
    (which rows it wanted is unknown, so "not in kintone" cannot be concluded)."""
    from idc_sync import plan as plan_module

    real = plan_module._Planner._expand  # type: ignore[attr-defined]

    def expand(self: object, a: AssignmentSpec) -> list[str]:
        if a.principal_name == "bob":
            raise RecursionError("maximum recursion depth exceeded")
        return real(self, a)  # type: ignore[no-any-return]

    monkeypatch.setattr(plan_module._Planner, "_expand", expand)  # type: ignore[attr-defined]
    desired = DesiredState(
        permission_sets={"Dev": spec("Dev"), "Ops": spec("Ops")},
        assignments=[asg(A1, "Dev", "bob", rid="11"), asg(A2, "Ops", "alice", rid="12")],
    )
    obs = observed(
        [state("Dev", 1, provisioned_accounts=[A1]), state("Ops", 2, provisioned_accounts=[A2])],
        [held(A1, 1, "u-bob"), held(A3, 1, "u-alice")],  # Dev's: would look unwanted without protection
    )
    plan, problems = plan_of(desired, obs)
    assert f"create_assignment:{A2}:Ops:USER:alice" in keys(plan)
    assert not plan.of_kind(OpKind.DELETE_ASSIGNMENT), keys(plan)
    internal = [p for p in problems if p.code == "record_internal_error"]
    assert len(internal) == 1 and internal[0].params["step"] == "plan"
    assert "RecursionError" in str(internal[0].params["error"])
