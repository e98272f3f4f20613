"""Which task failed first, with what error, and what that means for AWS.

An admin reading "observe_idc / compute_diff / ... failed or produced nothing" cannot tell the cause
from its consequences, nor whether AWS was touched. Each task that fails leaves a :class:`TaskFailure`
(written by the plugin's failure callback: error type and message, secrets scrubbed); ``notify`` names
the first failed task by time with its error and the meaning of a failure at that step. A task that
failed without leaving one (its process was killed: "state changed externally") is named too.

Pure functions: the wording lives here, the plugin layer only collects states and records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from idc_sync.sanitize import scrub_secrets, strip_control

NOTHING_CHANGED = "nothing was changed in AWS"
PARTLY_APPLIED = "some changes may be applied; the next run finishes them"
LOST = "no error recorded: the task process was lost; see its log"

# What a failure at each step means. Everything before the apply tasks only reads.
MEANING: dict[str, str] = {
    "scim_health": "the SCIM verdict is unknown for this run (missing users stay pending); the run went on",
    "scim_verdict": "the SCIM verdict is unknown for this run (missing users stay pending); the run went on",
    "extract_kintone": NOTHING_CHANGED,
    "observe_idc": NOTHING_CHANGED,
    "compute_diff": NOTHING_CHANGED,
    "validate_policies": NOTHING_CHANGED,
    "deletion_guard": NOTHING_CHANGED,
    "request_approval": "the withheld deletions were not asked about (idc_sync_approval was not started); "
    "no withheld deletion was applied",
    "apply_permission_sets": PARTLY_APPLIED,
    "apply_assignments": PARTLY_APPLIED,
}
FAILED_STATES = frozenset({"failed"})  # upstream_failed is a consequence, never the cause
# Checks that only advise: their failure is reported but never fails the run (the SCIM check means
# "unknown" then, and the run goes on).
ADVISORY = frozenset({"scim_health"})


def run_failing(failed_tasks: Iterable[str]) -> list[str]:
    """The failed tasks that make the run fail: all but the advisory checks."""
    return [t for t in failed_tasks if t not in ADVISORY]


ERROR_LIMIT = 500


class TaskFailure(BaseModel):
    """What a failed task leaves for ``notify`` (XCom key ``failure``): no traceback, no secrets."""

    task_id: str
    try_number: int = 1
    at: str = ""  # ISO-8601 UTC, when the failure was recorded
    error_type: str = ""
    error: str = ""


def describe_error(exc: BaseException | str | None, secrets: Iterable[str] = ()) -> tuple[str, str]:
    """(type name, message) of an error, secrets scrubbed, control characters removed, clipped."""
    if exc is None:
        return "", ""
    if isinstance(exc, str):
        kind, text = "", exc
    else:
        kind, text = type(exc).__name__, str(exc)
    text = strip_control(scrub_secrets(text, secrets)).strip()
    if len(text) > ERROR_LIMIT:
        text = text[: ERROR_LIMIT - 1] + "…"
    return kind, text


def first_failure(
    states: Mapping[str, str | None],
    failures: Mapping[str, TaskFailure],
    *,
    order: Iterable[str] = (),
    ignore: Iterable[str] = ("notify",),
) -> tuple[str, TaskFailure | None] | None:
    """The task that failed first: failed tasks with a record by time, then (lost, no record) in
    ``order`` (the DAG's order). None when no task failed."""
    skip = set(ignore)
    failed = [t for t, s in states.items() if t not in skip and (s or "").lower() in FAILED_STATES]
    recorded = sorted((t for t in failed if t in failures), key=lambda t: (failures[t].at, t))
    if recorded:
        return recorded[0], failures[recorded[0]]
    rank = {t: i for i, t in enumerate(order)}
    lost = sorted(failed, key=lambda t: (rank.get(t, len(rank)), t))
    return (lost[0], None) if lost else None


def explain(task_id: str, failure: TaskFailure | None) -> str:
    """One sentence for the note, Slack and the log: which task, its error, what it means."""
    meaning = MEANING.get(task_id, "see its log")
    if failure is None or not (failure.error or failure.error_type):
        return f"Task {task_id} failed ({LOST}); {meaning}."
    error = f"{failure.error_type}: {failure.error}" if failure.error_type else failure.error
    tries = f" (try {failure.try_number})" if failure.try_number > 1 else ""
    return f"Task {task_id} failed first{tries}: {error.rstrip('.')}. Meaning: {meaning}."
