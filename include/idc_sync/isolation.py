"""Per-record isolation: one record's unexpected error becomes a problem on that record, never a failed run.

Why: the pipeline reads records anyone can write. A bug or an input nobody foresaw in *one* record (a
``RecursionError``, a ``KeyError`` in a rarely used path) used to fail the task, so after its retries
nothing was applied for anybody and the requester never heard why, every run. Every per-record step
(parse, plan, validate) therefore runs through :func:`run_isolated`: the exception is logged with its
traceback for the administrators and turned into a ``record_internal_error`` problem on the record, which
blocks only that record's permission set; the other records carry on.

Problem code (severity "error"):

=========================  ==========================================================================
``record_internal_error``  ``step`` (parse, plan, validate), ``error`` (exception type and text, clipped)
=========================  ==========================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

from idc_sync.model import Problem, RecordRef
from idc_sync.problems import Code

T = TypeVar("T")

INTERNAL_ERROR: Code = "record_internal_error"
_ERROR_MAX = 200  # the exception text can quote record content: keep the problem (and comment) small

_STEPS = {
    "parse": "reading",
    "plan": "planning",
    "validate": "validating",
    "comment": "commenting on",
}


def internal_error_problem(
    record: RecordRef | None,
    step: str,
    exc: BaseException,
    *,
    log: logging.Logger,
    code: Code = INTERNAL_ERROR,
    params: Mapping[str, str | int | float | None] | None = None,
) -> Problem:
    """The problem for ``exc`` raised while running ``step`` on ``record``; logs the traceback."""
    where = f"{record.app} record {record.record_id}" if record is not None else "a record"
    log.error("%s of %s failed; the record is skipped, the others go on", step, where, exc_info=exc)
    error = f"{type(exc).__name__}: {exc}"
    if len(error) > _ERROR_MAX:
        error = error[: _ERROR_MAX - 1] + "…"
    doing = _STEPS.get(step, step)
    return Problem(
        code=code,
        message=(
            f"idc-sync hit an internal error while {doing} this record ({type(exc).__name__}); this record is "
            "left unchanged this run and the other records were processed. Check the record for unusual "
            "content; if it looks right, tell the platform administrators (the task log has the details)."
        ),
        severity="error",
        record=record,
        params={"step": step, "error": error, **(params or {})},
    )


def run_isolated(
    step: str,
    record: RecordRef | None,
    fn: Callable[[], T],
    *,
    on_error: Callable[[Problem], None],
    default: T,
    log: logging.Logger,
    params: Mapping[str, str | int | float | None] | None = None,
) -> T:
    """``fn()``, or ``default`` after handing the ``record_internal_error`` problem to ``on_error``.

    Catches any ``Exception`` (``RecursionError`` included); ``BaseException``s such as a task timeout,
    ``KeyboardInterrupt`` or ``SystemExit`` still stop the task, as they must.
    """
    try:
        return fn()
    except Exception as exc:
        on_error(internal_error_problem(record, step, exc, log=log, params=params))
        return default
