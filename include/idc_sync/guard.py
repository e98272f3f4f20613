"""The deletion guard (DESIGN safety rule 3): large or suspicious deletions wait for a human.

A plan trips the guard when it deletes more than ``max_deletions`` assignments, more than
``max_deletion_ratio`` of the managed assignments, any permission set that still has assignments, or
anything at all while the assignments app came back empty (an empty read never means "delete all").
A permission set renamed in place is no deletion of access: its assignments are *moved* (``moved_to``),
which neither counts towards the thresholds nor trips the permission-set rule. ``GuardVerdict.held`` says
which deletions wait for a human.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from idc_sync.config import SyncConfig
from idc_sync.model import (
    AssignmentOp,
    DesiredState,
    ObservedState,
    OpKind,
    PermissionSetOp,
    Plan,
    Skipped,
    op_key_permission_set,
    pair_key,
)

DELETIONS = (OpKind.DELETE_ASSIGNMENT, OpKind.DELETE_PERMISSION_SET)


class GuardVerdict(BaseModel):
    tripped: bool
    reasons: list[str] = Field(default_factory=list)
    deletions: int = 0
    table: str = ""  # Markdown table of the deletions, for the approval form
    # Keys of the deletions that wait for a human: all of them when a run-wide rule trips (too many, empty
    # app); when only permission-set rules trip, just those sets' deletions and the assignments they take
    # with them, so a pending set deletion does not hold back e.g. the removal of expired access.
    held: list[str] = Field(default_factory=list)


def evaluate_guard(plan: Plan, desired: DesiredState, config: SyncConfig) -> GuardVerdict:
    # A move (renamed set: the new set's assignment exists or is created first, ``Operation.depends_on``)
    # takes nobody's access away, so it does not count towards the mass-deletion thresholds.
    all_deletes = plan.of_type(AssignmentOp, OpKind.DELETE_ASSIGNMENT)
    deletes = [op for op in all_deletes if not op.moved_to]
    ps_deletes = plan.of_type(PermissionSetOp, OpKind.DELETE_PERMISSION_SET)
    reasons: list[str] = []
    if len(deletes) > config.max_deletions:
        reasons.append(f"{len(deletes)} assignment deletions exceed max_deletions={config.max_deletions}")
    managed = plan.managed_assignment_count
    if (
        managed
        and len(deletes) > config.deletion_ratio_floor
        and len(deletes) / managed > config.max_deletion_ratio
    ):
        reasons.append(
            f"{len(deletes)} of {managed} managed assignments ({len(deletes) / managed:.0%}) exceed "
            f"max_deletion_ratio={config.max_deletion_ratio:.0%}"
        )
    if (deletes or ps_deletes) and desired.records_read.get("assignments", 0) == 0:
        reasons.append("the assignments app returned no records while IdC has managed assignments")
    all_keys = [op.key for op in plan.operations if op.kind in DELETIONS]
    held = all_keys if reasons else sorted(set(_held_with_sets(plan)))
    reasons += permission_set_deletion_reasons(plan)
    return GuardVerdict(
        tripped=bool(reasons),
        reasons=reasons,
        held=[k for k in all_keys if k in set(held)],
        deletions=len(all_deletes) + len(ps_deletes),
        table=deletions_table(plan),
    )


def permission_set_deletion_reasons(plan: Plan) -> list[str]:
    """Safety rule 3: deleting a permission set that still has assignments is a human decision.

    Its assignments are those the plan deletes with it plus those it keeps; the deletion passes only when
    every one of them is moved to the set it was renamed to (``Operation.moved_to``). Whatever the
    thresholds say: a set's deletion takes away all of its access at once.
    """
    reasons: list[str] = []
    for op in plan.of_type(PermissionSetOp, OpKind.DELETE_PERMISSION_SET):
        name = op.permission_set_name
        lost = _lost_assignments(plan, op)
        kept = managed_assignments_left(plan, name)
        if lost or kept:
            what = f"{len(lost)} assignment(s) deleted with it" + (f", {kept} kept" if kept else "")
            reasons.append(f"permission set {name} still has assignments ({what})")
    return reasons


def _held_with_sets(plan: Plan) -> list[str]:
    """The deletions of every permission set that trips the guard, and its assignments that are not moved."""
    out: list[str] = []
    for op in plan.of_type(PermissionSetOp, OpKind.DELETE_PERMISSION_SET):
        lost = _lost_assignments(plan, op)
        if lost or managed_assignments_left(plan, op.permission_set_name):
            out += [op.key, *(a.key for a in lost)]
    return out


def _lost_assignments(plan: Plan, op: PermissionSetOp) -> list[AssignmentOp]:
    """Assignment deletions of ``op``'s permission set that are not moved to the set it was renamed to."""
    return [
        a
        for a in plan.of_type(AssignmentOp, OpKind.DELETE_ASSIGNMENT)
        if a.permission_set_name == op.permission_set_name and not (op.moved_to and a.moved_to == op.moved_to)
    ]


def managed_assignments_left(plan: Plan, permission_set_name: str) -> int:
    """Assignments of a permission set the plan keeps (skipped deletions count as kept)."""
    return sum(
        1
        for s in plan.skipped
        if op_key_permission_set(s.key, OpKind.DELETE_ASSIGNMENT) == permission_set_name
    )


def deletions_table(plan: Plan, limit: int = 200) -> str:
    rows = [op for op in plan.operations if op.kind in DELETIONS]
    if not rows:
        return "No deletions."
    lines = [
        "| what | account | permission set | principal | why |",
        "|---|---|---|---|---|",
    ]
    for op in rows[:limit]:
        if isinstance(op, AssignmentOp):
            what, account = "assignment", op.account_id
            principal = f"{op.principal_type} {op.principal_name or op.principal_id}".strip()
        else:
            what, account, principal = "**permission set**", "", ""
        lines.append(f"| {what} | {account} | {op.permission_set_name} | {principal} | {op.reason} |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more (see the compute_diff log).")
    return "\n".join(lines)


UNREAD = (
    "not deleted: this pair was not read fresh in this run (the observed state came from the cache); "
    "the next run reads it first"
)


def withhold_unread_deletions(plan: Plan, observed: ObservedState) -> tuple[Plan, list[Skipped]]:
    """A cache never causes a deletion: an assignment deletion whose (account, permission set) pair was
    not read in this run (``ObservedState.confirms``) is moved to ``skipped``. ``observe`` confirms every
    pair its plan touches, so this only catches a plan that differs from the one observe confirmed."""
    confirmed = set(observed.confirmed_pairs)
    unread = [
        op
        for op in plan.of_type(AssignmentOp, OpKind.DELETE_ASSIGNMENT)
        if not observed.complete and pair_key(op.account_id, op.permission_set_arn or "") not in confirmed
    ]
    if not unread:
        return plan, []
    gone = {op.key for op in unread}
    skipped = [Skipped(key=op.key, reason=UNREAD, record=op.record) for op in unread]
    kept = [op for op in plan.operations if op.key not in gone]
    return plan.model_copy(update={"operations": kept, "skipped": [*plan.skipped, *skipped]}), skipped


def withhold_deletions(plan: Plan, reason: str) -> Plan:
    """The same plan with every deletion moved to ``skipped`` (guard rejected or timed out)."""
    kept = [op for op in plan.operations if op.kind not in DELETIONS]
    skipped = list(plan.skipped) + [
        Skipped(key=op.key, reason=reason, record=op.record) for op in plan.operations if op.kind in DELETIONS
    ]
    return plan.model_copy(update={"operations": kept, "skipped": skipped})


NOT_CONFIRMED = "not deleted: kintone asks for it again since the plan was made (confirmed before deleting)"


def confirm_deletions(plan: Plan, fresh: Plan) -> tuple[Plan, list[str]]:
    """Keep only the deletions that ``fresh`` (planned from kintone read again just before deleting,
    against the same observed state) still has; the others become skipped items. Returns the plan to
    apply and the keys of the deletions dropped. A record added or edited since the first read thus
    never loses its access to a plan made before it."""
    still = {op.key for op in fresh.of_kind(*DELETIONS)}
    dropped = [op for op in plan.of_kind(*DELETIONS) if op.key not in still]
    gone = {op.key for op in dropped}
    skipped = [
        Skipped(key=op.key, reason=NOT_CONFIRMED, record=op.records[0] if op.records else None)
        for op in dropped
    ]
    kept = [op for op in plan.operations if op.key not in gone]
    return plan.model_copy(update={"operations": kept, "skipped": [*plan.skipped, *skipped]}), sorted(gone)
