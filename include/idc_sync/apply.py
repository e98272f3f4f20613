"""Apply a :class:`~idc_sync.model.Plan` to IAM Identity Center: idempotent, bounded, and never all-or-nothing.

Order of operations (each step only starts when the previous one has finished):

1. ``apply_permission_sets``: CREATE_PERMISSION_SET, then UPDATE_PERMISSION_SET, then
   PROVISION_PERMISSION_SET (a provisioning of a set whose create/update failed in this run is skipped).
2. ``apply_assignments``: CREATE_ASSIGNMENT and DELETE_ASSIGNMENT in the order of
   :func:`order_assignment_operations` (access removals first, then newest kintone change first), within
   a time budget; an operation whose ``depends_on`` did not succeed in this run (e.g. the removal of a
   renamed set's assignment whose replacement failed) is skipped and left to a later run. Then, by
   default, DELETE_PERMISSION_SET through ``apply_permission_set_deletions``: IdC refuses to delete a
   permission set that still has assignments (ConflictException), so its assignment deletions must be
   finished first, and a set whose assignment deletions failed (or were deferred) is not deleted in this
   run.

Why it is built this way:

- *Idempotent*: a UI "clear & retry" re-runs a task with the snapshot taken before the first attempt, so
  every call tolerates "already done": a duplicate CreatePermissionSet adopts the existing set when it
  carries our ownership tag, an attach that conflicts is checked against the live state, deletions that
  find nothing (ResourceNotFoundException) count as done, and CreateAccountAssignment of an existing
  assignment succeeds in IdC anyway.
- *Async*: CreateAccountAssignment, DeleteAccountAssignment and ProvisionPermissionSet only start work;
  botocore has no waiters for them. Assignment requests are watched together by one poller
  (:class:`_StatusPoller`): one ListAccountAssignmentCreationStatus / ...DeletionStatus call filtered on
  IN_PROGRESS tells which of the (up to ``assignment_concurrency``) outstanding requests are still
  running; only a request that has left that list (or was never seen in it) is described on its own,
  once, for its outcome and FailureReason. Provisionings (at most 3) poll Describe*Status with a growing
  interval. Either way until SUCCEEDED/FAILED or ``config.async_timeout_seconds``.
- *Bounded*: IdC allows 10 outstanding assignment operations (15 for creations in newer quotas:
  ``config.assignment_concurrency``), 3 concurrent provisionings, and one update per account at a time (a
  second one gets ConflictException). Assignment operations are handed out by a scheduler
  (:class:`_Schedule`): at most ``assignment_concurrency`` in flight, at most one per account, the most
  urgent free one first. Permission set operations run grouped (one worker per set or account).
- *Time budget*: ``ApplyOptions.deadline`` (default: ``config.apply_budget_seconds`` from the start of
  ``apply_assignments``): no assignment operation (nor permission set deletion) starts after it; the ones
  not started end "deferred" (not a failure: the next run plans them again), the ones in flight are
  awaited to their end, so nothing is left running unaccounted.
- *Retries, one layer*: the boto3 clients retry ThrottlingException, 5xx and connection errors
  themselves (botocore standard mode, ``aws_clients.DEFAULT_RETRIES``). Apply adds retries only for what
  botocore does not retry: ConflictException (with exponential backoff and full jitter, bounded), and
  transient errors of a client that has no botocore retry layer (an error carrying botocore's
  ``RetryAttempts`` has been through it and is not retried again: a throttled call is sent at most
  botocore's attempts, not botocore's times ours). Everything else (AccessDenied, Validation, quota,
  FAILED status) fails that one operation with a clear message; the other operations continue.
- *Defence in depth*: whatever the plan says, nothing is sent for the management account, and only
  permission sets carrying the ownership tag are changed or deleted.

No Airflow import: the tasks call these functions and push the results to XCom.
"""

from __future__ import annotations

import dataclasses as dc
import functools
import heapq
import logging
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from idc_sync.aws_clients import error_code, error_text, snake_case
from idc_sync.aws_responses import guard_pages
from idc_sync.config import SyncConfig
from idc_sync.model import (
    RECORD_ID_TAG,
    AssignmentOp,
    ObservedState,
    OpBase,
    Operation,
    OpKind,
    OpResult,
    PermissionsBoundary,
    PermissionSetOp,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    ProvisionOp,
    pair_key,
    principal_key,
)
from idc_sync.policy import policies_equal
from idc_sync.snapshot import (
    SsoReads,
    customer_policy_refs,
    managed_policy_arns,
    permission_set_tags,
    read_permission_set,
)

if TYPE_CHECKING:
    from idc_sync.aws_clients import IdcClients

LOG = logging.getLogger(__name__)

# Error codes worth another attempt: the request itself was fine, the service was busy.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalServerException",
        "ServiceUnavailableException",
    }
)
CONFLICT = "ConflictException"
NOT_FOUND = "ResourceNotFoundException"

# Hints appended to non-retryable errors so the message says what to do.
_HINTS = {
    "AccessDeniedException": (
        "the pipeline's role is not allowed to do this, or the target is the management account or a "
        "permission set provisioned to it (a delegated administrator cannot change those); "
        "check the role's policy and the target"
    ),
    "ValidationException": "AWS rejected the values; fix the kintone record",
    "ServiceQuotaExceededException": (
        "an IAM Identity Center quota is reached; remove unused permission sets/assignments or ask AWS "
        "support for a quota increase"
    ),
    "ResourceNotFoundException": "the resource does not exist (any more); the next run re-reads the state",
}

Status = Literal["succeeded", "already_in_place", "failed", "skipped", "deferred"]
STATUSES: tuple[Status, ...] = ("succeeded", "already_in_place", "failed", "skipped", "deferred")

WAITING_FOR_RENAME = "waiting for the renamed set's assignment"
DEFERRED = "deferred to the next run"

_OpT = TypeVar("_OpT", bound=OpBase)


@dc.dataclass
class ApplyOptions:
    """Timing knobs. Tests inject ``sleep``/``clock``/``rng`` so nothing really waits."""

    # Attempts per API call of what apply retries itself: ConflictException always; Throttling/5xx and
    # connection errors only from a client without botocore's retry layer (``_Applier.retryable``).
    max_attempts: int = 8
    backoff_base: float = 0.5  # seconds; attempt n sleeps uniform(0, min(backoff_max, base * 2**(n-1)))
    backoff_max: float = 20.0
    poll_initial: float = 0.5  # first wait before describing an async request (and the describe backoff)
    poll_factor: float = 1.5  # the wait grows by this factor ...
    poll_max: float = 5.0  # ... up to this
    # One List*Status round for all outstanding assignment requests this often (it slows down towards
    # poll_max while nothing changes).
    poll_interval: float = 0.5
    status_page_size: int = 100  # MaxResults of List*Status (the model's maximum)
    async_timeout: float | None = None  # default: config.async_timeout_seconds
    # When to stop starting assignment operations, on ``clock``: the ones not started by then are
    # "deferred". None: ``clock()`` at the start of apply_assignments + ``config.apply_budget_seconds``
    # (None there too: no deadline).
    deadline: float | None = None
    progress_every: int | None = None  # log "applied i/n ..." every this many operations (None: 10%) ...
    progress_seconds: float = 10.0  # ... or when this long has passed since the last progress line
    permission_set_concurrency: int = 4  # synchronous create/update calls (shared ~20 req/s quota)
    # Before CreateAccountAssignment, read the live assignments of that (account, permission set) once
    # (one ListAccountAssignments per pair) so an assignment already there (an earlier try of this task
    # made it) is reported "already_in_place", not "succeeded". On for task retries: AWS answers a
    # duplicate create with SUCCEEDED, so without a read a no-op cannot be told from a change.
    confirm_creates: bool = False
    # Journal hooks (``idc_sync.apply_journal``): ``on_start(op, "account|arn")`` just before an assignment
    # request is sent, ``on_result(result)`` when an assignment operation ends, so a run killed mid-apply
    # leaves which pairs it may have changed and the next run re-reads exactly those.
    on_start: Callable[[Operation, str], None] | None = None
    on_result: Callable[[OpResult], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = dc.field(default_factory=random.Random)


class OpFailed(Exception):
    """Ends one operation with a given status and message (never escapes the apply functions)."""

    def __init__(self, message: str, status: Status = "failed", request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status: Status = status
        self.request_id = request_id


def _retried_by_botocore(exc: BaseException) -> bool:
    """The error came through botocore's retry handler (it decided, and gave up or ran out of attempts)."""
    if not isinstance(exc, ClientError):
        return False
    meta = exc.response.get("ResponseMetadata") or {}
    return any(k in meta for k in ("RetryAttempts", "MaxAttemptsReached", "RetryQuotaReached"))


def _request_id(resp: dict[str, Any] | None) -> str | None:
    if not resp:
        return None
    rid = resp.get("ResponseMetadata", {}).get("RequestId")
    return str(rid) if rid else None


# --------------------------------------------------------------------------- per-operation context
@dc.dataclass
class _Ctx:
    """Book-keeping of one operation: how many retries its calls needed, its last request id."""

    op: OpBase
    retries: int = 0
    request_id: str | None = None
    arn: str | None = None
    notes: list[str] = dc.field(default_factory=list)
    already: bool = False  # the body found its change already in place (a no-op): "already_in_place"


class _Progress:
    """Thread-safe counter that logs ``applied i/n <noun>`` about every 10% (or every N operations) and
    every few seconds, with thousands separators (``applied 1,200/50,000 assignments``)."""

    def __init__(self, total: int, noun: str, log: logging.Logger, options: ApplyOptions) -> None:
        self.total = total
        self.noun = noun
        self.log = log
        every = options.progress_every
        self.every = max(1, every if every is not None else math.ceil(total / 10))
        self.seconds = options.progress_seconds
        self.clock = options.clock
        self.done = 0
        self.counts: Counter[str] = Counter()
        self._last = self.clock()
        self._lock = threading.Lock()

    def add(self, result: OpResult) -> None:
        with self._lock:
            self.done += 1
            self.counts[result.status] += 1
            now = self.clock()
            if self.done == self.total or self.done % self.every == 0 or now - self._last >= self.seconds:
                self._last = now
                self.log.info(
                    "applied %s/%s %s (%s failed so far)",
                    f"{self.done:,}",
                    f"{self.total:,}",
                    self.noun,
                    f"{self.counts['failed']:,}",
                )

    def defer(self, result: OpResult) -> None:
        """Count an operation that was not started (time budget): no progress line for it."""
        with self._lock:
            self.counts[result.status] += 1

    def summary(self) -> str:
        c = self.counts
        return (
            f"{self.noun}: {c['succeeded']:,} succeeded, {c['already_in_place']:,} already in place, "
            f"{c['failed']:,} failed, {c['skipped']:,} skipped, {c['deferred']:,} deferred "
            f"({self.total:,} operations)"
        )


# --------------------------------------------------------------------------- async assignment requests
@dc.dataclass(frozen=True)
class _AsyncFamily:
    """The calls that start, list and describe one kind of async assignment request."""

    name: str
    start: str
    start_key: str
    list: str
    list_key: str
    describe: str
    id_param: str
    status_key: str


CREATION = _AsyncFamily(
    "creation",
    "CreateAccountAssignment",
    "AccountAssignmentCreationStatus",
    "ListAccountAssignmentCreationStatus",
    "AccountAssignmentsCreationStatus",
    "DescribeAccountAssignmentCreationStatus",
    "AccountAssignmentCreationRequestId",
    "AccountAssignmentCreationStatus",
)
DELETION = _AsyncFamily(
    "deletion",
    "DeleteAccountAssignment",
    "AccountAssignmentDeletionStatus",
    "ListAccountAssignmentDeletionStatus",
    "AccountAssignmentsDeletionStatus",
    "DescribeAccountAssignmentDeletionStatus",
    "AccountAssignmentDeletionRequestId",
    "AccountAssignmentDeletionStatus",
)
# IN_PROGRESS requests are bounded by the outstanding-operations quota (10-15 per instance, whoever
# started them): one page in practice. More pages than this and the listing is not trusted this round.
MAX_STATUS_PAGES = 10
# The SUCCEEDED page is read only while it helps: the API documents no order, so when a truncated page
# holds none of the finished requests this many rounds in a row, they are described one by one for the
# rest of the run.
SUCCEEDED_PAGE_MISSES = 3


@dc.dataclass(eq=False)
class _Waiter:
    """One outstanding request, and the worker thread that waits for its end."""

    ctx: _Ctx
    family: _AsyncFamily
    rid: str
    what: str
    started: float
    delay: float  # the next describe backoff (only for a request not seen in the IN_PROGRESS list)
    describe_at: float = 0.0
    status: dict[str, Any] | None = None
    error: BaseException | None = None
    done: threading.Event = dc.field(default_factory=threading.Event)


class _StatusPoller:
    """Follows every outstanding assignment request of a run with one List*Status call per round.

    Each round (every ``poll_interval``, slower while nothing changes) lists the IN_PROGRESS requests of
    each kind that has outstanding requests (``Filter={"Status": "IN_PROGRESS"}``; the quota keeps that
    list short, whatever order the service lists in). A request in it is still running: nothing more is
    sent for it. A request not in it has ended (or is not visible yet): when at least two have, the first
    page of SUCCEEDED requests is read and settles those it holds; the others are described one by one
    (which also gives a FAILED request's FailureReason). A request the list never shows (it lists recent
    requests only) is thus described on its own, with a growing interval, as before. Workers block in
    :meth:`wait`; a request still IN_PROGRESS after ``async_timeout`` fails its operation.
    """

    def __init__(self, ap: _Applier) -> None:
        self.ap = ap
        self.opt = ap.opt
        self._cond = threading.Condition()
        self._waiting: dict[str, _Waiter] = {}
        self._stopping = False
        self._last_change = self.opt.clock()  # a request started or ended
        self._page_misses: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()  # operation -> calls made by the poller (for the log)
        self.settled: Counter[str] = Counter()  # "listed" (SUCCEEDED page) / "described" / "timed out"
        self._thread = threading.Thread(target=self._loop, name="idc-apply-status", daemon=True)

    def start(self) -> _StatusPoller:
        self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def wait(self, ctx: _Ctx, family: _AsyncFamily, status: dict[str, Any], what: str) -> dict[str, Any]:
        """Block until the request ``status`` describes has ended; its terminal status (or raise)."""
        rid = str(status.get("RequestId") or "")
        if not rid:
            raise OpFailed(f"{what}: the answer has no RequestId to follow (status {status.get('Status')!r})")
        waiter = _Waiter(ctx, family, rid, what, self.opt.clock(), self.opt.poll_initial)
        with self._cond:
            self._waiting[rid] = waiter
            self._last_change = waiter.started
            self._cond.notify_all()
        while not waiter.done.wait(1.0):  # real seconds: only a guard against a dead poller thread
            if not self._thread.is_alive():
                with self._cond:
                    self._waiting.pop(rid, None)
                raise OpFailed(
                    f"{what}: its status could not be followed (request {rid}); the next run checks it again",
                    request_id=rid,
                )
        if waiter.error is not None:
            raise waiter.error
        return waiter.status or {}

    # ------------------------------------------------------------------ the polling thread
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if not self._waiting:
                    return
                first_timeout = min(w.started for w in self._waiting.values()) + self.ap.timeout
                quiet = self.opt.clock() - self._last_change
            # Every poll_interval while requests start and end (1-3 s each); when nothing has changed
            # for a while (a slow service), a tenth of that quiet time, up to poll_max.
            delay = min(self.opt.poll_max, max(self.opt.poll_interval, quiet / 10))
            self.opt.sleep(max(0.0, min(delay, first_timeout - self.opt.clock())))
            try:
                self._round()
            except Exception:  # never let the thread die: the workers wait on it
                self.ap.log.exception("following assignment requests failed; trying again")

    def _round(self) -> None:
        with self._cond:
            waiters = list(self._waiting.values())
        for family in (CREATION, DELETION):
            group = [w for w in waiters if w.family is family]
            if group:
                self._poll(family, group)
        now = self.opt.clock()
        for w in waiters:
            if not w.done.is_set() and now - w.started >= self.ap.timeout:
                self.settled["timed out"] += 1
                self._settle(w, error=self.ap.timed_out(w.what, w.rid))

    def _poll(self, family: _AsyncFamily, group: list[_Waiter]) -> None:
        running = self._in_progress(family)
        now = self.opt.clock()
        due: list[_Waiter] = []
        for w in group:
            if running is not None and w.rid in running:
                w.describe_at, w.delay = 0.0, self.opt.poll_initial  # once it leaves the list: at once
            elif now >= w.describe_at:
                due.append(w)
        if len(due) >= 2 and self._page_misses[family.name] < SUCCEEDED_PAGE_MISSES:
            page = self._succeeded_page(family)
            if page is not None:
                succeeded, truncated = page
                hits = [w for w in due if w.rid in succeeded]
                if hits or not truncated:  # a complete page says something even when it has none
                    self._page_misses[family.name] = 0
                else:
                    self._page_misses[family.name] += 1
                for w in hits:
                    self.settled["listed"] += 1
                    self._settle(w, status=succeeded[w.rid])
                due = [w for w in due if w.rid not in succeeded]
        for w in due:
            try:
                self.calls[family.describe] += 1
                params: dict[str, Any] = {"InstanceArn": self.ap.instance_arn, family.id_param: w.rid}
                resp = self.ap.call(w.ctx, family.describe, **params)
            except Exception as exc:  # ends that operation (as a failed Describe always did)
                self._settle(w, error=exc)
                continue
            status = resp.get(family.status_key) or {}
            if status.get("Status") == "IN_PROGRESS":
                w.describe_at = now + w.delay
                w.delay = min(w.delay * self.opt.poll_factor, self.opt.poll_max)
            else:
                self.settled["described"] += 1
                self._settle(w, status=status)

    def _in_progress(self, family: _AsyncFamily) -> set[str] | None:
        """Request ids the service lists as IN_PROGRESS; None when that picture is not complete."""
        ids: set[str] = set()
        token: str | None = None
        for _ in range(MAX_STATUS_PAGES):
            params: dict[str, Any] = {
                "InstanceArn": self.ap.instance_arn,
                "Filter": {"Status": "IN_PROGRESS"},
                "MaxResults": self.opt.status_page_size,
            }
            if token:
                params["NextToken"] = token
            try:
                self.calls[family.list] += 1
                page = self.ap.call(None, family.list, **params)
            except Exception as exc:
                self.ap.log.warning(
                    "%s failed (%s): describing the %s requests one by one this round",
                    family.list,
                    error_code(exc) or exc,
                    family.name,
                )
                return None
            for item in page.get(family.list_key) or []:
                if item.get("Status") == "IN_PROGRESS" and item.get("RequestId"):
                    ids.add(str(item["RequestId"]))
            token = page.get("NextToken")
            if not token:
                return ids
        return None

    def _succeeded_page(self, family: _AsyncFamily) -> tuple[dict[str, dict[str, Any]], bool] | None:
        """The first page of SUCCEEDED requests (by id) and whether there are more; None on error."""
        try:
            self.calls[family.list] += 1
            page = self.ap.call(
                None,
                family.list,
                InstanceArn=self.ap.instance_arn,
                Filter={"Status": "SUCCEEDED"},
                MaxResults=self.opt.status_page_size,
            )
        except Exception as exc:
            self.ap.log.warning("%s failed (%s)", family.list, error_code(exc) or exc)
            return None
        items = {
            str(item["RequestId"]): item
            for item in page.get(family.list_key) or []
            if item.get("Status") == "SUCCEEDED" and item.get("RequestId")
        }
        return items, bool(page.get("NextToken"))

    def _settle(
        self, w: _Waiter, *, status: dict[str, Any] | None = None, error: BaseException | None = None
    ) -> None:
        with self._cond:
            self._waiting.pop(w.rid, None)
            self._last_change = self.opt.clock()
        w.status, w.error = status, error
        w.done.set()


# --------------------------------------------------------------------------- scheduling
def _timestamp(op: Operation) -> float | None:
    """When the newest of the operation's records was last changed (None: no record says)."""
    times = [(r.updated_at or r.created_at) for r in op.records]
    stamps = [t.timestamp() for t in times if t is not None]
    return max(stamps) if stamps else None


def order_assignment_operations(ops: Sequence[Operation]) -> list[int]:
    """The order in which apply starts assignment operations: indexes into ``ops``.

    1. Removals of access that replace nothing (DELETE_ASSIGNMENT without ``depends_on``: the record was
       deleted or no longer names the principal, the access expired, an assignment added by hand), in
       plan order. They revoke access, so they must not wait behind a backlog, and the deletion guard
       keeps them few.
    2. Operations whose records say when they were last changed, the most recent first
       (``RecordRef.updated_at``, else ``created_at``): a requester's new record is served in the next
       run even while a 50,000-assignment cold sync is being worked off over many runs.
    3. Operations without any such time, in plan order.

    ``depends_on`` always holds: an operation another one depends on is moved up to just before its
    most urgent dependent (so a move's new access comes first, then the old one is removed).
    """
    index = {op.key: i for i, op in enumerate(ops)}
    keys: list[tuple[int, float, float]] = []
    for i, op in enumerate(ops):
        ts = _timestamp(op)
        if op.kind is OpKind.DELETE_ASSIGNMENT and not op.depends_on:
            keys.append((0, 0.0, float(i)))
        elif ts is not None:
            keys.append((1, -ts, float(i)))
        else:
            keys.append((2, 0.0, float(i)))
    # A dependency sorts before its dependents (to a fixpoint: chains are one move long in practice; the
    # bound only stops a cycle, which the scheduler then reports as skipped).
    for _ in range(min(len(ops), 32)):
        changed = False
        for i, op in enumerate(ops):
            for dep in op.depends_on:
                j = index.get(dep)
                if j is None or j == i:
                    continue
                tier, ts, pos = keys[i]
                inherited = (tier, ts, pos - 0.5)
                if inherited < keys[j]:
                    keys[j] = inherited
                    changed = True
        if not changed:
            break
    return sorted(range(len(ops)), key=lambda i: keys[i])


class _Schedule:
    """Hands out assignment operations to the workers: the most urgent one whose account is free.

    At most one operation per account is in flight (IdC: "one update per account at a time"); the worker
    count bounds the outstanding operations. An operation whose dependency is queued or running waits for
    it. From the deadline on nothing more is handed out (the workers finish what they hold).
    """

    QUEUED, RUNNING, FINISHED = "queued", "running", "finished"

    def __init__(
        self,
        ops: Sequence[AssignmentOp],
        order: list[int],
        deadline: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.ops = ops
        self.deadline = deadline
        self.clock = clock
        self.cut = False  # the deadline stopped the hand-out
        self.running = 0
        self._closed = False
        self._cond = threading.Condition()
        self._queues: dict[str, deque[int]] = {}
        self._rank: dict[int, int] = {}
        for rank, i in enumerate(order):
            self._rank[i] = rank
            self._queues.setdefault(ops[i].account_id, deque()).append(i)
        self._state: dict[str, str] = {op.key: self.QUEUED for op in ops}
        self._busy: set[str] = set()
        self._parked: dict[str, list[str]] = {}  # dependency key -> accounts whose next op waits for it
        self._heap: list[tuple[int, str]] = []
        for account in self._queues:
            self._push(account)

    def _push(self, account: str) -> None:
        queue = self._queues.get(account)
        if queue:
            heapq.heappush(self._heap, (self._rank[queue[0]], account))

    def next(self) -> int | None:
        """Index of the next operation to run; None when there is nothing more to hand out."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self.deadline is not None and self.clock() >= self.deadline:
                    self._closed = self.cut = True
                    self._cond.notify_all()
                    return None
                picked = self._pop()
                if picked is not None:
                    return picked
                if self.running == 0:  # nothing runs, nothing can start (a dependency cycle): done
                    self._closed = True
                    self._cond.notify_all()
                    return None
                self._cond.wait()

    def _pop(self) -> int | None:
        while self._heap:
            rank, account = heapq.heappop(self._heap)
            queue = self._queues[account]
            if not queue or self._rank[queue[0]] != rank or account in self._busy:
                continue  # a stale entry
            op = self.ops[queue[0]]
            blocker = next(
                (d for d in op.depends_on if self._state.get(d) in (self.QUEUED, self.RUNNING)), None
            )
            if blocker is not None and blocker != op.key:
                self._parked.setdefault(blocker, []).append(account)
                continue
            i = queue.popleft()
            self._busy.add(account)
            self.running += 1
            self._state[op.key] = self.RUNNING
            return i
        return None

    def finish(self, i: int) -> None:
        op = self.ops[i]
        account = op.account_id
        with self._cond:
            self._busy.discard(account)
            self.running -= 1
            self._state[op.key] = self.FINISHED
            self._push(account)
            for parked in self._parked.pop(op.key, []):
                self._push(parked)
            self._cond.notify_all()

    def left(self) -> list[int]:
        """Operations never handed out."""
        with self._cond:
            return [i for queue in self._queues.values() for i in queue]


# --------------------------------------------------------------------------- the worker
class _Applier:
    def __init__(
        self,
        clients: IdcClients,
        observed: ObservedState,
        config: SyncConfig,
        log: logging.Logger | None,
        options: ApplyOptions | None,
    ) -> None:
        self.sso = clients.sso_admin
        self.observed = observed
        self.config = config
        self.log = log or LOG
        self.opt = options or ApplyOptions()
        self.instance_arn = observed.instance_arn
        self.mgmt = observed.org.management_account_id
        self.timeout = float(
            self.opt.async_timeout if self.opt.async_timeout is not None else config.async_timeout_seconds
        )
        self._name_index: dict[str, str] | None = None
        self._index_lock = threading.Lock()
        self._live: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (account, ps arn) -> principals
        self._live_lock = threading.Lock()
        self._observed_assignments: set[tuple[str, str, str, str]] | None = None
        self.finished: dict[str, bool] = {}  # op key -> OpResult.done, in this run (``Operation.depends_on``)
        # A real boto3 client retries throttling, 5xx and connection errors itself (botocore's retry
        # layer); apply must not retry those again on top (see ``call``).
        self.botocore_retries = isinstance(self.sso, BaseClient)
        self.poller: _StatusPoller | None = None  # set by apply_assignments while it runs

    # ------------------------------------------------------------------ calling AWS
    def _wait(self, state: RetryCallState) -> float:
        cap = min(self.opt.backoff_max, self.opt.backoff_base * 2 ** (state.attempt_number - 1))
        return self.opt.rng.uniform(0, cap)  # full jitter

    def retryable(self, exc: BaseException, *, retry_conflict: bool = True) -> bool:
        """Whether apply retries this error itself: one retry layer per error, never two stacked.

        botocore (standard mode, 8 retries: 9 attempts) retries ThrottlingException, 5xx and connection
        errors but not ConflictException. Retrying those again here multiplied the attempts (9 x 8 = 72
        requests for one throttled call, each taking a token of the shared ~20 req/s budget). So apply
        retries ConflictException (unless told not to), and transient errors only when they did not come
        through botocore's retry layer (a client without it, e.g. a test fake: no ``RetryAttempts`` in
        the error's ResponseMetadata).
        """
        if isinstance(exc, BotoConnectionError):
            return not self.botocore_retries
        code = error_code(exc)
        if code == CONFLICT:
            return retry_conflict
        return code in TRANSIENT_CODES and not _retried_by_botocore(exc)

    def call(
        self, ctx: _Ctx | None, operation: str, *, retry_conflict: bool = True, **params: Any
    ) -> dict[str, Any]:
        """One sso-admin call; apply retries only what botocore does not (see :meth:`retryable`)."""
        fn = getattr(self.sso, snake_case(operation))

        def retryable(exc: BaseException) -> bool:
            return self.retryable(exc, retry_conflict=retry_conflict)

        def before_sleep(state: RetryCallState) -> None:
            if ctx is not None:
                ctx.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            code = error_code(exc) if exc is not None else ""
            self.log.debug(
                "%s for %s: %s (attempt %d), retrying",
                operation,
                ctx.op.key if ctx is not None else "status polling",
                code or exc,
                state.attempt_number,
            )

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.opt.max_attempts)),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            sleep=self.opt.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        resp: dict[str, Any] = retrying(fn, **params)
        if ctx is not None:
            ctx.request_id = _request_id(resp) or ctx.request_id
        return resp

    def call_tolerant(
        self, ctx: _Ctx, operation: str, already_done: Callable[[], bool], **params: Any
    ) -> dict[str, Any] | None:
        """A call whose ConflictException may mean "already done" (attach): check the live state first.

        Returns None when the change turned out to be in place already.
        """
        try:
            return self.call(ctx, operation, retry_conflict=False, **params)
        except ClientError as exc:
            if error_code(exc) != CONFLICT:
                raise
            if already_done():
                return None
        ctx.retries += 1  # the conflict was a busy service, not "already done": try again with backoff
        try:
            return self.call(ctx, operation, retry_conflict=True, **params)
        except ClientError as exc:
            if error_code(exc) == CONFLICT and already_done():
                return None
            raise

    def call_gone_ok(self, ctx: _Ctx, operation: str, **params: Any) -> dict[str, Any] | None:
        """A deletion: ResourceNotFoundException means somebody (an earlier attempt) already did it."""
        try:
            return self.call(ctx, operation, **params)
        except ClientError as exc:
            if error_code(exc) == NOT_FOUND:
                return None
            raise

    def paginate(self, ctx: _Ctx, operation: str, key: str, **params: Any) -> list[Any]:
        def pages() -> Iterator[dict[str, Any]]:
            token: str | None = None
            while True:
                extra: dict[str, Any] = {"NextToken": token} if token else {}
                page = self.call(ctx, operation, **params, **extra)
                yield page
                token = page.get("NextToken")
                if not token:
                    return

        out: list[Any] = []
        for page in guard_pages(pages(), "sso-admin", operation, items_key=key):
            out.extend(page.get(key) or [])
        return out

    # ------------------------------------------------------------------ async requests
    def await_status(
        self, ctx: _Ctx, status: dict[str, Any], describe: str, id_param: str, status_key: str, what: str
    ) -> dict[str, Any]:
        """Poll an async request to SUCCEEDED/FAILED; FAILED or timeout end the operation as failed."""
        rid = status.get("RequestId")
        ctx.request_id = rid or ctx.request_id
        start = self.opt.clock()
        delay = self.opt.poll_initial
        while status.get("Status") == "IN_PROGRESS":
            elapsed = self.opt.clock() - start
            if elapsed >= self.timeout:
                raise self.timed_out(what, rid)
            self.opt.sleep(min(delay, max(self.timeout - elapsed, 0.01)))
            delay = min(delay * self.opt.poll_factor, self.opt.poll_max)
            poll: dict[str, Any] = {"InstanceArn": self.instance_arn, id_param: rid}
            resp = self.call(ctx, describe, **poll)
            status = resp[status_key]
        _raise_unless_succeeded(status, what, rid)
        ctx.request_id = rid or ctx.request_id
        return status

    def await_assignment(
        self, ctx: _Ctx, family: _AsyncFamily, status: dict[str, Any], what: str
    ) -> dict[str, Any]:
        """Wait for an assignment request's end: through the shared poller (one List*Status for all
        outstanding requests) when apply_assignments runs one, else by describing it alone."""
        if self.poller is None or status.get("Status") != "IN_PROGRESS":
            return self.await_status(ctx, status, family.describe, family.id_param, family.status_key, what)
        rid = status.get("RequestId")
        ctx.request_id = rid or ctx.request_id
        status = self.poller.wait(ctx, family, status, what)
        _raise_unless_succeeded(status, what, rid)
        ctx.request_id = rid or ctx.request_id
        return status

    def timed_out(self, what: str, rid: str | None) -> OpFailed:
        return OpFailed(
            f"{what}: still IN_PROGRESS after {self.timeout:.0f}s (request {rid}); "
            "the next run checks it again",
            request_id=rid,
        )

    # ------------------------------------------------------------------ running operations
    def run(self, op: OpBase, body: Callable[[_Ctx], str]) -> OpResult:
        """Run one operation; every outcome (even a bug) becomes its OpResult, never an exception."""
        ctx = _Ctx(op=op, arn=op.permission_set_arn)
        status: Status = "succeeded"
        try:
            message = body(ctx)
            if ctx.already:
                status = "already_in_place"
        except OpFailed as exc:
            status, message = exc.status, exc.message
            ctx.request_id = exc.request_id or ctx.request_id
        except ClientError as exc:
            status, message = "failed", self.describe_error(exc, ctx)
        except BotoConnectionError as exc:
            status, message = "failed", f"could not reach the service after {ctx.retries + 1} attempts: {exc}"
        except Exception as exc:
            self.log.exception("unexpected error applying %s", op.key)
            status, message = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
        if ctx.notes:
            message = "; ".join([message, *ctx.notes]) if message else "; ".join(ctx.notes)
        if (
            status not in ("succeeded", "already_in_place")
            and op.kind is OpKind.CREATE_PERMISSION_SET
            and ctx.arn
        ):
            # Half-created (e.g. the boundary or an inline Deny is missing): no ARN in the result, so
            # nothing assigns it this run; the next run sees it (tagged) and completes it as an update.
            message += f" (the permission set exists as {ctx.arn} but its definition is incomplete; the next run completes it)"
            ctx.arn = None
        if status == "failed":
            self.log.warning("%s %s failed: %s", op.kind.value, op.key, message)
        return OpResult(
            key=op.key,
            kind=op.kind,
            status=status,
            message=message,
            attempts=ctx.retries + 1,
            request_id=ctx.request_id,
            permission_set_arn=ctx.arn,
        )

    def describe_error(self, exc: ClientError, ctx: _Ctx) -> str:
        code = error_code(exc)
        text = error_text(exc)
        if code in TRANSIENT_CODES or code == CONFLICT:
            meta = exc.response.get("ResponseMetadata") or {}
            tries = (
                int(meta["RetryAttempts"]) + 1
                if code != CONFLICT and isinstance(meta.get("RetryAttempts"), int)
                else self.opt.max_attempts
            )
            return f"{text} (still failing after {tries} attempts; the next run retries)"
        hint = _HINTS.get(code)
        return f"{text} ({hint})" if hint else text

    def run_grouped(
        self,
        ops: list[_OpT],
        group_of: Callable[[_OpT], str],
        workers: int,
        body: Callable[[_OpT, _Ctx], str],
        progress: _Progress,
    ) -> list[OpResult]:
        """Run groups in parallel (≤ ``workers``), the operations of one group one after another.

        Grouping by account gives "one in-flight operation per account" for free, and the pool size bounds
        the outstanding operations overall. Results come back in the order of ``ops``.
        """
        groups: dict[str, list[int]] = {}
        for i, op in enumerate(ops):
            groups.setdefault(group_of(op), []).append(i)
        results: list[OpResult | None] = [None] * len(ops)

        def run_group(indexes: list[int]) -> None:
            for i in indexes:
                result = self.unmet_dependencies(ops[i]) or self.run(ops[i], functools.partial(body, ops[i]))
                self.finished[ops[i].key] = result.done
                results[i] = result
                progress.add(result)

        if groups:
            with ThreadPoolExecutor(
                max_workers=max(1, min(workers, len(groups))), thread_name_prefix="idc-apply"
            ) as ex:
                for f in [ex.submit(run_group, idx) for idx in groups.values()]:
                    f.result()  # run_group never raises (run() catches everything)
        return [r for r in results if r is not None]

    def run_scheduled(
        self,
        ops: list[AssignmentOp],
        workers: int,
        body: Callable[[AssignmentOp, _Ctx], str],
        progress: _Progress,
        deadline: float | None,
    ) -> list[OpResult]:
        """Run assignment operations most urgent first (:func:`order_assignment_operations`), at most
        ``workers`` at a time and one per account, none started from ``deadline`` on.

        Results come back in the order of ``ops``; an operation not started is "deferred" (or "skipped"
        when it waited for a dependency that could not run).
        """
        schedule = _Schedule(ops, order_assignment_operations(ops), deadline, self.opt.clock)
        results: list[OpResult | None] = [None] * len(ops)

        def work() -> None:
            while (i := schedule.next()) is not None:
                op = ops[i]
                try:
                    result = self.unmet_dependencies(op) or self.run(op, functools.partial(body, op))
                    self.finished[op.key] = result.done
                    results[i] = result
                    progress.add(result)
                    if self.opt.on_result is not None:
                        self.opt.on_result(result)
                finally:
                    schedule.finish(i)

        if ops:
            n = max(1, min(workers, len({op.account_id for op in ops})))
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="idc-apply") as ex:
                for f in [ex.submit(work) for _ in range(n)]:
                    f.result()  # work never raises (run() catches everything)
        left = schedule.left()
        if left and schedule.cut:
            self.log.warning(
                "apply time budget reached: %s of %s %s not started, deferred to the next run "
                "(every operation already started was awaited)",
                f"{len(left):,}",
                f"{len(ops):,}",
                progress.noun,
            )
        for i in left:
            op = ops[i]
            if schedule.cut:
                result = OpResult(
                    key=op.key,
                    kind=op.kind,
                    status="deferred",
                    message=f"{DEFERRED}: the apply time budget ran out before it started",
                    attempts=0,
                    permission_set_arn=op.permission_set_arn,
                )
                progress.defer(result)
            else:
                result = self.unmet_dependencies(op) or OpResult(
                    key=op.key,
                    kind=op.kind,
                    status="skipped",
                    message="waits for an operation that could not run in this run; a later run does it",
                    attempts=0,
                    permission_set_arn=op.permission_set_arn,
                )
                progress.add(result)
            results[i] = result
        return [r for r in results if r is not None]

    def unmet_dependencies(self, op: OpBase) -> OpResult | None:
        """A "skipped" result when an operation ``op`` depends on did not succeed in this run.

        The plan makes the order explicit (the removal of a renamed set's assignment depends on the creation
        of the new set's one, in the same account group, so it has run before): whatever stopped the
        creation (a failure, validation, the guard, a cleared task), the old access stays and a later run
        removes it once the new one exists.
        """
        missing = [k for k in op.depends_on if not self.finished.get(k)]
        if not missing:
            return None
        return OpResult(
            key=op.key,
            kind=op.kind,
            status="skipped",
            message=f"{WAITING_FOR_RENAME} ({', '.join(missing)} did not succeed in this run); "
            "a later run removes it",
            attempts=0,
            permission_set_arn=op.permission_set_arn,
        )

    # ------------------------------------------------------------------ guards
    def refuse_management(self, account_id: str | None) -> None:
        if account_id is not None and account_id == self.mgmt:
            raise OpFailed(
                f"refused: management account {account_id} (nothing is ever changed in it; "
                "its access is managed elsewhere)"
            )

    def observed_ps(self, name: str) -> PermissionSetState | None:
        return self.observed.permission_sets.get(name)

    def require_owned(self, name: str) -> None:
        """Only permission sets with the ownership tag may be changed (sets unknown to the snapshot were
        created by this pipeline in this run, or are checked live before anything destructive)."""
        ps = self.observed_ps(name)
        if ps is not None and not ps.managed:
            tag = f"{self.config.ownership_tag_key}={self.config.ownership_tag_value}"
            raise OpFailed(
                f"refused: permission set {name} is not managed by idc-sync (no {tag} tag); "
                "it is read-only to the pipeline"
            )

    def refuse_if_provisioned_to_management(self, name: str) -> None:
        ps = self.observed_ps(name)
        if ps is not None and self.mgmt in ps.provisioned_accounts:
            raise OpFailed(
                f"refused: permission set {name} is provisioned to the management account {self.mgmt}; "
                "a delegated administrator cannot change it. Remove its management-account assignment "
                "(managed outside idc-sync) or use a differently named permission set"
            )

    # ------------------------------------------------------------------ reading live state
    def name_index(self, ctx: _Ctx, *, refresh: bool = False) -> dict[str, str]:
        """Name -> ARN of every permission set in the instance (only unknown ARNs are described)."""
        with self._index_lock:
            if self._name_index is None or refresh:
                known = {ps.arn: ps.name for ps in self.observed.permission_sets.values()}
                index: dict[str, str] = {}
                for arn in self.paginate(
                    ctx, "ListPermissionSets", "PermissionSets", InstanceArn=self.instance_arn, MaxResults=100
                ):
                    name = known.get(arn)
                    if name is None:
                        desc = self.call(
                            ctx, "DescribePermissionSet", InstanceArn=self.instance_arn, PermissionSetArn=arn
                        )
                        name = desc["PermissionSet"]["Name"]
                    index[name] = arn
                self._name_index = index
            return dict(self._name_index)

    def tags(self, ctx: _Ctx, arn: str) -> dict[str, str]:
        return permission_set_tags(self.reads(ctx), self.instance_arn, arn)

    def owned(self, tags: dict[str, str]) -> bool:
        return tags.get(self.config.ownership_tag_key) == self.config.ownership_tag_value

    def reads(self, ctx: _Ctx) -> SsoReads:
        """The shared permission set readers (``idc_sync.snapshot``) through this operation's calls."""
        return SsoReads(functools.partial(self.call, ctx), functools.partial(self.paginate, ctx))

    def read_permission_set(self, ctx: _Ctx, arn: str) -> PermissionSetState:
        return read_permission_set(self.reads(ctx), self.instance_arn, arn, self.config)

    # ------------------------------------------------------------------ permission sets
    def create_permission_set(self, op: PermissionSetOp, ctx: _Ctx) -> str:
        spec = op.spec
        if spec is None:
            raise OpFailed("plan error: create_permission_set without a spec")
        params: dict[str, Any] = {
            "InstanceArn": self.instance_arn,
            "Name": spec.name,
            "SessionDuration": spec.session_duration,
            "Tags": [{"Key": k, "Value": v} for k, v in self.config.ownership_tag.items()],
        }
        if spec.record is not None:  # lets a later run recognise a rename of this record (plan.py)
            params["Tags"].append({"Key": RECORD_ID_TAG, "Value": spec.record.record_id})
        if spec.description:
            params["Description"] = spec.description
        if spec.relay_state:
            params["RelayState"] = spec.relay_state
        try:
            resp = self.call(ctx, "CreatePermissionSet", retry_conflict=False, **params)
        except ClientError as exc:
            if error_code(exc) != CONFLICT:
                raise
            # Duplicate name (an earlier attempt created it) or a transient conflict: look it up.
            arn = self.name_index(ctx, refresh=True).get(spec.name)
            if arn is None:
                resp = self.call(ctx, "CreatePermissionSet", retry_conflict=True, **params)
            else:
                return self.adopt(ctx, spec, arn)
        arn = resp["PermissionSet"]["PermissionSetArn"]
        ctx.arn = arn
        # Fresh set: only the attributes given at creation are in place.
        current = PermissionSetState(
            arn=arn,
            name=spec.name,
            description=spec.description,
            session_duration=spec.session_duration,
            relay_state=spec.relay_state,
            managed=True,
        )
        changed = self.converge(ctx, arn, spec, current)
        return "created" + (f" ({', '.join(changed)})" if changed else "")

    def adopt(self, ctx: _Ctx, spec: PermissionSetSpec, arn: str) -> str:
        ctx.arn = arn
        current = self.read_permission_set(ctx, arn)
        if not current.managed:
            ctx.arn = None
            tag = f"{self.config.ownership_tag_key}={self.config.ownership_tag_value}"
            raise OpFailed(
                f"a permission set named {spec.name} already exists and is not managed by idc-sync (no {tag} "
                "tag); rename the kintone record, or have an admin delete or tag the existing one"
            )
        changed = self.converge(ctx, arn, spec, current)
        ctx.already = not changed
        return "already existed (created by an earlier attempt), converged" + (
            f" ({', '.join(changed)})" if changed else ""
        )

    def update_permission_set(self, op: PermissionSetOp, ctx: _Ctx, ps_arns: dict[str, str]) -> str:
        spec = op.spec
        if spec is None:
            raise OpFailed("plan error: update_permission_set without a spec")
        self.require_owned(op.permission_set_name)
        self.refuse_if_provisioned_to_management(op.permission_set_name)
        current = self.observed_ps(op.permission_set_name)
        arn = (
            op.permission_set_arn or ps_arns.get(op.permission_set_name) or (current.arn if current else None)
        )
        if arn is None:
            raise OpFailed(
                f"permission set {op.permission_set_name} not found; the next run re-reads the state"
            )
        ctx.arn = arn
        if current is None or current.arn != arn:
            current = self.read_permission_set(ctx, arn)
            if not current.managed:
                raise OpFailed(f"refused: permission set {op.permission_set_name} is not managed by idc-sync")
        changed = self.converge(ctx, arn, spec, current)
        ctx.already = not changed
        return "updated" + (f" ({', '.join(changed)})" if changed else " (nothing to change)")

    def converge(
        self, ctx: _Ctx, arn: str, spec: PermissionSetSpec, current: PermissionSetState
    ) -> list[str]:
        """Make the permission set's definition equal ``spec``; returns what changed.

        Detach before attach (frees room under the 20-policy limit); nothing here reaches the accounts
        until ProvisionPermissionSet, so the order is invisible to users.
        """
        steps = (
            self._converge_attributes,
            self._converge_managed_policies,
            self._converge_customer_policies,
            self._converge_inline_policy,
            self._converge_boundary,
        )
        return [what for step in steps for what in step(ctx, arn, spec, current)]

    def _converge_attributes(
        self, ctx: _Ctx, arn: str, spec: PermissionSetSpec, current: PermissionSetState
    ) -> list[str]:
        """Description, session duration, relay state (the first and last cannot be cleared through the
        API: min length 1)."""
        changed: list[str] = []
        upd: dict[str, Any] = {}
        if spec.description and spec.description != current.description:
            upd["Description"] = spec.description
        if spec.session_duration != current.session_duration:
            upd["SessionDuration"] = spec.session_duration
        if spec.relay_state and spec.relay_state != current.relay_state:
            upd["RelayState"] = spec.relay_state
        if upd:
            self.call(ctx, "UpdatePermissionSet", InstanceArn=self.instance_arn, PermissionSetArn=arn, **upd)
            changed.append("attributes")
        if not spec.description and current.description:
            ctx.notes.append("the description cannot be emptied through the API; it was left as is")
        if not spec.relay_state and current.relay_state:
            ctx.notes.append("the relay state cannot be emptied through the API; it was left as is")
        return changed

    def _converge_managed_policies(
        self, ctx: _Ctx, arn: str, spec: PermissionSetSpec, current: PermissionSetState
    ) -> list[str]:
        base: dict[str, Any] = {"InstanceArn": self.instance_arn, "PermissionSetArn": arn}
        want_m, have_m = set(spec.managed_policies), set(current.managed_policies)
        for policy_arn in sorted(have_m - want_m):
            self.call_gone_ok(
                ctx, "DetachManagedPolicyFromPermissionSet", **base, ManagedPolicyArn=policy_arn
            )
        for policy_arn in sorted(want_m - have_m):
            self.call_tolerant(
                ctx,
                "AttachManagedPolicyToPermissionSet",
                lambda p=policy_arn: p in self.live_managed(ctx, arn),  # type: ignore[misc]
                **base,
                ManagedPolicyArn=policy_arn,
            )
        return ["managed policies"] if want_m != have_m else []

    def _converge_customer_policies(
        self, ctx: _Ctx, arn: str, spec: PermissionSetSpec, current: PermissionSetState
    ) -> list[str]:
        base: dict[str, Any] = {"InstanceArn": self.instance_arn, "PermissionSetArn": arn}
        want_c = {(c.name, c.path) for c in spec.customer_managed_policies}
        have_c = {(c.name, c.path) for c in current.customer_managed_policies}
        for name, path in sorted(have_c - want_c):
            self.call_gone_ok(
                ctx,
                "DetachCustomerManagedPolicyReferenceFromPermissionSet",
                **base,
                CustomerManagedPolicyReference={"Name": name, "Path": path},
            )
        for name, path in sorted(want_c - have_c):
            self.call_tolerant(
                ctx,
                "AttachCustomerManagedPolicyReferenceToPermissionSet",
                lambda ref=(name, path): ref in self.live_customer(ctx, arn),  # type: ignore[misc]
                **base,
                CustomerManagedPolicyReference={"Name": name, "Path": path},
            )
        return ["customer managed policies"] if want_c != have_c else []

    def _converge_inline_policy(
        self, ctx: _Ctx, arn: str, spec: PermissionSetSpec, current: PermissionSetState
    ) -> list[str]:
        """Compared semantically (whitespace/key order do not count). The text written is the requester's
        own (line/column in feedback match what they wrote)."""
        base: dict[str, Any] = {"InstanceArn": self.instance_arn, "PermissionSetArn": arn}
        if spec.inline_policy and spec.inline_policy.strip():
            if current.inline_policy is None or not policies_equal(spec.inline_policy, current.inline_policy):
                self.call(ctx, "PutInlinePolicyToPermissionSet", **base, InlinePolicy=spec.inline_policy)
                return ["inline policy"]
        elif current.inline_policy:
            self.call_gone_ok(ctx, "DeleteInlinePolicyFromPermissionSet", **base)
            return ["inline policy removed"]
        return []

    def _converge_boundary(
        self, ctx: _Ctx, arn: str, spec: PermissionSetSpec, current: PermissionSetState
    ) -> list[str]:
        base: dict[str, Any] = {"InstanceArn": self.instance_arn, "PermissionSetArn": arn}
        if spec.permissions_boundary == current.permissions_boundary:
            return []
        if spec.permissions_boundary is None:
            self.call_gone_ok(ctx, "DeletePermissionsBoundaryFromPermissionSet", **base)
            return ["permissions boundary removed"]
        wire = _boundary_wire(spec.permissions_boundary)
        self.call(ctx, "PutPermissionsBoundaryToPermissionSet", **base, PermissionsBoundary=wire)
        return ["permissions boundary"]

    def live_managed(self, ctx: _Ctx, arn: str) -> set[str]:
        return set(managed_policy_arns(self.reads(ctx), self.instance_arn, arn))

    def live_customer(self, ctx: _Ctx, arn: str) -> set[tuple[str, str]]:
        return {(c.name, c.path) for c in customer_policy_refs(self.reads(ctx), self.instance_arn, arn)}

    def provision(self, op: ProvisionOp, ctx: _Ctx, ps_arns: dict[str, str]) -> str:
        self.refuse_management(op.account_id)
        self.require_owned(op.permission_set_name)
        arn = op.permission_set_arn or ps_arns.get(op.permission_set_name)
        if arn is None and (ps := self.observed_ps(op.permission_set_name)) is not None:
            arn = ps.arn
        if arn is None:
            raise OpFailed(f"permission set {op.permission_set_name} does not exist", status="skipped")
        ctx.arn = arn
        params: dict[str, Any] = {"InstanceArn": self.instance_arn, "PermissionSetArn": arn}
        if op.account_id:
            params.update(TargetType="AWS_ACCOUNT", TargetId=op.account_id)
            where = f"account {op.account_id}"
        else:
            self.refuse_if_provisioned_to_management(op.permission_set_name)
            params.update(TargetType="ALL_PROVISIONED_ACCOUNTS")
            where = "all provisioned accounts"
        resp = self.call(ctx, "ProvisionPermissionSet", **params)
        self.await_status(
            ctx,
            resp["PermissionSetProvisioningStatus"],
            "DescribePermissionSetProvisioningStatus",
            "ProvisionPermissionSetRequestId",
            "PermissionSetProvisioningStatus",
            f"provisioning {op.permission_set_name} to {where}",
        )
        return f"provisioned to {where}"

    def delete_permission_set(self, op: PermissionSetOp, ctx: _Ctx) -> str:
        self.require_owned(op.permission_set_name)
        self.refuse_if_provisioned_to_management(op.permission_set_name)
        ps = self.observed_ps(op.permission_set_name)
        arn = op.permission_set_arn or (ps.arn if ps else None)
        if arn is None:
            ctx.already = True
            return "already gone"
        ctx.arn = arn
        # Verify ownership on the live resource too: the snapshot may be old (clear & retry).
        try:
            live_tags = self.tags(ctx, arn)
        except ClientError as exc:
            if error_code(exc) == NOT_FOUND:
                ctx.already = True
                return "already gone"
            raise
        if not self.owned(live_tags):
            raise OpFailed(
                f"refused: permission set {op.permission_set_name} no longer carries the ownership tag"
            )
        gone = self.call_gone_ok(
            ctx, "DeletePermissionSet", InstanceArn=self.instance_arn, PermissionSetArn=arn
        )
        ctx.already = gone is None
        return "deleted" if gone is not None else "already gone"

    # ------------------------------------------------------------------ assignments
    def assignment_exists(
        self, ctx: _Ctx, account_id: str, arn: str, principal_type: str, principal_id: str
    ) -> bool:
        """Whether the assignment exists now (live read, one per (account, permission set), cached)."""
        key = (account_id, arn)
        with self._live_lock:
            live = self._live.get(key)
        if live is None:
            items = self.paginate(
                ctx,
                "ListAccountAssignments",
                "AccountAssignments",
                InstanceArn=self.instance_arn,
                AccountId=account_id,
                PermissionSetArn=arn,
            )
            live = {(a.get("PrincipalType", ""), a.get("PrincipalId", "")) for a in items}
            with self._live_lock:
                self._live[key] = live
        return (principal_type, principal_id) in live

    def observed_assignment(self, account_id: str, arn: str, principal_type: str, principal_id: str) -> bool:
        """Whether the observed state has this assignment (a plan applied again after a re-read)."""
        with self._live_lock:
            if self._observed_assignments is None:
                self._observed_assignments = {
                    (a.account_id, a.permission_set_arn, a.principal_type, a.principal_id)
                    for a in self.observed.assignments
                }
            return (account_id, arn, principal_type, principal_id) in self._observed_assignments

    def assignment(self, op: AssignmentOp, ctx: _Ctx, ps_arns: dict[str, str]) -> str:
        self.refuse_management(op.account_id)
        name = op.permission_set_name
        ps = self.observed_ps(name)
        arn = ps_arns.get(name) or op.permission_set_arn or (ps.arn if ps else None)
        if arn is None:
            raise OpFailed(
                f"permission set {name} does not exist yet (its creation failed or was skipped); "
                "a later run creates this assignment",
                status="skipped",
            )
        ctx.arn = arn
        self.require_owned(name)
        principal_id = op.principal_id
        params: dict[str, Any] = {
            "InstanceArn": self.instance_arn,
            "TargetId": op.account_id,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": arn,
            "PrincipalType": op.principal_type,
            "PrincipalId": principal_id,
        }
        who = principal_key(op.principal_type, op.principal_name or principal_id)
        pair = pair_key(op.account_id, arn)
        if op.kind == OpKind.CREATE_ASSIGNMENT:
            # The plan creates only what its observed state lacks; applied again with a newer observed
            # state (the rest of a run cut by its time budget), what that state has is not sent again.
            if self.observed_assignment(op.account_id, arn, op.principal_type, principal_id):
                ctx.already = True
                return "already assigned (in the observed state)"
            if self.opt.confirm_creates and self.assignment_exists(
                ctx, op.account_id, arn, op.principal_type, principal_id
            ):
                ctx.already = True
                return "already assigned"
            if self.opt.on_start is not None:
                self.opt.on_start(op, pair)
            resp = self.call(ctx, CREATION.start, **params)
            self.await_assignment(
                ctx, CREATION, resp[CREATION.start_key], f"assigning {name} to {who} in {op.account_id}"
            )
            return "assigned"
        if self.opt.on_start is not None:
            self.opt.on_start(op, pair)
        resp_d = self.call_gone_ok(ctx, DELETION.start, **params)
        if resp_d is None:
            ctx.already = True
            return "already gone"
        self.await_assignment(
            ctx, DELETION, resp_d[DELETION.start_key], f"removing {name} from {who} in {op.account_id}"
        )
        return "removed"


# --------------------------------------------------------------------------- helpers
def _raise_unless_succeeded(status: dict[str, Any], what: str, rid: str | None) -> None:
    """An async request's terminal status: FAILED (with AWS's reason) or anything but SUCCEEDED raises."""
    if status.get("Status") == "FAILED":
        reason = status.get("FailureReason") or "no FailureReason given"
        raise OpFailed(f"{what} FAILED: {reason}", request_id=rid)
    if status.get("Status") != "SUCCEEDED":
        raise OpFailed(f"{what}: unexpected status {status.get('Status')!r}", request_id=rid)


def _boundary_wire(b: PermissionsBoundary) -> dict[str, Any]:
    if b.customer_managed_policy is not None:
        return {
            "CustomerManagedPolicyReference": {
                "Name": b.customer_managed_policy.name,
                "Path": b.customer_managed_policy.path,
            }
        }
    return {"ManagedPolicyArn": b.managed_policy_arn}


def _log_summary(log: logging.Logger, progress: _Progress) -> None:
    if progress.total:
        log.info("%s", progress.summary())


def permission_set_arns(plan: Plan, observed: ObservedState, results: Iterable[OpResult]) -> dict[str, str]:
    """Name -> ARN of every permission set known after ``apply_permission_sets`` (observed + created).

    This is what ``apply_assignments`` needs as ``ps_arns``.
    """
    out = {name: ps.arn for name, ps in observed.permission_sets.items()}
    names = {op.key: op.permission_set_name for op in plan.operations}
    for r in results:
        if r.permission_set_arn and r.done and r.key in names:
            out[names[r.key]] = r.permission_set_arn
    return out


# --------------------------------------------------------------------------- public API
def apply_permission_sets(
    clients: IdcClients,
    plan: Plan,
    observed: ObservedState,
    config: SyncConfig,
    *,
    log: logging.Logger | None = None,
    options: ApplyOptions | None = None,
) -> list[OpResult]:
    """Create, update, then provision permission sets. One OpResult per operation, in that order.

    DELETE_PERMISSION_SET is not handled here (it must follow the assignment deletions): see
    :func:`apply_assignments` / :func:`apply_permission_set_deletions`.
    """
    ap = _Applier(clients, observed, config, log, options)
    creates = plan.of_type(PermissionSetOp, OpKind.CREATE_PERMISSION_SET)
    updates = plan.of_type(PermissionSetOp, OpKind.UPDATE_PERMISSION_SET)
    provisions = plan.of_type(ProvisionOp)
    progress = _Progress(
        len(creates) + len(updates) + len(provisions), "permission set operations", ap.log, ap.opt
    )
    results: list[OpResult] = []

    # Creates and updates are synchronous calls; one worker per permission set, a few in parallel.
    by_name: Callable[[PermissionSetOp], str] = lambda op: op.permission_set_name  # noqa: E731
    results += ap.run_grouped(
        creates,
        by_name,
        ap.opt.permission_set_concurrency,
        lambda op, ctx: ap.create_permission_set(op, ctx),
        progress,
    )
    ps_arns = permission_set_arns(plan, observed, results)
    results += ap.run_grouped(
        updates,
        by_name,
        ap.opt.permission_set_concurrency,
        lambda op, ctx: ap.update_permission_set(op, ctx, ps_arns),
        progress,
    )

    # Provisioning pushes the new definition to accounts: not for a set whose create/update failed
    # (it would publish a half-applied definition); at most 3 at a time and one per account.
    by_key = {op.key: op for op in plan.operations}
    broken = {by_key[r.key].permission_set_name for r in results if not r.done and r.key in by_key}
    runnable = _skip_permission_sets(
        provisions,
        broken,
        "not provisioned: creating/updating permission set {name} failed in this run",
        results,
        progress,
    )
    results += ap.run_grouped(
        runnable,
        lambda op: op.account_id or f"all:{op.permission_set_name}",
        max(1, config.provisioning_concurrency),
        lambda op, ctx: ap.provision(op, ctx, ps_arns),
        progress,
    )
    _log_summary(ap.log, progress)
    return results


def apply_assignments(
    clients: IdcClients,
    plan: Plan,
    observed: ObservedState,
    config: SyncConfig,
    *,
    ps_arns: dict[str, str],
    log: logging.Logger | None = None,
    options: ApplyOptions | None = None,
    delete_permission_sets: bool = True,
) -> list[OpResult]:
    """Create and delete account assignments, then (by default) delete permission sets.

    ``ps_arns``: name -> ARN, including the sets created in this run (see :func:`permission_set_arns`).
    At most ``config.assignment_concurrency`` operations are outstanding and at most one per account;
    the most urgent go first (:func:`order_assignment_operations`). None starts after the deadline
    (``options.deadline``, default ``config.apply_budget_seconds`` from now): those end "deferred"; the
    ones in flight are awaited. One OpResult per operation, assignments in plan order, then the
    permission set deletions.
    """
    opt = options or ApplyOptions()
    deadline = opt.deadline
    if deadline is None and config.apply_budget_seconds is not None:
        deadline = opt.clock() + config.apply_budget_seconds
    opt = dc.replace(opt, deadline=deadline)
    ap = _Applier(clients, observed, config, log, opt)
    ops = plan.of_type(AssignmentOp)
    progress = _Progress(len(ops), "assignments", ap.log, ap.opt)
    ap.poller = _StatusPoller(ap).start()
    try:
        results = ap.run_scheduled(
            ops,
            max(1, config.assignment_concurrency),
            lambda op, ctx: ap.assignment(op, ctx, ps_arns),
            progress,
            deadline,
        )
    finally:
        ap.poller.close()
    if ap.poller.calls:
        ap.log.info(
            "assignment requests followed with %s (settled: %s)",
            ", ".join(f"{n:,} {name}" for name, n in sorted(ap.poller.calls.items())),
            ", ".join(f"{n:,} {how}" for how, n in sorted(ap.poller.settled.items())) or "none",
        )
    _log_summary(ap.log, progress)
    if delete_permission_sets:
        by_key = {op.key: op for op in ops}
        unfinished = [r for r in results if r.kind == OpKind.DELETE_ASSIGNMENT and not r.done]
        failed = {by_key[r.key].permission_set_name for r in unfinished if r.status != "deferred"}
        deferred = {by_key[r.key].permission_set_name for r in unfinished if r.status == "deferred"}
        results += apply_permission_set_deletions(
            clients,
            plan,
            observed,
            config,
            failed_removals=failed,
            deferred=deferred - failed,
            log=log,
            options=opt,
        )
    return results


def apply_permission_set_deletions(
    clients: IdcClients,
    plan: Plan,
    observed: ObservedState,
    config: SyncConfig,
    *,
    failed_removals: set[str] | frozenset[str] = frozenset(),
    deferred: set[str] | frozenset[str] = frozenset(),
    log: logging.Logger | None = None,
    options: ApplyOptions | None = None,
) -> list[OpResult]:
    """DELETE_PERMISSION_SET operations; run only after the assignment deletions.

    ``failed_removals``: names whose assignment deletions failed in this run; they are skipped (IdC would
    refuse with ConflictException while assignments remain) and the next run tries again. ``deferred``: names
    whose assignment deletions were deferred (time budget): "deferred" too. From ``options.deadline`` on
    (when given) no deletion starts: the rest is deferred.
    """
    ap = _Applier(clients, observed, config, log, options)
    ops = plan.of_type(PermissionSetOp, OpKind.DELETE_PERMISSION_SET)
    progress = _Progress(len(ops), "permission set deletions", ap.log, ap.opt)
    results: list[OpResult] = []
    runnable = _skip_permission_sets(
        ops,
        set(failed_removals),
        "not deleted: some assignments of {name} could not be removed in this run",
        results,
        progress,
    )
    runnable = _skip_permission_sets(
        runnable,
        set(deferred),
        f"{DEFERRED}: some assignment removals of {{name}} were deferred (time budget)",
        results,
        progress,
        status="deferred",
    )
    deadline = ap.opt.deadline
    if runnable and deadline is not None and ap.opt.clock() >= deadline:
        runnable = _skip_permission_sets(
            runnable,
            {op.permission_set_name for op in runnable},
            f"{DEFERRED}: the apply time budget ran out before it started",
            results,
            progress,
            status="deferred",
        )
    results += ap.run_grouped(
        runnable,
        lambda op: op.permission_set_name,
        ap.opt.permission_set_concurrency,
        lambda op, ctx: ap.delete_permission_set(op, ctx),
        progress,
    )
    _log_summary(ap.log, progress)
    return results


def _skip_permission_sets(
    ops: list[_OpT],
    names: set[str],
    message: str,
    results: list[OpResult],
    progress: _Progress,
    *,
    status: Status = "skipped",
) -> list[_OpT]:
    """Record a ``status`` ("skipped") result for each op of a permission set in ``names``; return the
    others."""
    runnable: list[_OpT] = []
    for op in ops:
        if op.permission_set_name not in names:
            runnable.append(op)
            continue
        result = OpResult(
            key=op.key,
            kind=op.kind,
            status=status,
            message=message.format(name=op.permission_set_name),
            attempts=0 if status == "deferred" else 1,
            permission_set_arn=op.permission_set_arn,
        )
        results.append(result)
        if status == "deferred":
            progress.defer(result)
        else:
            progress.add(result)
    return runnable


def count_by_status(results: Iterable[OpResult]) -> dict[str, int]:
    """``{"succeeded": n, "already_in_place": n, "failed": n, "skipped": n, "deferred": n}`` for summaries.

    "deferred" (not started: time budget) is not a failure: the next run does it.
    """
    c = Counter(r.status for r in results)
    return {s: c.get(s, 0) for s in STATUSES}
