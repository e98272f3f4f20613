"""Apply never acts on a stale view (DESIGN: a UI "clear & retry" never acts on a stale view).

A task cleared in the UI re-runs on the XComs of the original try: clearing ``compute_diff`` or an apply
task replays a plan made from reads that may be many minutes old, and would ignore records deleted (access
revoked) since. The plan carries the time of its oldest read; apply refuses it past a bound.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def oldest(times: Iterable[dt.datetime | None]) -> dt.datetime | None:
    """The oldest of the inputs' read times; ``None`` if any input carries no time (unknown age)."""
    values = list(times)
    if not values or any(t is None for t in values):
        return None
    return min(t for t in values if t is not None)


def stale_plan_refusal(
    inputs_read_at: dt.datetime | None, now: dt.datetime, max_age: dt.timedelta
) -> str | None:
    """Why a plan must not be applied now, or ``None`` when it is fresh enough.

    A plan without a read time is refused too: it was made by code that did not stamp its reads, so
    its age is unknown."""
    if inputs_read_at is None:
        return (
            "the plan carries no read time (its age is unknown): re-run the DAG "
            "(clear from extract_kintone) so it is computed from fresh reads"
        )
    read_at = inputs_read_at if inputs_read_at.tzinfo else inputs_read_at.replace(tzinfo=dt.UTC)
    age = now - read_at
    if age <= max_age:
        return None
    return (
        f"the plan was computed from reads made {age.total_seconds() / 60:.0f} min ago "
        f"(at {read_at.isoformat(timespec='seconds')}; limit {max_age.total_seconds() / 60:.0f} min, "
        "max_plan_age_minutes): kintone or IAM Identity Center may have changed since, so nothing is "
        "applied. Re-run the DAG (clear from extract_kintone)."
    )
