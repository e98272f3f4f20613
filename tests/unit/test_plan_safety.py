"""Safety rules decided in the plan: management account, drift memory, expiry reminders, guard verdicts."""

from __future__ import annotations

import datetime as dt

from idc_sync.config import SyncConfig
from idc_sync.guard import deletions_table, evaluate_guard, withhold_deletions
from idc_sync.model import Cause, DesiredState, OpKind
from idc_sync.plan import MANAGEMENT_PROVISIONED, PlanMemory, compute_plan, next_memory
from tests.unit.builders import A1, A2, A5, MGMT, TODAY, asg, held, observed, spec, state

CFG = SyncConfig()


def plan(desired, obs, **kw):
    kw.setdefault("today", TODAY)
    return compute_plan(desired, obs, CFG, **kw)


# --------------------------------------------------------------------------- management account
def test_management_provisioned_set_is_reported_even_without_changes_and_never_targets_mgmt() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(A1), asg(MGMT)])
    obs = observed([state(provisioned_accounts=[MGMT])], [held(MGMT)])
    p, problems = plan(desired, obs)
    assert p.operations == []
    assert {pr.code for pr in problems} == {"provisioned_to_management_account", "management_account_target"}
    reasons = {s.key: s.reason for s in p.skipped}
    assert reasons[f"create_assignment:{A1}:Dev:USER:alice"] == MANAGEMENT_PROVISIONED
    # the same words every run: the record's fingerprint does not change, so it is told once
    _, again = plan(desired, obs)
    assert [pr.fingerprint for pr in again] == [pr.fingerprint for pr in problems]


def test_stale_to_management_account_also_blocks() -> None:
    desired = DesiredState(permission_sets={"Dev": spec(description="x")}, assignments=[asg(A1)])
    obs = observed([state(provisioned_accounts=[A2], stale_accounts=[MGMT])])
    p, _ = plan(desired, obs)
    assert p.operations == []


# --------------------------------------------------------------------------- drift
def test_without_memory_nothing_is_called_drift() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()}, assignments=[asg(A1)], records_read={"assignments": 1}
    )
    obs = observed([state()], [held(A1), held(A2, 1, "u-bob")])
    p, _ = plan(desired, obs)
    assert [(op.key, op.reason) for op in p.operations] == [
        (f"delete_assignment:{A2}:Dev:USER:bob", "not in kintone")
    ]


def test_hand_added_assignment_is_drift_and_a_deleted_record_is_not() -> None:
    desired = DesiredState(
        permission_sets={"Dev": spec()},
        assignments=[asg(A1), asg(A5, name="bob")],
        records_read={"assignments": 2},
    )
    obs = observed([state()], [held(A1), held(A5, 1, "u-bob")])
    memory = next_memory(None, desired, obs, CFG, today=TODAY)
    assert f"{A5}:Dev:USER:u-bob" in memory.assignments
    # bob's record is deleted; someone adds bob to A2 by hand
    desired2 = DesiredState(
        permission_sets={"Dev": spec()}, assignments=[asg(A1)], records_read={"assignments": 1}
    )
    obs2 = observed([state()], [held(A1), held(A5, 1, "u-bob"), held(A2, 1, "u-bob")])
    p, _ = plan(desired2, obs2, memory=memory)
    reasons = {op.key: op.reason for op in p.operations}
    assert reasons == {
        f"delete_assignment:{A5}:Dev:USER:bob": "not in kintone",
        f"delete_assignment:{A2}:Dev:USER:bob": "drift: added by hand in IAM Identity Center "
        "(no kintone record asks for it)",
    }
    assert [(op.key, op.cause) for op in p.operations if op.is_drift] == [
        (f"delete_assignment:{A2}:Dev:USER:bob", Cause.DRIFT_ADDED)
    ]
    # report mode: both only reported, the hand-made one says so
    p, _ = plan(desired2, obs2, memory=memory, drift_mode="report")
    assert p.of_kind(OpKind.DELETE_ASSIGNMENT) == []
    skipped = {s.key: s.reason for s in p.skipped}
    assert skipped[f"delete_assignment:{A2}:Dev:USER:bob"].startswith("drift (report mode): added by hand")
    assert all(s.is_drift and s.cause is Cause.DRIFT_REPORTED for s in p.skipped)
    # the memory keeps what kintone once asked for while it exists, never the hand-made one
    memory2 = next_memory(memory, desired2, obs2, CFG, today=TODAY)
    assert f"{A5}:Dev:USER:u-bob" in memory2.assignments
    assert f"{A2}:Dev:USER:u-bob" not in memory2.assignments
    # once gone from IdC it is forgotten
    memory3 = next_memory(memory2, desired2, observed([state()], [held(A1)]), CFG, today=TODAY)
    assert memory3.assignments == [f"{A1}:Dev:USER:u-alice"]


def test_hand_made_policy_change_is_drift_and_a_record_edit_is_not() -> None:
    desired = DesiredState(permission_sets={"Dev": spec()})
    in_place = observed([state()])
    memory = next_memory(None, desired, in_place, CFG, today=TODAY)
    assert "Dev" in memory.permission_sets
    extra = "arn:aws:iam::aws:policy/AdministratorAccess"
    tampered = observed([state(managed_policies=["arn:aws:iam::aws:policy/ReadOnlyAccess", extra])])
    p, _ = plan(desired, tampered, memory=memory)
    op = p.of_kind(OpKind.UPDATE_PERMISSION_SET)[0]
    assert op.reason == "drift: changed by hand in IAM Identity Center (managed_policies)"
    assert (op.cause, op.detail) == (Cause.DRIFT_CHANGED, "managed_policies")
    # a kintone edit is not drift, and the memory keeps the last definition seen in place until applied
    edited = DesiredState(permission_sets={"Dev": spec(description="new")})
    p, _ = plan(edited, in_place, memory=memory)
    assert p.of_kind(OpKind.UPDATE_PERMISSION_SET)[0].reason == "differs from kintone"
    assert next_memory(memory, edited, in_place, CFG, today=TODAY).permission_sets == memory.permission_sets


def test_memory_round_trips_as_json() -> None:
    m = PlanMemory(assignments=["a"], permission_sets={"Dev": "x"})
    assert PlanMemory.model_validate(m.model_dump(mode="json")) == m


# --------------------------------------------------------------------------- expiring access
def test_reminder_within_the_last_days_with_stable_text() -> None:
    def problems_on(day: dt.date, expires: dt.date) -> list:
        desired = DesiredState(permission_sets={"Dev": spec()}, assignments=[asg(A1, expires_on=expires)])
        _, problems = plan(desired, observed([state()], [held(A1)]), today=day)
        return [p for p in problems if p.code == "access_expiring"]

    expires = TODAY + dt.timedelta(days=3)
    assert problems_on(TODAY - dt.timedelta(days=1), expires) == []
    said = {p.fingerprint for d in range(4) for p in problems_on(TODAY + dt.timedelta(days=d), expires)}
    assert len(said) == 1  # days 3, 2, 1 and 0 before: one and the same notice
    notice = problems_on(TODAY, expires)[0]
    assert notice.severity == "info"
    assert notice.params["date"] == expires.isoformat()
    assert notice.params["accounts"] == A1
    assert problems_on(expires + dt.timedelta(days=1), expires) == []  # expired: deleted, no reminder


# --------------------------------------------------------------------------- deletion guard
def _mass_deletion(n: int) -> tuple:
    accounts = [f"3000000000{i:02d}" for i in range(n)]
    obs = observed([state()], [held(a) for a in accounts])
    obs.org.accounts.update(
        {a: obs.org.accounts[A1].model_copy(update={"id": a}) for a in accounts}  # type: ignore[misc]
    )
    desired = DesiredState(permission_sets={"Dev": spec()}, records_read={"assignments": 1})
    return plan(desired, obs)[0], desired


def test_guard_trips_above_max_deletions_and_shows_a_table() -> None:
    p, desired = _mass_deletion(30)
    verdict = evaluate_guard(p, desired, CFG)
    assert verdict.tripped and verdict.deletions == 30
    assert "max_deletions=20" in verdict.reasons[0]
    table = deletions_table(p)
    assert table.splitlines()[0] == "| what | account | permission set | principal | why |"
    assert len(table.splitlines()) == 32
    withheld = withhold_deletions(p, "not approved")
    assert withheld.operations == [] and len(withheld.skipped) == 30


def test_guard_trips_on_an_empty_assignments_app() -> None:
    obs = observed([state()], [held(A1)])
    desired = DesiredState(permission_sets={"Dev": spec()}, records_read={"assignments": 0})
    p, _ = plan(desired, obs)
    verdict = evaluate_guard(p, desired, CFG)
    assert verdict.tripped
    assert any("returned no records" in r for r in verdict.reasons)


def test_a_set_created_by_the_pipeline_is_remembered_once_applied() -> None:
    from idc_sync.plan import remember_applied

    desired = DesiredState(permission_sets={"Dev": spec(), "New": spec("New")})
    p, _ = plan(desired, observed([]))
    memory = next_memory(None, desired, observed([]), CFG, today=TODAY)
    assert memory.permission_sets == {}
    after = remember_applied(memory, p, {"create_permission_set:Dev"})  # New failed
    assert set(after.permission_sets) == {"Dev"}
    # a hand-made change right after the creation is drift on the next run
    extra = "arn:aws:iam::aws:policy/AdministratorAccess"
    tampered = observed([state(managed_policies=["arn:aws:iam::aws:policy/ReadOnlyAccess", extra])])
    p2, _ = plan(DesiredState(permission_sets={"Dev": spec()}), tampered, memory=after)
    assert p2.operations[0].reason.startswith("drift:")
