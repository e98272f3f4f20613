"""The deletion guard (DESIGN safety rule 3): large or suspicious deletions wait for a human.

A plan trips the guard when it deletes more than ``max_deletions`` assignments, more than
``max_deletion_ratio`` of the managed assignments, any permission set that still has assignments, or
anything at all while the assignments app came back empty (an empty read never means "delete all").
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from idc_sync.config import SyncConfig
from idc_sync.model import DesiredState, OpKind, Plan, Skipped

DELETIONS = (OpKind.DELETE_ASSIGNMENT, OpKind.DELETE_PERMISSION_SET)


class GuardVerdict(BaseModel):
    tripped: bool
    reasons: list[str] = Field(default_factory=list)
    deletions: int = 0
    table: str = ""  # Markdown table of the deletions, for the approval form


def evaluate_guard(plan: Plan, desired: DesiredState, config: SyncConfig) -> GuardVerdict:
    deletes = plan.of_kind(OpKind.DELETE_ASSIGNMENT)
    ps_deletes = plan.of_kind(OpKind.DELETE_PERMISSION_SET)
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
    for op in ps_deletes:
        remaining = managed_assignments_left(plan, op.permission_set_name)
        if remaining:
            reasons.append(f"permission set {op.permission_set_name} still has {remaining} assignment(s)")
    return GuardVerdict(
        tripped=bool(reasons),
        reasons=reasons,
        deletions=len(deletes) + len(ps_deletes),
        table=deletions_table(plan),
    )


def managed_assignments_left(plan: Plan, permission_set_name: str) -> int:
    """Assignments of a permission set the plan keeps (skipped deletions count as kept)."""
    return sum(
        1
        for s in plan.skipped
        if s.key.startswith("delete_assignment:") and f":{permission_set_name}:" in s.key
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
        what = "assignment" if op.kind == OpKind.DELETE_ASSIGNMENT else "**permission set**"
        principal = f"{op.principal_type or ''} {op.principal_name or op.principal_id or ''}".strip()
        lines.append(
            f"| {what} | {op.account_id or ''} | {op.permission_set_name} | {principal} | {op.reason} |"
        )
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more (see the compute_diff log).")
    return "\n".join(lines)


def withhold_deletions(plan: Plan, reason: str) -> Plan:
    """The same plan with every deletion moved to ``skipped`` (guard rejected or timed out)."""
    kept = [op for op in plan.operations if op.kind not in DELETIONS]
    skipped = list(plan.skipped) + [
        Skipped(key=op.key, reason=reason, record=op.records[0] if op.records else None)
        for op in plan.operations
        if op.kind in DELETIONS
    ]
    return plan.model_copy(update={"operations": kept, "skipped": skipped})
