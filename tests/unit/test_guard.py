"""Issue 9 defect 1: a renamed permission-set record is a rename, and a set's deletion is a human decision.

Plan (rename by kintone record id, moves that depend on the new assignment), guard (a permission set with
assignments trips it unless every assignment is moved) and apply (a move waits for its replacement).
"""

from __future__ import annotations

from idc_sync.apply import WAITING_FOR_RENAME, apply_assignments
from idc_sync.config import SyncConfig
from idc_sync.guard import evaluate_guard, permission_set_deletion_reasons
from idc_sync.model import RECORD_ID_TAG, DesiredState, Operation, OpKind, PermissionSetOp, Plan
from idc_sync.plan import PlanMemory, compute_plan, next_memory, render_plan
from tests.unit.builders import A1, A2, TAG, TODAY, asg, held, observed, ps_rec, spec, state
from tests.unit.fakes import FakeClients, FakeSso
from tests.unit.test_apply import asg as asg_op
from tests.unit.test_apply import observed as fake_observed

LAX = SyncConfig(max_deletions=1000, max_deletion_ratio=1.0)  # thresholds that never trip


def plan(desired, obs, **kw):
    kw.setdefault("today", TODAY)
    return compute_plan(desired, obs, LAX, **kw)


def tagged(name: str, n: int, record_id: str):
    return state(name, n, tags={**TAG, RECORD_ID_TAG: record_id})


def by_kind(p: Plan, kind: OpKind) -> list[Operation]:
    return p.of_kind(kind)


# --------------------------------------------------------------------------- guard: plain deletion
def test_deleting_a_permission_set_with_assignments_trips_the_guard_whatever_the_thresholds() -> None:
    # Dev's record is deleted; its 2 assignments and the set go. Before: the guard only counted deletions
    # the plan had skipped, so this passed unattended with high thresholds.
    desired = DesiredState(permission_sets={}, assignments=[], records_read={"assignments": 3})
    obs = observed([state()], [held(A1), held(A2, 1, "g-admins", "GROUP")])
    p, _ = plan(desired, obs)
    assert [op.key for op in by_kind(p, OpKind.DELETE_PERMISSION_SET)] == ["delete_permission_set:Dev"]
    verdict = evaluate_guard(p, desired, LAX)
    assert verdict.tripped
    assert verdict.reasons == ["permission set Dev still has assignments (2 assignment(s) deleted with it)"]


def test_deleting_an_empty_permission_set_does_not_trip() -> None:
    desired = DesiredState(records_read={"assignments": 3})
    p, _ = plan(desired, observed([state()]))
    assert by_kind(p, OpKind.DELETE_PERMISSION_SET)
    assert not evaluate_guard(p, desired, LAX).tripped


# --------------------------------------------------------------------------- rename: plan
def renamed_world():
    """Record 12 was "Dev" and is now "Dev2"; both assignment records' lookups still say "Dev"."""
    desired = DesiredState(
        permission_sets={"Dev2": spec("Dev2", record=ps_rec("12"))},
        assignments=[asg(A1, ps="Dev"), asg(A2, ps="Dev", name="Admins", ptype="GROUP", rid="11")],
        records_read={"permission_sets": 1, "assignments": 2},
    )
    obs = observed([tagged("Dev", 1, "12")], [held(A1), held(A2, 1, "g-admins", "GROUP")])
    return desired, obs


def test_renamed_record_is_planned_as_a_rename_whose_removals_wait_for_the_new_assignments() -> None:
    desired, obs = renamed_world()
    p, problems = plan(desired, obs)
    (create,) = by_kind(p, OpKind.CREATE_PERMISSION_SET)
    assert (create.permission_set_name, create.renamed_from) == ("Dev2", "Dev")
    creates = {op.key for op in by_kind(p, OpKind.CREATE_ASSIGNMENT)}
    assert creates == {f"create_assignment:{A1}:Dev2:USER:alice", f"create_assignment:{A2}:Dev2:GROUP:Admins"}
    deletes = by_kind(p, OpKind.DELETE_ASSIGNMENT)
    assert {(op.account_id, op.moved_to, tuple(op.depends_on)) for op in deletes} == {
        (A1, "Dev2", (f"create_assignment:{A1}:Dev2:USER:alice",)),
        (A2, "Dev2", (f"create_assignment:{A2}:Dev2:GROUP:Admins",)),
    }
    (ps_delete,) = by_kind(p, OpKind.DELETE_PERMISSION_SET)
    assert (ps_delete.permission_set_name, ps_delete.moved_to) == ("Dev", "Dev2")
    # a move takes nobody's access away: the guard lets it through
    assert not evaluate_guard(p, desired, SyncConfig()).tripped
    assert "  ~ rename Dev -> Dev2 (record 12)" in render_plan(p).splitlines()
    # the records whose lookup still says "Dev" are told to re-select it (a warning, not an error)
    renamed = [pr for pr in problems if pr.code == "permission_set_renamed"]
    assert {(pr.record.record_id, pr.severity) for pr in renamed if pr.record} == {
        ("10", "warning"),
        ("11", "warning"),
    }
    assert renamed[0].params["old_name"] == "Dev" and renamed[0].params["new_name"] == "Dev2"
    assert "unknown_permission_set" not in {pr.code for pr in problems}


def test_rename_of_a_set_made_before_the_tag_is_known_from_the_plan_memory() -> None:
    before = DesiredState(permission_sets={"Dev": spec("Dev", record=ps_rec("12"))}, assignments=[asg(A1)])
    untagged = observed([state()], [held(A1)])
    memory = next_memory(None, before, untagged, LAX, today=TODAY)
    assert memory.permission_set_records == {"Dev": "12"}
    desired = DesiredState(
        permission_sets={"Dev2": spec("Dev2", record=ps_rec("12"))}, assignments=[asg(A1, ps="Dev")]
    )
    p, _ = plan(desired, untagged, memory=memory)
    assert [op.moved_to for op in by_kind(p, OpKind.DELETE_ASSIGNMENT)] == ["Dev2"]
    assert not permission_set_deletion_reasons(p)
    # without that memory "Dev" is an unknown name a record still uses: nothing of Dev is deleted
    p2, problems = plan(desired, untagged)
    assert not p2.of_kind(OpKind.DELETE_ASSIGNMENT, OpKind.DELETE_PERMISSION_SET)
    assert "unknown_permission_set" in {pr.code for pr in problems}


def test_rename_continues_when_the_new_set_already_exists() -> None:
    desired, _ = renamed_world()
    obs = observed(
        [tagged("Dev", 1, "12"), tagged("Dev2", 2, "12")],
        [held(A1), held(A2, 1, "g-admins", "GROUP"), held(A1, 2)],  # Dev2 in A1 made by the last run
    )
    p, _ = plan(desired, obs)
    deps = {op.account_id: (op.moved_to, op.depends_on) for op in by_kind(p, OpKind.DELETE_ASSIGNMENT)}
    assert deps == {
        A1: ("Dev2", []),  # replacement exists: nothing to wait for
        A2: ("Dev2", [f"create_assignment:{A2}:Dev2:GROUP:Admins"]),
    }
    assert not evaluate_guard(p, desired, LAX).tripped


def test_rename_that_also_drops_an_assignment_trips_the_guard() -> None:
    desired, obs = renamed_world()
    desired = desired.model_copy(update={"assignments": desired.assignments[:1]})  # group record deleted
    p, _ = plan(desired, obs)
    moved = {op.account_id: op.moved_to for op in by_kind(p, OpKind.DELETE_ASSIGNMENT)}
    assert moved == {A1: "Dev2", A2: None}
    assert permission_set_deletion_reasons(p) == [
        "permission set Dev still has assignments (1 assignment(s) deleted with it)"
    ]


def test_stale_lookup_after_the_old_set_is_gone_still_means_the_new_set() -> None:
    # The run after the rename: Dev is deleted, the records still say "Dev". Without the remembered record
    # id, Dev2's assignments would be "not in kintone" and removed.
    desired, _ = renamed_world()
    obs = observed([tagged("Dev2", 2, "12")], [held(A1, 2), held(A2, 2, "g-admins", "GROUP")])
    memory = PlanMemory(permission_set_records={"Dev": "12", "Dev2": "12"})
    p, problems = plan(desired, obs, memory=memory)
    assert p.operations == []
    assert {pr.code for pr in problems} == {"permission_set_renamed"}
    # next_memory keeps the old name (the tag of the gone set cannot be read any more)
    again = next_memory(memory, desired, obs, LAX, today=TODAY)
    assert again.permission_set_records["Dev"] == "12"
    assert f"{A1}:Dev2:USER:u-alice" in again.assignments  # what the stale lookup asks for, by its new name


def test_a_new_record_reusing_the_old_name_is_not_a_rename() -> None:
    desired, obs = renamed_world()
    desired.permission_sets["Dev"] = spec("Dev", record=ps_rec("13"))
    p, _ = plan(desired, obs)
    assert not by_kind(p, OpKind.DELETE_PERMISSION_SET)
    assert all(op.renamed_from is None for op in p.operations)


# --------------------------------------------------------------------------- apply: moves wait
def test_removal_waits_when_the_new_assignment_was_not_created(fake: FakeSso, opts) -> None:
    old = fake.seed_ps("Dev")
    new = fake.seed_ps("Dev2")
    a_ok, a_bad = "200000000001", "200000000002"
    for a in (a_ok, a_bad):
        fake.assignments.add((a, old, "USER", "u-alice"))
    fake.fail_accounts[a_bad] = "Received a 403 status error"  # the new assignment there ends FAILED
    ops: list[Operation] = []
    for a in (a_ok, a_bad):
        create = asg_op(OpKind.CREATE_ASSIGNMENT, a, ps="Dev2", arn=new)
        delete = asg_op(OpKind.DELETE_ASSIGNMENT, a, ps="Dev", arn=old)
        delete.depends_on, delete.moved_to = [create.key], "Dev2"
        ops += [create, delete]
    ops.append(
        PermissionSetOp(
            key="delete_permission_set:Dev",
            kind=OpKind.DELETE_PERMISSION_SET,
            permission_set_name="Dev",
            permission_set_arn=old,
            moved_to="Dev2",
        )
    )
    results = apply_assignments(
        FakeClients(fake),
        Plan(operations=ops),
        fake_observed(fake),
        SyncConfig(),
        ps_arns={"Dev": old, "Dev2": new},
        options=opts,
    )
    status = {r.key: (r.status, r.message) for r in results}
    assert status[f"delete:{a_ok}:Dev:USER:alice"][0] == "succeeded"
    waiting = status[f"delete:{a_bad}:Dev:USER:alice"]
    assert waiting[0] == "skipped" and waiting[1].startswith(WAITING_FOR_RENAME)
    assert status["delete_permission_set:Dev"][0] == "skipped"
    # alice keeps access in a_bad through the old set; nothing was sent to remove it
    assert (a_bad, old, "USER", "u-alice") in fake.assignments
    assert old in fake.permission_sets


def test_only_the_tripping_sets_deletions_wait_for_a_human() -> None:
    # Dev's record is deleted (2 assignments); an unrelated Ops assignment is no longer wanted. Holding
    # everything would keep e.g. expired access alive until someone answers about Dev.
    desired = DesiredState(
        permission_sets={"Ops": spec("Ops")}, assignments=[asg(A1, ps="Ops")], records_read={"assignments": 1}
    )
    obs = observed(
        [state(), state("Ops", 2)], [held(A1), held(A2, 1, "g-admins", "GROUP"), held(A1, 2), held(A2, 2)]
    )
    p, _ = plan(desired, obs)
    verdict = evaluate_guard(p, desired, LAX)
    assert verdict.tripped
    assert sorted(verdict.held) == sorted(
        [
            f"delete_assignment:{A1}:Dev:USER:alice",
            f"delete_assignment:{A2}:Dev:GROUP:Admins",
            "delete_permission_set:Dev",
        ]
    )
    assert f"delete_assignment:{A2}:Ops:USER:alice" not in verdict.held
    # a run-wide rule (too many deletions) holds every deletion
    strict = SyncConfig(max_deletions=1, max_deletion_ratio=1.0)
    assert len(evaluate_guard(p, desired, strict).held) == 4
