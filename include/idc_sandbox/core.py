"""Shared machinery of the sandbox: the lock, the clock, fault injection, rate limits and the call log.

A service handler is a plain function ``(sandbox, params) -> response dict`` that raises
:class:`ServiceError` for the errors the real service returns; the server frames both in the
service's wire protocol.
"""

from __future__ import annotations

import dataclasses as dc
import datetime as dt
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from idc_sandbox.state import World

FAULT_KINDS = (
    "throttle",  # the service's throttling error (AWS ThrottlingException, kintone GAIA_TO04 429, Graph 429)
    "conflict",  # AWS ConflictException
    "error5xx",  # AWS InternalServerException / kintone 500 / Graph 503 / Slack 500
    "access_denied",  # AWS AccessDeniedException
    "async_failed",  # AWS async request ends FAILED (FailureReason)
    "outage",  # the whole service answers 503 (connection-level outage)
    "latency",  # adds latency_ms before answering
    "db_lock",  # kintone GAIA_DA02 (520)
    "short_read",  # kintone cursor page silently drops its last record (fewer records than totalCount)
    "garbled",  # AWS answers 200 with its body cut in half (a broken proxy; a write has still happened);
    # Slack answers 200 with a proxy's HTML page (the message never reached Slack)
)
_AWS_KINDS = ("throttle", "conflict", "error5xx", "access_denied", "outage", "latency")
# The kinds each service's handlers can produce: a rule of another kind would be accepted and never fire.
SERVICE_FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "sso-admin": (*_AWS_KINDS, "async_failed", "garbled"),
    "identitystore": (*_AWS_KINDS, "garbled"),
    "organizations": (*_AWS_KINDS, "garbled"),
    "iam": _AWS_KINDS,
    "accessanalyzer": _AWS_KINDS,
    "kintone": ("throttle", "error5xx", "outage", "latency", "db_lock", "short_read"),
    "graph": ("throttle", "error5xx", "access_denied", "outage", "latency"),
    "slack": ("throttle", "error5xx", "outage", "latency", "garbled"),
}


class Clock(Protocol):
    """Where the sandbox reads time: token buckets, async operation latency, cursor TTLs, timestamps.

    Injectable so that tests advance time by events (:class:`ManualClock`) instead of sleeping and
    asserting on elapsed seconds, which breaks on a loaded machine.
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...  # wall clock, seconds since the epoch


class SystemClock:
    """The real clock (the default): behaviour of a sandbox without an injected clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`); thread-safe.

    Wall time starts at ``start`` (default: the real time when created, so seeded data that is
    "12 minutes old" stays plausible) and advances together with the monotonic time.
    """

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        # Running totals (not base + offset): "deadline = now + d" then "advance(d)" compares equal,
        # with no floating-point residue either way.
        self._mono = 1_000.0
        self._wall = time.time() if start is None else start

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._mono += seconds
            self._wall += seconds

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time(self) -> float:
        with self._lock:
            return self._wall


class ServiceError(Exception):
    """An error in the emulated service's own terms (error code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra


@dc.dataclass
class FaultRule:
    service: str  # "sso-admin" | "identitystore" | "organizations" | "iam" | "accessanalyzer" |
    # "kintone" | "graph" | "slack" | "*"
    kind: str  # one of FAULT_KINDS
    operation: str = "*"  # e.g. "CreateAccountAssignment", "records/cursor.json", "*"
    rate: float = 1.0  # probability per matching call
    count: int | None = None  # fires at most this many times (None: until cleared)
    latency_ms: int = 0
    message: str | None = None
    id: int = 0
    fired: int = 0

    def matches(self, service: str, operation: str) -> bool:
        return self.service in ("*", service) and self.operation in ("*", operation)


class Faults:
    """Fault rules added through the control API or in-process; checked by every handler."""

    def __init__(self, rng: random.Random) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._rng = rng
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; expected one of {FAULT_KINDS}")
        if rule.service != "*" and rule.service not in SERVICE_FAULT_KINDS:
            raise ValueError(
                f"unknown fault service {rule.service!r}; expected '*' or one of {sorted(SERVICE_FAULT_KINDS)}"
            )
        if rule.service != "*" and rule.kind not in SERVICE_FAULT_KINDS[rule.service]:
            raise ValueError(
                f"{rule.service} cannot produce fault kind {rule.kind!r}; "
                f"its kinds are {SERVICE_FAULT_KINDS[rule.service]}"
            )
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, service: str, operation: str, kinds: tuple[str, ...]) -> FaultRule | None:
        """The first matching rule of one of ``kinds`` that fires now (consumes one of its count)."""
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or not rule.matches(service, operation):
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                if self._rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                return rule
        return None

    def latency_seconds(self, service: str, operation: str) -> float:
        rule = self.take(service, operation, ("latency",))
        return rule.latency_ms / 1000.0 if rule else 0.0


@dc.dataclass
class Call:
    seq: int
    service: str
    operation: str
    params: dict[str, Any]  # identifying parameters only (AccountId, PermissionSetArn, app, ...)
    status: int
    error: str | None
    at: float


# Parameters worth keeping in the call log (so tests can assert e.g. "no call targeted account X").
_LOGGED_PARAMS = (
    "AccountId",
    "TargetId",
    "PermissionSetArn",
    "PrincipalId",
    "PrincipalType",
    "InstanceArn",
    "Name",
    "PolicyArn",
    "ParentId",
    "app",
    "id",
    "record",
)


class CallLog:
    def __init__(self, wall_time: Callable[[], float] = time.time) -> None:
        self._wall_time = wall_time
        self._calls: list[Call] = []
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def record(
        self, service: str, operation: str, params: dict[str, Any], status: int, error: str | None
    ) -> None:
        kept = {k: params[k] for k in _LOGGED_PARAMS if isinstance(params, dict) and k in params}
        with self._lock:
            self._calls.append(
                Call(next(self._seq), service, operation, kept, status, error, self._wall_time())
            )

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def calls(self, service: str | None = None, operation: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self._calls
                if (service is None or c.service == service)
                and (operation is None or c.operation == operation)
            ]

    def counters(self) -> dict[str, dict[str, int]]:
        counts: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for c in self._calls:
                counts[(c.service, c.operation)] += 1
        out: dict[str, dict[str, int]] = {}
        for (service, op), n in sorted(counts.items()):
            out.setdefault(service, {})[op] = n
        return out


class TokenBucket:
    """Requests per second with a burst of one second's worth, like the AWS per-API-family limits.

    ``monotonic`` is read on every acquisition (the sandbox passes its clock), so a test decides when
    tokens come back instead of racing the real clock.
    """

    def __init__(self, rate: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self._monotonic = monotonic
        self.updated = monotonic()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        if self.rate <= 0:
            return True  # unlimited
        with self._lock:
            now = self._monotonic()
            self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


@dc.dataclass
class SandboxConfig:
    """Knobs of the emulation. Defaults are the real services' documented values."""

    # requests/s per API family (0 = unlimited). Keys: service names; sso-admin may also be split
    # by family in the handler (e.g. "sso-admin:assignment").
    rate_limits: dict[str, float] = dc.field(
        default_factory=lambda: {
            "sso-admin": 20.0,
            "identitystore": 20.0,
            "organizations": 10.0,
            "iam": 20.0,
            "accessanalyzer": 10.0,
        }
    )
    async_latency_seconds: float = 0.5  # IN_PROGRESS -> terminal
    max_outstanding_assignment_ops: int = 10
    max_concurrent_provisioning: int = 3
    region: str = "us-east-1"
    seed: int = 42  # randomness (fault rates) is reproducible
    # Organizations List* calls "can occasionally return an empty set of results even when there are more
    # results available" (AWS docs): probability that a page comes back empty while NextToken is still set.
    organizations_empty_page_rate: float = 0.1
    # Access Analyzer ValidatePolicy with a policyDocument that is not JSON: False answers ValidationException
    # (the ValidatePolicy API reference), True answers a JSON_SYNTAX_ERROR finding (the policy check reference lists one).
    access_analyzer_syntax_error_as_finding: bool = False


class Sandbox:
    """The whole emulated world plus its machinery. Handlers take ``sandbox.lock`` while they touch ``world``."""

    def __init__(self, config: SandboxConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SandboxConfig()
        #: every time the emulation reads (replace it with a :class:`ManualClock` in tests); read through
        #: the attribute on each use, so swapping it affects buckets and logs already created
        self.clock: Clock = clock or SystemClock()
        self.lock = threading.RLock()
        self.rng = random.Random(self.config.seed)
        self.world = World()
        self.faults = Faults(self.rng)
        self.calls = CallLog(lambda: self.clock.time())
        self._buckets: dict[str, TokenBucket] = {}
        self._ids = itertools.count(1)

    # ---------------------------------------------------------------- lifecycle
    def reset(self) -> None:
        """Empty world, no faults, no calls."""
        with self.lock:
            self.world = World()
            self.faults.clear()
            self.calls.clear()
            self._buckets.clear()

    # ---------------------------------------------------------------- helpers for handlers
    def allow(self, family: str) -> bool:
        """Token bucket check for an API family; False means the caller must return a throttling error."""
        rate = self.config.rate_limits.get(family, self.config.rate_limits.get(family.split(":")[0], 0.0))
        bucket = self._buckets.get(family)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[family] = TokenBucket(rate, lambda: self.clock.monotonic())
        return bucket.try_acquire()

    def random_hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def next_id(self) -> int:
        return next(self._ids)

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def now(self) -> dt.datetime:
        """The sandbox's wall time as an aware UTC datetime (record and job timestamps)."""
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)


def aws_fault_guard(
    sandbox: Sandbox,
    service: str,
    operation: str,
    errors: dict[str, tuple[str, int, str]],
    family: str | None = None,
    extras: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Injected faults and the token bucket for AWS handlers that the JSON dispatcher does not front
    (IAM query, Access Analyzer REST-JSON). ``errors`` maps fault kind -> (code, status, message) and must
    have "throttle"; ``extras`` adds modeled error fields per kind (e.g. RetryAfterSeconds)."""
    extras = extras or {}
    if sandbox.faults.take(service, operation, ("outage",)):
        code, status, message = errors.get(
            "outage", ("ServiceUnavailableException", 503, "Service is unavailable (injected outage).")
        )
        raise ServiceError(code, message, status, **extras.get("outage", {}))
    for kind in ("throttle", "conflict", "error5xx", "access_denied"):
        if kind not in errors:
            continue
        rule = sandbox.faults.take(service, operation, (kind,))
        if rule:
            code, status, message = errors[kind]
            raise ServiceError(code, rule.message or message, status, **extras.get(kind, {}))
    if not sandbox.allow(family or service):
        code, status, message = errors["throttle"]
        raise ServiceError(code, message, status, **extras.get("throttle", {}))
