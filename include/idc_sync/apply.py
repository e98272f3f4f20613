"""Apply a :class:`~idc_sync.model.Plan` to IAM Identity Center: idempotent, bounded, and never all-or-nothing.

Order of operations (each step only starts when the previous one has finished):

1. ``apply_permission_sets``: CREATE_PERMISSION_SET, then UPDATE_PERMISSION_SET, then
   PROVISION_PERMISSION_SET (a provisioning of a set whose create/update failed in this run is skipped).
2. ``apply_assignments``: CREATE_ASSIGNMENT and DELETE_ASSIGNMENT (per account in plan order: creations
   before deletions, so a moved access never has a gap; an operation whose ``depends_on`` did not succeed
   in this run, e.g. the removal of a renamed set's assignment whose replacement failed, is skipped and
   left to a later run), then, by default, DELETE_PERMISSION_SET through
   ``apply_permission_set_deletions``: IdC refuses to delete a permission set that still has assignments
   (ConflictException), so its assignment deletions must be finished first, and a set whose assignment
   deletions failed is not deleted in this run.

Why it is built this way:

- *Idempotent*: a UI "clear & retry" re-runs a task with the snapshot taken before the first attempt, so
  every call tolerates "already done": a duplicate CreatePermissionSet adopts the existing set when it
  carries our ownership tag, an attach that conflicts is checked against the live state, deletions that
  find nothing (ResourceNotFoundException) count as done, and CreateAccountAssignment of an existing
  assignment succeeds in IdC anyway.
- *Async*: CreateAccountAssignment, DeleteAccountAssignment and ProvisionPermissionSet only start work;
  botocore has no waiters for them, so we poll the Describe*Status call with a growing interval until
  SUCCEEDED/FAILED or ``config.async_timeout_seconds``.
- *Bounded*: IdC allows 10 outstanding assignment operations, 3 concurrent provisionings, and one update
  per account at a time (a second one gets ConflictException). Operations are grouped by account and each
  account's operations run one after another in a worker; the worker pool size is the concurrency bound.
- *Retries*: ThrottlingException and ConflictException (and transient 5xx) are retried with exponential
  backoff and full jitter, a bounded number of times. Everything else (AccessDenied, Validation, quota,
  FAILED status) fails that one operation with a clear message; the other operations continue.
- *Defence in depth*: whatever the plan says, nothing is sent for the management account, and only
  permission sets carrying the ownership tag are changed or deleted.

No Airflow import: the tasks call these functions and push the results to XCom.
"""

from __future__ import annotations

import dataclasses as dc
import functools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from idc_sync.config import SyncConfig
from idc_sync.model import (
    RECORD_ID_TAG,
    CustomerPolicyRef,
    ObservedState,
    Operation,
    OpKind,
    OpResult,
    PermissionsBoundary,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    principal_key,
)
from idc_sync.policy import policies_equal

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

Status = Literal["succeeded", "already_in_place", "failed", "skipped"]

WAITING_FOR_RENAME = "waiting for the renamed set's assignment"


@dc.dataclass
class ApplyOptions:
    """Timing knobs. Tests inject ``sleep``/``clock``/``rng`` so nothing really waits."""

    max_attempts: int = 8  # per API call, for Throttling/Conflict/5xx (botocore retries throttling too)
    backoff_base: float = 0.5  # seconds; attempt n sleeps uniform(0, min(backoff_max, base * 2**(n-1)))
    backoff_max: float = 20.0
    poll_initial: float = 0.5  # first wait before polling an async request
    poll_factor: float = 1.5  # the wait grows by this factor ...
    poll_max: float = 5.0  # ... up to this
    async_timeout: float | None = None  # default: config.async_timeout_seconds
    progress_every: int = 50  # log "applied i/n ..." every this many operations ...
    progress_seconds: float = 10.0  # ... or when this long has passed since the last progress line
    permission_set_concurrency: int = 4  # synchronous create/update calls (shared ~20 req/s quota)
    # Before CreateAccountAssignment, read the live assignments of that (account, permission set) once
    # (one ListAccountAssignments per pair) so an assignment already there (an earlier try of this task
    # made it) is reported "already_in_place", not "succeeded". On for task retries: AWS answers a
    # duplicate create with SUCCEEDED, so without a read a no-op cannot be told from a change.
    confirm_creates: bool = False
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


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def _request_id(resp: dict[str, Any] | None) -> str | None:
    if not resp:
        return None
    rid = resp.get("ResponseMetadata", {}).get("RequestId")
    return str(rid) if rid else None


# --------------------------------------------------------------------------- per-operation context
@dc.dataclass
class _Ctx:
    """Book-keeping of one operation: how many retries its calls needed, its last request id."""

    op: Operation
    retries: int = 0
    request_id: str | None = None
    arn: str | None = None
    notes: list[str] = dc.field(default_factory=list)
    already: bool = False  # the body found its change already in place (a no-op): "already_in_place"


class _Progress:
    """Thread-safe counter that logs ``applied i/n <noun>`` every N operations or every few seconds."""

    def __init__(self, total: int, noun: str, log: logging.Logger, options: ApplyOptions) -> None:
        self.total = total
        self.noun = noun
        self.log = log
        self.every = max(1, options.progress_every)
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
                    "applied %d/%d %s (%d failed so far)",
                    self.done,
                    self.total,
                    self.noun,
                    self.counts["failed"],
                )

    def summary(self) -> str:
        return (
            f"{self.noun}: {self.counts['succeeded']} succeeded, "
            f"{self.counts['already_in_place']} already in place, {self.counts['failed']} failed, "
            f"{self.counts['skipped']} skipped ({self.total} operations)"
        )


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
        self.finished: dict[str, bool] = {}  # op key -> OpResult.done, in this run (``Operation.depends_on``)

    # ------------------------------------------------------------------ calling AWS
    def _wait(self, state: RetryCallState) -> float:
        cap = min(self.opt.backoff_max, self.opt.backoff_base * 2 ** (state.attempt_number - 1))
        return self.opt.rng.uniform(0, cap)  # full jitter

    def call(
        self, ctx: _Ctx, operation: str, *, retry_conflict: bool = True, **params: Any
    ) -> dict[str, Any]:
        """One sso-admin call with bounded retries of transient errors (and conflicts, unless told not to)."""
        fn = getattr(self.sso, _snake(operation))

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, BotoConnectionError):
                return True
            code = error_code(exc)
            return code in TRANSIENT_CODES or (retry_conflict and code == CONFLICT)

        def before_sleep(state: RetryCallState) -> None:
            ctx.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            code = error_code(exc) if exc is not None else ""
            self.log.debug(
                "%s for %s: %s (attempt %d), retrying",
                operation,
                ctx.op.key,
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
        out: list[Any] = []
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"NextToken": token} if token else {}
            page = self.call(ctx, operation, **params, **extra)
            out.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
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
                raise OpFailed(
                    f"{what}: still IN_PROGRESS after {self.timeout:.0f}s (request {rid}); "
                    "the next run checks it again",
                    request_id=rid,
                )
            self.opt.sleep(min(delay, max(self.timeout - elapsed, 0.01)))
            delay = min(delay * self.opt.poll_factor, self.opt.poll_max)
            poll: dict[str, Any] = {"InstanceArn": self.instance_arn, id_param: rid}
            resp = self.call(ctx, describe, **poll)
            status = resp[status_key]
        if status.get("Status") == "FAILED":
            reason = status.get("FailureReason") or "no FailureReason given"
            raise OpFailed(f"{what} FAILED: {reason}", request_id=rid)
        if status.get("Status") != "SUCCEEDED":
            raise OpFailed(f"{what}: unexpected status {status.get('Status')!r}", request_id=rid)
        ctx.request_id = rid or ctx.request_id
        return status

    # ------------------------------------------------------------------ running operations
    def run(self, op: Operation, body: Callable[[_Ctx], str]) -> OpResult:
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
        text = f"{code}: {error_message(exc)}"
        if code in TRANSIENT_CODES or code == CONFLICT:
            return f"{text} (still failing after {self.opt.max_attempts} attempts; the next run retries)"
        hint = _HINTS.get(code)
        return f"{text} ({hint})" if hint else text

    def run_grouped(
        self,
        ops: list[Operation],
        group_of: Callable[[Operation], str],
        workers: int,
        body: Callable[[Operation, _Ctx], str],
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

    def unmet_dependencies(self, op: Operation) -> OpResult | None:
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
        items = self.paginate(
            ctx, "ListTagsForResource", "Tags", InstanceArn=self.instance_arn, ResourceArn=arn
        )
        return {t["Key"]: t.get("Value", "") for t in items}

    def owned(self, tags: dict[str, str]) -> bool:
        return tags.get(self.config.ownership_tag_key) == self.config.ownership_tag_value

    def read_permission_set(self, ctx: _Ctx, arn: str) -> PermissionSetState:
        base: dict[str, Any] = {"InstanceArn": self.instance_arn, "PermissionSetArn": arn}
        desc = self.call(ctx, "DescribePermissionSet", **base)["PermissionSet"]
        managed = self.paginate(ctx, "ListManagedPoliciesInPermissionSet", "AttachedManagedPolicies", **base)
        customer = self.paginate(
            ctx,
            "ListCustomerManagedPolicyReferencesInPermissionSet",
            "CustomerManagedPolicyReferences",
            **base,
        )
        inline = self.call(ctx, "GetInlinePolicyForPermissionSet", **base).get("InlinePolicy") or None
        boundary: PermissionsBoundary | None = None
        try:
            raw = self.call(ctx, "GetPermissionsBoundaryForPermissionSet", **base).get("PermissionsBoundary")
        except ClientError as exc:
            if error_code(exc) != NOT_FOUND:
                raise
            raw = None
        if raw:
            cmp = raw.get("CustomerManagedPolicyReference")
            boundary = PermissionsBoundary(
                managed_policy_arn=raw.get("ManagedPolicyArn"),
                customer_managed_policy=CustomerPolicyRef(name=cmp["Name"], path=cmp.get("Path", "/"))
                if cmp
                else None,
            )
        tags = self.tags(ctx, arn)
        return PermissionSetState(
            arn=arn,
            name=desc["Name"],
            description=desc.get("Description", "") or "",
            session_duration=desc.get("SessionDuration", "PT1H") or "PT1H",
            relay_state=desc.get("RelayState") or None,
            managed_policies=sorted(p["Arn"] for p in managed),
            customer_managed_policies=sorted(
                (CustomerPolicyRef(name=c["Name"], path=c.get("Path", "/")) for c in customer),
                key=lambda c: (c.path, c.name),
            ),
            inline_policy=inline,
            permissions_boundary=boundary,
            tags=tags,
            managed=self.owned(tags),
        )

    # ------------------------------------------------------------------ permission sets
    def create_permission_set(self, op: Operation, ctx: _Ctx) -> str:
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

    def update_permission_set(self, op: Operation, ctx: _Ctx, ps_arns: dict[str, str]) -> str:
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
        base: dict[str, Any] = {"InstanceArn": self.instance_arn, "PermissionSetArn": arn}
        changed: list[str] = []

        # Attributes. Description/RelayState cannot be cleared through the API (min length 1).
        upd: dict[str, Any] = {}
        if spec.description and spec.description != current.description:
            upd["Description"] = spec.description
        if spec.session_duration != current.session_duration:
            upd["SessionDuration"] = spec.session_duration
        if spec.relay_state and spec.relay_state != current.relay_state:
            upd["RelayState"] = spec.relay_state
        if upd:
            self.call(ctx, "UpdatePermissionSet", **base, **upd)
            changed.append("attributes")
        if not spec.description and current.description:
            ctx.notes.append("the description cannot be emptied through the API; it was left as is")
        if not spec.relay_state and current.relay_state:
            ctx.notes.append("the relay state cannot be emptied through the API; it was left as is")

        # AWS managed policies.
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
        if want_m != have_m:
            changed.append("managed policies")

        # Customer managed policy references.
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
        if want_c != have_c:
            changed.append("customer managed policies")

        # Inline policy (compared semantically: whitespace/key order do not count).
        # The text written is the requester's own (line/column in feedback match what they wrote).
        if spec.inline_policy and spec.inline_policy.strip():
            if current.inline_policy is None or not policies_equal(spec.inline_policy, current.inline_policy):
                self.call(ctx, "PutInlinePolicyToPermissionSet", **base, InlinePolicy=spec.inline_policy)
                changed.append("inline policy")
        elif current.inline_policy:
            self.call_gone_ok(ctx, "DeleteInlinePolicyFromPermissionSet", **base)
            changed.append("inline policy removed")

        # Permissions boundary.
        if spec.permissions_boundary != current.permissions_boundary:
            if spec.permissions_boundary is None:
                self.call_gone_ok(ctx, "DeletePermissionsBoundaryFromPermissionSet", **base)
                changed.append("permissions boundary removed")
            else:
                self.call(
                    ctx,
                    "PutPermissionsBoundaryToPermissionSet",
                    **base,
                    PermissionsBoundary=_boundary_wire(spec.permissions_boundary),
                )
                changed.append("permissions boundary")
        return changed

    def live_managed(self, ctx: _Ctx, arn: str) -> set[str]:
        items = self.paginate(
            ctx,
            "ListManagedPoliciesInPermissionSet",
            "AttachedManagedPolicies",
            InstanceArn=self.instance_arn,
            PermissionSetArn=arn,
        )
        return {p["Arn"] for p in items}

    def live_customer(self, ctx: _Ctx, arn: str) -> set[tuple[str, str]]:
        items = self.paginate(
            ctx,
            "ListCustomerManagedPolicyReferencesInPermissionSet",
            "CustomerManagedPolicyReferences",
            InstanceArn=self.instance_arn,
            PermissionSetArn=arn,
        )
        return {(c["Name"], c.get("Path", "/")) for c in items}

    def provision(self, op: Operation, ctx: _Ctx, ps_arns: dict[str, str]) -> str:
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

    def delete_permission_set(self, op: Operation, ctx: _Ctx) -> str:
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

    def assignment(self, op: Operation, ctx: _Ctx, ps_arns: dict[str, str]) -> str:
        self.refuse_management(op.account_id)
        if not op.account_id:
            raise OpFailed("plan error: assignment operation without an account id")
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
        if principal_id is None and op.principal_type and op.principal_name:
            principal_id = self.observed.principal_ids.get(
                principal_key(op.principal_type, op.principal_name)
            )
        if principal_id is None or op.principal_type is None:
            raise OpFailed(
                f"principal {op.principal_type}:{op.principal_name} is not known in IAM Identity Center",
                status="skipped",
            )
        params: dict[str, Any] = {
            "InstanceArn": self.instance_arn,
            "TargetId": op.account_id,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": arn,
            "PrincipalType": op.principal_type,
            "PrincipalId": principal_id,
        }
        who = f"{op.principal_type}:{op.principal_name or principal_id}"
        if op.kind == OpKind.CREATE_ASSIGNMENT:
            if self.opt.confirm_creates and self.assignment_exists(
                ctx, op.account_id, arn, op.principal_type, principal_id
            ):
                ctx.already = True
                return "already assigned"
            resp = self.call(ctx, "CreateAccountAssignment", **params)
            self.await_status(
                ctx,
                resp["AccountAssignmentCreationStatus"],
                "DescribeAccountAssignmentCreationStatus",
                "AccountAssignmentCreationRequestId",
                "AccountAssignmentCreationStatus",
                f"assigning {name} to {who} in {op.account_id}",
            )
            return "assigned"
        resp_d = self.call_gone_ok(ctx, "DeleteAccountAssignment", **params)
        if resp_d is None:
            ctx.already = True
            return "already gone"
        self.await_status(
            ctx,
            resp_d["AccountAssignmentDeletionStatus"],
            "DescribeAccountAssignmentDeletionStatus",
            "AccountAssignmentDeletionRequestId",
            "AccountAssignmentDeletionStatus",
            f"removing {name} from {who} in {op.account_id}",
        )
        return "removed"


# --------------------------------------------------------------------------- helpers
def _snake(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


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
    creates = plan.of_kind(OpKind.CREATE_PERMISSION_SET)
    updates = plan.of_kind(OpKind.UPDATE_PERMISSION_SET)
    provisions = plan.of_kind(OpKind.PROVISION_PERMISSION_SET)
    progress = _Progress(
        len(creates) + len(updates) + len(provisions), "permission set operations", ap.log, ap.opt
    )
    results: list[OpResult] = []

    # Creates and updates are synchronous calls; one worker per permission set, a few in parallel.
    by_name: Callable[[Operation], str] = lambda op: op.permission_set_name  # noqa: E731
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
    At most ``config.assignment_concurrency`` operations are outstanding and at most one per account.
    """
    ap = _Applier(clients, observed, config, log, options)
    ops = plan.of_kind(OpKind.CREATE_ASSIGNMENT, OpKind.DELETE_ASSIGNMENT)
    progress = _Progress(len(ops), "assignments", ap.log, ap.opt)
    results = ap.run_grouped(
        ops,
        lambda op: op.account_id or "",
        max(1, config.assignment_concurrency),
        lambda op, ctx: ap.assignment(op, ctx, ps_arns),
        progress,
    )
    _log_summary(ap.log, progress)
    if delete_permission_sets:
        by_key = {op.key: op for op in ops}
        failed = {
            by_key[r.key].permission_set_name
            for r in results
            if r.kind == OpKind.DELETE_ASSIGNMENT and not r.done
        }
        results += apply_permission_set_deletions(
            clients, plan, observed, config, blocked=failed, log=log, options=options
        )
    return results


def apply_permission_set_deletions(
    clients: IdcClients,
    plan: Plan,
    observed: ObservedState,
    config: SyncConfig,
    *,
    blocked: set[str] | frozenset[str] = frozenset(),
    log: logging.Logger | None = None,
    options: ApplyOptions | None = None,
) -> list[OpResult]:
    """DELETE_PERMISSION_SET operations; run only after the assignment deletions.

    ``blocked``: names whose assignment deletions failed in this run; they are skipped (IdC would refuse
    with ConflictException while assignments remain) and the next run tries again.
    """
    ap = _Applier(clients, observed, config, log, options)
    ops = plan.of_kind(OpKind.DELETE_PERMISSION_SET)
    progress = _Progress(len(ops), "permission set deletions", ap.log, ap.opt)
    results: list[OpResult] = []
    runnable = _skip_permission_sets(
        ops,
        set(blocked),
        "not deleted: some assignments of {name} could not be removed in this run",
        results,
        progress,
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
    ops: list[Operation], names: set[str], message: str, results: list[OpResult], progress: _Progress
) -> list[Operation]:
    """Record a "skipped" result for each op of a permission set in ``names``; return the others."""
    runnable: list[Operation] = []
    for op in ops:
        if op.permission_set_name not in names:
            runnable.append(op)
            continue
        result = OpResult(
            key=op.key,
            kind=op.kind,
            status="skipped",
            message=message.format(name=op.permission_set_name),
            permission_set_arn=op.permission_set_arn,
        )
        results.append(result)
        progress.add(result)
    return runnable


def count_by_status(results: Iterable[OpResult]) -> dict[str, int]:
    """``{"succeeded": n, "already_in_place": n, "failed": n, "skipped": n}`` for summaries."""
    c = Counter(r.status for r in results)
    return {s: c.get(s, 0) for s in ("succeeded", "already_in_place", "failed", "skipped")}
