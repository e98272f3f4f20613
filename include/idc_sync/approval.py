"""Approval of withheld deletions, outside the sync's blocking path (DESIGN: only deletions wait).

``idc_sync`` never waits for a human. When the deletion guard trips, its deletions are withheld and a
question goes to the separate DAG ``idc_sync_approval``; its answer is recorded in the shared state store.
A later ``idc_sync`` run re-reads kintone and IdC (every run does) and deletes only what an unexpired
*grant* covers, so an approved deletion is always confirmed against fresh state and current records.

Everything here is a pure function of the state files and an injected ``now``:

* ``state/approval_requests.json`` (written by ``idc_sync`` only, ``max_active_runs=1``: one writer):
  ``{fingerprint: {"keys", "requested_at", "run_id", "reasons"}}``.
* ``state/approval_decisions.json`` (written by the approval DAG's ``record_decision``, one at a time):
  ``{fingerprint: {"keys", "answer": "approve"|"reject", "timed_out", "by", "at", "approval_run_id"}}``.

Two files with one writer each: a decision never overwrites a request written at the same moment.
This module also holds the timing rules that make the run's and the approval's timeouts consistent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

REQUESTS_STATE = "state/approval_requests.json"
DECISIONS_STATE = "state/approval_decisions.json"
APPROVAL_DAG_ID = "idc_sync_approval"
APPROVAL_TASK_ID = "approve_deletions"

# A decided or abandoned request is forgotten after this long: the state stays small, and a set rejected
# a month ago is asked about again.
FORGET_AFTER = dt.timedelta(days=30)

Status = Literal["not_needed", "granted", "ask", "pending", "rejected"]


def fingerprint(keys: Iterable[str]) -> str:
    """Identity of a deletion set: the same deletions (in any order) are the same question."""
    digest = hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()
    return digest[:24]


@dataclass(frozen=True)
class DeletionDecision:
    """What this run may delete, and whether it must ask (``ask``) about the rest."""

    status: Status
    allowed: list[str]  # deletion keys this run applies
    withheld: list[str]  # deletion keys kept in place this run
    fingerprint: str | None = None  # of the withheld set (the question), when something is withheld
    message: str = ""
    grants: list[str] = field(default_factory=list)  # fingerprints of the grants used

    @property
    def ask(self) -> bool:
        return self.status == "ask"


def parse_time(raw: Any) -> dt.datetime | None:
    if not raw:
        return None
    try:
        value = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def granted_keys(decisions: Mapping[str, Any], now: dt.datetime, grant_ttl: dt.timedelta) -> dict[str, str]:
    """Deletion key -> fingerprint of an Approve answer younger than ``grant_ttl``."""
    out: dict[str, str] = {}
    for fp, d in decisions.items():
        at = parse_time(d.get("at")) if isinstance(d, Mapping) else None
        if at is None or d.get("answer") != "approve" or now - at > grant_ttl:
            continue
        for key in d.get("keys") or []:
            out[str(key)] = fp
    return out


def deletions_this_run(
    deletion_keys: Sequence[str], *, tripped: bool, held: Sequence[str], **decide: Any
) -> tuple[list[str], DeletionDecision]:
    """The deletion keys this run applies, and the decision about those the guard holds.

    Only the deletions the guard holds (``GuardVerdict.held``) wait for a human; with the guard not
    tripped, all of them are decided by :func:`decide_deletions` (which lets them go). ``decide``: the
    keyword arguments of :func:`decide_deletions` other than the keys and ``tripped``."""
    keys = list(held) if tripped else list(deletion_keys)
    free = [k for k in deletion_keys if k not in set(keys)]
    decision = decide_deletions(keys, tripped=tripped, **decide)
    return [*free, *decision.allowed], decision


def decide_deletions(
    deletion_keys: Sequence[str],
    *,
    tripped: bool,
    allow_mass_delete: bool,
    dry_run: bool,
    requests: Mapping[str, Any],
    decisions: Mapping[str, Any],
    now: dt.datetime,
    grant_ttl: dt.timedelta,
    pending_ttl: dt.timedelta,
) -> DeletionDecision:
    """Which deletions this run applies, and whether to ask a human about the rest.

    Not tripped, ``allow_mass_delete`` or a dry run: nothing is withheld (a dry run deletes nothing
    anyway). Tripped: deletions covered by an unexpired Approve go; the rest is withheld, and asked about
    unless the same set is already pending (asked less than ``pending_ttl`` ago) or was rejected.
    """
    keys = list(dict.fromkeys(deletion_keys))
    if not keys or not tripped or allow_mass_delete or dry_run:
        return DeletionDecision(status="not_needed", allowed=keys, withheld=[])
    grants = granted_keys(decisions, now, grant_ttl)
    allowed = [k for k in keys if k in grants]
    withheld = [k for k in keys if k not in grants]
    used = sorted({grants[k] for k in allowed})
    if not withheld:
        return DeletionDecision(
            status="granted",
            allowed=allowed,
            withheld=[],
            grants=used,
            message=f"{len(allowed)} deletion(s) approved ({', '.join(used)})",
        )
    fp = fingerprint(withheld)
    decided = decisions.get(fp) if isinstance(decisions.get(fp), Mapping) else None
    request = requests.get(fp) if isinstance(requests.get(fp), Mapping) else None
    partly = f"; {len(allowed)} approved deletion(s) go ahead" if allowed else ""
    if decided and decided.get("answer") == "reject":
        how = "the approval timed out (default Reject)" if decided.get("timed_out") else "rejected"
        by = f" by {decided['by']}" if decided.get("by") else ""
        status: Status = "rejected"
        message = (
            f"{len(withheld)} deletion(s) withheld: {how}{by} at {decided.get('at')}; not asked again for "
            f"the same set (trigger with allow_mass_delete to apply them){partly}"
        )
    elif request and (at := parse_time(request.get("requested_at"))) and now - at <= pending_ttl:
        status = "pending"
        message = (
            f"{len(withheld)} deletion(s) withheld: approval pending since {request.get('requested_at')} "
            f"(run {APPROVAL_DAG_ID} asked by {request.get('run_id')}){partly}"
        )
    else:
        status = "ask"
        message = f"{len(withheld)} deletion(s) withheld: approval requested ({APPROVAL_DAG_ID}){partly}"
    return DeletionDecision(
        status=status, allowed=allowed, withheld=withheld, fingerprint=fp, message=message, grants=used
    )


def record_request(
    requests: Mapping[str, Any],
    fp: str,
    keys: Sequence[str],
    *,
    now: dt.datetime,
    run_id: str,
    reasons: Sequence[str],
) -> dict[str, Any]:
    """The request state after asking about ``keys`` (old entries forgotten)."""
    out = {k: v for k, v in requests.items() if not _forgotten(v, "requested_at", now)}
    out[fp] = {
        "keys": sorted(set(keys)),
        "requested_at": now.isoformat(),
        "run_id": run_id,
        "reasons": list(reasons),
    }
    return out


def record_decision(
    decisions: Mapping[str, Any],
    fp: str,
    keys: Sequence[str],
    *,
    chosen: Sequence[str] | None,
    responded_by: str | None,
    at: dt.datetime,
    approval_run_id: str,
) -> dict[str, Any]:
    """The decision state after an answer. Anything but an explicit Approve is a Reject; no responder
    means the response timeout applied the default."""
    approve = bool(chosen) and "Approve" in (chosen or [])
    out = {k: v for k, v in decisions.items() if not _forgotten(v, "at", at)}
    out[fp] = {
        "keys": sorted(set(keys)),
        "answer": "approve" if approve else "reject",
        "timed_out": not responded_by,
        "by": responded_by,
        "at": at.isoformat(),
        "approval_run_id": approval_run_id,
    }
    return out


def decision_text(decision: Mapping[str, Any], deletions: int, requested_by: str) -> str:
    """One Slack line saying what was decided, by whom, and what happens next."""
    if decision.get("answer") == "approve":
        return (
            f":white_check_mark: idc-sync: {deletions} withheld deletion(s) (asked by {requested_by}) "
            f"approved by {decision.get('by') or '?'} at {decision.get('at')}. An idc_sync run starts now "
            "and deletes them after re-reading kintone and IAM Identity Center."
        )
    if decision.get("timed_out"):
        how = "no answer within the response timeout: the default, Reject, applies"
    else:
        how = f"rejected by {decision.get('by')}"
    return (
        f":no_entry: idc-sync: {deletions} withheld deletion(s) (asked by {requested_by}): {how} at "
        f"{decision.get('at')}. Nothing is deleted and the same set is not asked again; trigger idc_sync "
        "with allow_mass_delete=true to apply them."
    )


def _forgotten(entry: Any, key: str, now: dt.datetime) -> bool:
    at = parse_time(entry.get(key)) if isinstance(entry, Mapping) else None
    return at is None or now - at > FORGET_AFTER


# --------------------------------------------------------------------------- timings
class TimingError(ValueError):
    """The DAGs' timeouts contradict each other (raised when the DAG file is parsed)."""


@dataclass(frozen=True)
class TaskTiming:
    """The longest one task can take: attempts x (execution budget) + the delays between them."""

    task_id: str
    attempt: dt.timedelta  # one attempt's bound (execution_timeout, sensor timeout, response timeout)
    retries: int = 0
    retry_delay: dt.timedelta = dt.timedelta(0)  # the longest delay between two attempts
    upstream: tuple[str, ...] = ()

    @property
    def worst(self) -> dt.timedelta:
        return self.attempt * (self.retries + 1) + self.retry_delay * self.retries


def longest_path(tasks: Sequence[TaskTiming], slack_per_task: dt.timedelta) -> dt.timedelta:
    """The worst-case duration of a run: the longest chain of worst task durations (plus scheduling
    slack per task). Raises TimingError when a task has no bound."""
    by_id = {t.task_id: t for t in tasks}
    done: dict[str, dt.timedelta] = {}

    def finish(task_id: str, seen: tuple[str, ...] = ()) -> dt.timedelta:
        if task_id in done:
            return done[task_id]
        if task_id in seen:
            raise TimingError(f"cycle through {task_id}")
        t = by_id[task_id]
        start = max((finish(u, (*seen, task_id)) for u in t.upstream if u in by_id), default=dt.timedelta(0))
        done[task_id] = start + t.worst + slack_per_task
        return done[task_id]

    return max((finish(t.task_id) for t in tasks), default=dt.timedelta(0))


def check_run_timing(
    dag_id: str,
    tasks: Sequence[TaskTiming],
    dagrun_timeout: dt.timedelta | None,
    slack_per_task: dt.timedelta,
) -> dt.timedelta:
    """The DAG's worst-case run; TimingError if its dagrun_timeout is shorter. The scheduler fails a run
    at dagrun_timeout and skips every unfinished task, trigger-rule ``all_done`` ones included: a run
    whose tasks are within their own bounds must never be cut (it would skip notify / record_decision)."""
    worst = longest_path(tasks, slack_per_task)
    if dagrun_timeout is not None and dagrun_timeout < worst:
        raise TimingError(
            f"inconsistent timeouts: {dag_id} dagrun_timeout {dagrun_timeout} is shorter than its "
            f"worst-case run {worst} (task bounds x attempts + retry delays along the longest path): the "
            "scheduler would fail the run and skip its final tasks"
        )
    return worst


def check_approval_timing(
    *,
    response_timeout: dt.timedelta,
    approval_worst: dt.timedelta,
    pending_ttl: dt.timedelta,
    grant_ttl: dt.timedelta,
    sync_worst: dt.timedelta,
    sync_waits_for: Sequence[str] = (),
) -> None:
    """TimingError unless the approval fits around the sync:

    * nothing in ``idc_sync`` waits for a human (``sync_waits_for`` lists its human-in-the-loop tasks);
    * the approval run's worst case includes the response timeout (its default, Reject, is reached);
    * a pending request is not asked again before its approval run can have ended (``pending_ttl``);
    * a grant outlives the run it triggers, even queued behind a running one (``grant_ttl``).
    """
    errors = []
    if sync_waits_for:
        errors.append(f"idc_sync must not wait for a human, but {', '.join(sync_waits_for)} does")
    if response_timeout <= dt.timedelta(0):
        errors.append(f"the approval response timeout must be positive (got {response_timeout})")
    if approval_worst < response_timeout:
        errors.append(
            f"the approval run's bound {approval_worst} is shorter than the response timeout {response_timeout}"
        )
    if pending_ttl < approval_worst:
        errors.append(
            f"a pending approval would be asked again after {pending_ttl}, before its run can end "
            f"({approval_worst})"
        )
    if grant_ttl < 2 * sync_worst:
        errors.append(
            f"a grant lasts {grant_ttl}, less than two idc_sync runs ({2 * sync_worst}): the run it "
            "triggers could start after the grant expired"
        )
    if errors:
        raise TimingError("inconsistent idc-sync timeouts: " + "; ".join(errors))
