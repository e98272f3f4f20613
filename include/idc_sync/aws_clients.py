"""The bundle of boto3 clients the domain uses, built once per task from a boto3 Session.

Why a bundle: snapshot, validation and apply all talk to the same five services with the same endpoint
(the sandbox in tests and the demo, the real services in production), retry policy and pacing. Building
them in one place keeps those choices consistent and lets the Airflow hook be a two-liner.

Retries: botocore retries ``ThrottlingException`` (and 5xx) itself with exponential backoff; it does NOT
retry ``ConflictException`` (apply handles that). botocore's "standard" mode also keeps a per-client
retry quota (500 units, 5 per throttling retry) that a burst of throttling can drain, after which calls
fail fast. IdC allows only ~20 requests/s per API family, so besides retries each client is paced on the
client side (``max_rps``): a small token bucket hooked on ``before-send`` so we rarely get throttled at all
(every attempt, retries included, takes a token).
"""

from __future__ import annotations

import dataclasses as dc
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from idc_sync.aws_responses import check_answers

DEFAULT_RETRIES: dict[str, Any] = {"mode": "standard", "max_attempts": 8}

# Client-side pacing in requests/s per client (a little under the documented per-family quotas, which
# are shared with other callers of the account). None/0 disables pacing for that client.
DEFAULT_MAX_RPS: dict[str, float] = {
    "sso_admin": 18.0,
    "identitystore": 18.0,
    "organizations": 9.0,
    "iam": 15.0,
    "accessanalyzer": 9.0,
}

_SERVICE_NAMES = {
    "sso_admin": "sso-admin",
    "identitystore": "identitystore",
    "organizations": "organizations",
    "iam": "iam",
    "accessanalyzer": "accessanalyzer",
}


class RateLimiter:
    """Thread-safe token bucket (burst = one second's worth); ``acquire`` sleeps until a token is free.

    ``monotonic``/``sleep`` are injectable so a test checks the pacing by counting, not by timing.
    """

    def __init__(
        self,
        rate: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = float(rate)
        self.capacity = max(self.rate, 1.0)
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
            self._sleep(wait)

    def __call__(self, **_: Any) -> None:  # botocore event handler signature
        self.acquire()


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ("ConflictException"...); "" for anything else."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    """The AWS error message of a ``ClientError`` (its text when it has none); ``str(exc)`` otherwise."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def error_text(exc: BaseException) -> str:
    """``"Code: Message"`` for a ``ClientError``, ``"Type: text"`` for anything else: one line for a log,
    a Slack line or a record comment."""
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {error_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


def snake_case(operation: str) -> str:
    """The boto3 method of an API operation: ``"DescribePermissionSet"`` -> ``"describe_permission_set"``."""
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _pace(client: Any, rate: float | None) -> None:
    if rate and rate > 0:
        # ``before-send`` fires for every HTTP attempt; returning None lets the request go out.
        client.meta.events.register("before-send", RateLimiter(rate))


@dc.dataclass
class IdcClients:
    """boto3 clients for sso-admin, identitystore, organizations, iam and accessanalyzer (thread-safe)."""

    sso_admin: Any
    identitystore: Any
    organizations: Any
    iam: Any
    accessanalyzer: Any

    @classmethod
    def from_session(
        cls,
        session: boto3.Session,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        retry_config: dict[str, Any] | None = None,
        retries: dict[str, Any] | None = None,
        max_rps: dict[str, float | None] | None = None,
        max_pool_connections: int = 20,
    ) -> IdcClients:
        """Build the five clients.

        ``endpoint_url`` points every client at one endpoint (the sandbox); None uses AWS's endpoints.
        ``retry_config`` (alias ``retries``) is botocore's ``retries`` dict, default standard mode with 8
        attempts; ``{"mode": "adaptive", ...}`` adds botocore's own client-side rate adaptation.
        ``max_rps`` overrides the client-side pacing per client attribute name (``{"sso_admin": 10}``).
        """
        given = dict(retry_config or retries or {})
        if "max_attempts" in given or "total_max_attempts" in given:
            retry = {"mode": DEFAULT_RETRIES["mode"], **given}  # the caller's attempt count wins as a whole
        else:
            retry = {**DEFAULT_RETRIES, **given}
        region = region_name or session.region_name or "us-east-1"
        config = Config(retries=retry, max_pool_connections=max_pool_connections)
        rates: dict[str, float | None] = {**DEFAULT_MAX_RPS, **(max_rps or {})}
        built: dict[str, Any] = {}
        for attr, service in _SERVICE_NAMES.items():
            kwargs: dict[str, Any] = {"region_name": region, "config": config}
            if endpoint_url:
                kwargs["endpoint_url"] = endpoint_url
            client = session.client(service, **kwargs)
            _pace(client, rates.get(attr))
            check_answers(client)
            built[attr] = client
        return cls(**built)
