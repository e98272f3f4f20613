"""The plan is immutable once computed; validation and the deletion guard give verdicts; this combines them.

``compute_diff`` writes the plan once. ``validate_policies`` answers which permission sets are blocked
(a ``ValidationReport``), ``deletion_guard`` which deletions this run may make. Every task that needs the
plan to act on (the apply tasks, notify) combines the same three values with :func:`plan_to_apply`, so
what runs is a deterministic function of what was decided, and the plan stays the value that was printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from idc_sync.guard import DELETIONS, withhold_deletions
from idc_sync.model import Plan, Skipped, ValidationReport
from idc_sync.validation import apply_validation


class DeletionVerdict(BaseModel):
    """Which deletions this run may make (the guard's decision, as ``deletion_guard`` writes it)."""

    allowed: list[str] | None = None  # None: all of them
    reason: str = ""  # why the others are withheld

    @classmethod
    def from_guard(cls, guard_out: Mapping[str, Any] | None) -> DeletionVerdict:
        """No decision (a failed guard): nothing is deleted. Nothing withheld: everything may go."""
        if not guard_out:
            return cls(allowed=[], reason="deletion guard: no decision in this run")
        if not guard_out.get("withheld"):
            return cls()
        reasons = "; ".join((guard_out.get("verdict") or {}).get("reasons", []))
        status = guard_out.get("message") or "not approved"
        return cls(
            allowed=list(guard_out.get("allowed") or []), reason=f"deletion guard ({reasons}): {status}"
        )


class PlanToApply(BaseModel):
    plan: Plan
    withheld: list[Skipped] = Field(default_factory=list)  # deletions the guard did not allow


def plan_to_apply(
    plan: Plan, validation: ValidationReport | None, deletions: DeletionVerdict | None = None
) -> PlanToApply:
    """The computed plan with validation's blocked sets skipped and, given the guard's verdict, the
    deletions it does not allow withheld (moved to ``skipped``, in order). The input is not changed."""
    validated = apply_validation(plan, validation) if validation is not None else plan.model_copy(deep=True)
    if deletions is None or deletions.allowed is None:
        return PlanToApply(plan=validated)
    allowed = set(deletions.allowed)
    everything = withhold_deletions(validated, deletions.reason)
    before = {s.key for s in validated.skipped}
    withheld = [s for s in everything.skipped if s.key not in before and s.key not in allowed]
    kept = [op for op in validated.operations if op.kind not in DELETIONS or op.key in allowed]
    return PlanToApply(
        plan=validated.model_copy(update={"operations": kept, "skipped": [*validated.skipped, *withheld]}),
        withheld=withheld,
    )
