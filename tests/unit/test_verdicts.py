"""``idc_sync.verdicts.plan_to_apply``: the computed plan stays as printed; the verdicts decide what runs."""

from __future__ import annotations

from idc_sync.model import DesiredState, OpKind, Problem, ValidationReport
from idc_sync.verdicts import DeletionVerdict, plan_to_apply
from tests.unit.builders import A1, A2, asg, held, keys, observed, plan_of, spec, state


def _plan():
    """Dev: alice on A1 to create, bob's hand-made Dev on A2 to delete; Ops (new, invalid) to create."""
    desired = DesiredState(permission_sets={"Dev": spec(), "Ops": spec("Ops")}, assignments=[asg(A1)])
    plan, _ = plan_of(desired, observed([state("Dev")], [held(A2, pid="u-bob")]))
    return plan


def test_validation_blocks_a_set_without_changing_the_plan():
    plan = _plan()
    before = plan.model_dump()
    report = ValidationReport(
        blocked=["Ops"],
        problems=[
            Problem(code="managed_policy_not_found", message="x", params={"permission_set": "Ops"}),
        ],
    )
    out = plan_to_apply(plan, report)
    assert plan.model_dump() == before  # the computed plan is immutable
    assert "create_permission_set:Ops" not in keys(out.plan)
    skipped = {s.key: s.reason for s in out.plan.skipped}
    assert "managed_policy_not_found" in skipped["create_permission_set:Ops"]
    assert keys(out.plan, OpKind.CREATE_ASSIGNMENT) == keys(plan, OpKind.CREATE_ASSIGNMENT)
    assert out.withheld == []


def test_guard_verdict_withholds_only_deletions_it_does_not_allow():
    plan = _plan()
    deletion = keys(plan, OpKind.DELETE_ASSIGNMENT)
    assert len(deletion) == 1
    everything = plan_to_apply(plan, ValidationReport(), DeletionVerdict())
    assert keys(everything.plan) == keys(plan) and everything.withheld == []

    guard = {"withheld": deletion, "allowed": [], "verdict": {"reasons": ["too many"]}, "message": "rejected"}
    held_back = plan_to_apply(plan, ValidationReport(), DeletionVerdict.from_guard(guard))
    assert keys(held_back.plan, OpKind.DELETE_ASSIGNMENT) == []
    assert [s.key for s in held_back.withheld] == deletion
    assert held_back.withheld[0].reason == "deletion guard (too many): rejected"
    assert keys(held_back.plan, OpKind.CREATE_ASSIGNMENT) == keys(plan, OpKind.CREATE_ASSIGNMENT)

    approved = dict(guard, allowed=deletion)
    assert keys(plan_to_apply(plan, None, DeletionVerdict.from_guard(approved)).plan) == keys(plan)


def test_no_guard_decision_deletes_nothing():
    plan = _plan()
    out = plan_to_apply(plan, None, DeletionVerdict.from_guard(None))
    assert keys(out.plan, OpKind.DELETE_ASSIGNMENT) == []
    assert len(out.withheld) == 1
