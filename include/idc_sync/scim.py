"""Is Entra's SCIM provisioning into IAM Identity Center healthy? And: is a missing principal pending or an error?

Why this exists: users and groups reach Identity Center only through the Entra provisioning job (every
~40 min). A record naming a new hire is often read before the hire is provisioned; that is *pending*, not
an error. But when provisioning is broken (quarantine after the IdC SCIM token expired, repeated
failures, a paused job), nobody is being provisioned, requesters must not be told "user not found", and
admins must hear it. So the DAG reads the job through Microsoft Graph and turns it into a verdict.

- :class:`GraphClient`: app-only token (client credentials), cached until shortly before expiry; 429/5xx
  and connection errors retried (``Retry-After`` respected, bounded); other errors raise :class:`GraphError`.
  The client secret never appears in messages, reprs or logs.
- :func:`evaluate_jobs` -> :class:`ScimVerdict` (healthy / unhealthy / unknown + a precise reason).
- :func:`check_scim_health`: Graph call + evaluation; Graph failures become an unhealthy verdict.
- :func:`principal_pending_or_error`: safety rule 4 of DESIGN.md; :func:`escalate_missing_principals`
  applies it to the plan's ``principal_not_found`` problems (an error then says what to check).
- :func:`scim_transition` / :func:`scim_state_after` / :func:`scim_alert_text`: admins hear once when SCIM
  turns unhealthy and once when it recovers, not every run (the last status is kept across runs).

Plain Python (no Airflow import): the sensor, the trigger and the tests all use it directly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Literal

import requests
from pydantic import BaseModel, Field

from idc_sync.model import Problem

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_INTERVAL_MINUTES = 40  # Entra's provisioning cycle for the AWS IAM Identity Center app
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Statuses that will not get better by polling again within the same run (configuration problems).
PERMANENT_STATUS = frozenset({400, 401, 403, 404})

VerdictStatus = Literal["healthy", "unhealthy", "unknown"]


# --------------------------------------------------------------------------- client
class GraphError(Exception):
    """A failed Graph / token call, in Graph's own terms (``code`` like ``InvalidAuthenticationToken``,
    ``invalid_client``, ``TooManyRequests``). ``status`` is the HTTP status (None: no response at all)."""

    def __init__(self, code: str, message: str, status: int | None = None, *, request_id: str | None = None):
        super().__init__(f"{code} ({status}): {message}" if status else f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUS


class GraphSettings(BaseModel):
    """What a Graph connection holds. ``client_secret`` is excluded from dumps and reprs."""

    tenant_id: str
    client_id: str
    client_secret: str = Field(repr=False, exclude=True)
    service_principal_id: str
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_base_url: str = DEFAULT_GRAPH_BASE_URL

    @classmethod
    def from_connection_parts(
        cls, login: str | None, password: str | None, extra: dict[str, Any] | None
    ) -> GraphSettings:
        """login = client id, password = client secret, extra = tenant_id, service_principal_id,
        authority_host, graph_base_url. Raises ValueError naming what is missing (never the secret)."""
        extra = extra or {}
        missing = [
            name
            for name, value in (
                ("login (client id)", login),
                ("password (client secret)", password),
                ("extra.tenant_id", extra.get("tenant_id")),
                ("extra.service_principal_id", extra.get("service_principal_id")),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"Graph connection is missing {', '.join(missing)}")
        return cls(
            tenant_id=str(extra["tenant_id"]),
            client_id=str(login),
            client_secret=str(password),
            service_principal_id=str(extra["service_principal_id"]),
            authority_host=str(extra.get("authority_host") or DEFAULT_AUTHORITY_HOST),
            graph_base_url=str(extra.get("graph_base_url") or DEFAULT_GRAPH_BASE_URL),
        )

    def client(self, **kwargs: Any) -> GraphClient:
        return GraphClient(
            self.authority_host,
            self.graph_base_url,
            self.tenant_id,
            self.client_id,
            self.client_secret,
            **kwargs,
        )


class GraphClient:
    """Minimal Microsoft Graph client for the provisioning jobs of one tenant (app-only token)."""

    def __init__(
        self,
        token_url_base: str,
        graph_base: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        session: requests.Session | None = None,
        max_attempts: int = 4,
        max_retry_after: float = 30.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.token_url = f"{token_url_base.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        base = graph_base.rstrip("/")
        # Accept "https://graph.microsoft.com" as well as ".../v1.0" (or ".../beta").
        self.graph_base = base if re.search(r"/(v1\.0|beta)$", base) else f"{base}/v1.0"
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._secret = client_secret
        self.session = session or requests.Session()
        self.max_attempts = max(1, max_attempts)
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self._sleep = sleep
        self._token: str | None = None
        self._token_expires_at = 0.0  # monotonic

    def __repr__(self) -> str:
        return f"GraphClient(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, graph={self.graph_base!r})"

    # ------------------------------------------------------------ helpers
    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _backoff(self, attempt: int, response: requests.Response | None) -> float:
        header = response.headers.get("Retry-After") if response is not None else None
        delay = 2.0 ** (attempt - 1)
        if header:
            with contextlib.suppress(ValueError):  # an HTTP-date: keep the exponential backoff
                delay = float(header)
        return max(0.0, min(delay, self.max_retry_after))

    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """One logical request with bounded retries of throttling, 5xx and connection errors."""
        response: requests.Response | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                error = GraphError("ConnectionError", self._scrub(f"{what}: {type(exc).__name__}: {exc}"))
                if attempt == self.max_attempts:
                    raise error from None
                log.warning(
                    "%s failed (%s); retry %d/%d", what, error.message, attempt, self.max_attempts - 1
                )
                self._sleep(self._backoff(attempt, None))
                continue
            if response.status_code not in RETRYABLE_STATUS or attempt == self.max_attempts:
                return response
            delay = self._backoff(attempt, response)
            log.warning(
                "%s answered HTTP %d; retrying in %.1f s (attempt %d of %d)",
                what,
                response.status_code,
                delay,
                attempt,
                self.max_attempts,
            )
            self._sleep(delay)
        assert response is not None
        return response

    def _error(self, response: requests.Response, what: str) -> GraphError:
        request_id = response.headers.get("request-id")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):  # Graph
            err = body["error"]
            inner = err.get("innerError") or {}
            return GraphError(
                str(err.get("code") or response.status_code),
                self._scrub(f"{what}: {err.get('message', '')}"),
                response.status_code,
                request_id=inner.get("request-id") or request_id,
            )
        if isinstance(body, dict) and isinstance(body.get("error"), str):  # identity platform (token)
            description = str(body.get("error_description", "")).split("\r\n")[0].split("\n")[0]
            return GraphError(
                body["error"],
                self._scrub(f"{what}: {description}"),
                response.status_code,
                request_id=body.get("correlation_id"),
            )
        text = (response.text or "").strip()[:200]
        return GraphError(f"HTTP{response.status_code}", self._scrub(f"{what}: {text}"), response.status_code)

    # ------------------------------------------------------------ token
    def token(self) -> str:
        """An app-only access token, reused until a minute (or a tenth of its life) before it expires."""
        now = time.monotonic()
        if self._token and now < self._token_expires_at:
            return self._token
        data = {
            "client_id": self.client_id,
            "client_secret": self._secret,
            "scope": GRAPH_SCOPE,
            "grant_type": "client_credentials",
        }
        response = self._send("POST", self.token_url, "token request", data=data)
        if response.status_code != 200:
            raise self._error(response, "token request")
        body = _json_object(response, "token request")
        access_token = body.get("access_token")
        if not access_token:
            raise GraphError(
                "invalid_response", "token request: no access_token in the answer", response.status_code
            )
        expires_in = float(body.get("expires_in", 3599))
        self._token = str(access_token)
        self._token_expires_at = now + max(0.0, expires_in - min(60.0, expires_in / 10))
        return self._token

    def invalidate_token(self) -> None:
        self._token, self._token_expires_at = None, 0.0

    # ------------------------------------------------------------ Graph calls
    def get(self, path: str, what: str) -> dict[str, Any]:
        """GET a Graph path (``/servicePrincipals/...``) or an absolute URL (``@odata.nextLink``)."""
        url = path if path.startswith("http") else f"{self.graph_base}{path}"
        refreshed = False
        while True:
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            response = self._send("GET", url, what, headers=headers)
            if response.status_code == 401 and not refreshed:
                # A cached token revoked or expired early: one fresh token, then give up.
                self.invalidate_token()
                refreshed = True
                continue
            if response.status_code != 200:
                raise self._error(response, what)
            return _json_object(response, what)

    def list_sync_jobs(self, service_principal_id: str) -> list[dict[str, Any]]:
        """``GET /servicePrincipals/{id}/synchronization/jobs`` (all pages)."""
        path: str | None = f"/servicePrincipals/{service_principal_id}/synchronization/jobs"
        jobs: list[dict[str, Any]] = []
        while path:
            body = self.get(path, "list synchronization jobs")
            jobs.extend(v for v in body.get("value", []) if isinstance(v, dict))
            path = body.get("@odata.nextLink")
        return jobs

    def get_sync_job(self, service_principal_id: str, job_id: str) -> dict[str, Any]:
        return self.get(f"/servicePrincipals/{service_principal_id}/synchronization/jobs/{job_id}", "get job")


# --------------------------------------------------------------------------- verdict
class ScimJobSummary(BaseModel):
    """The few facts of one synchronizationJob that matter to the pipeline (small enough for XCom)."""

    id: str
    template_id: str | None = None
    status_code: str | None = None
    schedule_state: str | None = None
    interval: str | None = None
    last_successful_end: dt.datetime | None = None
    last_execution_state: str | None = None
    last_error_code: str | None = None
    successive_failures: int = 0
    quarantine_reason: str | None = None
    quarantine_error_code: str | None = None
    quarantine_since: dt.datetime | None = None
    next_attempt: dt.datetime | None = None


class ScimVerdict(BaseModel):
    """The sensor's answer, carried to later tasks as JSON (``model_dump(mode="json")``)."""

    status: VerdictStatus
    reason: str
    checked_at: dt.datetime
    jobs: list[ScimJobSummary] = Field(default_factory=list)
    interval_minutes: int | None = None  # the jobs' schedule interval, for the pending grace period
    error_code: str | None = None  # when the check itself failed: Graph/identity error code
    error_status: int | None = None  # ... and its HTTP status (None: no answer)

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"

    @property
    def permanent_failure(self) -> bool:
        """The check failed in a way polling again will not fix (credentials, permission, wrong id)."""
        return self.error_status in PERMANENT_STATUS

    @classmethod
    def unknown(cls, reason: str, now: dt.datetime | None = None) -> ScimVerdict:
        """No check was made (e.g. ``skip_scim_check``): missing principals stay pending."""
        return cls(status="unknown", reason=reason, checked_at=now or dt.datetime.now(dt.UTC))

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$", re.ASCII
)


def parse_duration(value: str | None) -> dt.timedelta | None:
    """ISO-8601 day-time durations as Graph writes schedule intervals (``PT40M``, ``PT1H``, ``P1D``)."""
    match = _DURATION.match(value or "")
    if not match or not value or value in ("P", "PT"):
        return None
    parts = match.groupdict()
    return dt.timedelta(
        days=int(parts["d"] or 0),
        hours=int(parts["h"] or 0),
        minutes=int(parts["m"] or 0),
        seconds=float(parts["s"] or 0),
    )


def _parse_time(value: Any) -> dt.datetime | None:
    """Graph timestamps; ``0001-01-01T00:00:00Z`` (DateTimeOffset.MinValue) means never."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return None if parsed.year < 1970 else parsed


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} days"


def _short(job_id: str) -> str:
    return job_id.split(".", 1)[0] if "." in job_id else job_id


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    """The answer as a JSON object, or ``invalid_response`` (truncated, HTML, a list): a clear Graph
    error, which the SCIM check turns into an unhealthy verdict, never a crash of the sensor."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphError("invalid_response", f"{what}: the answer is not a JSON object", response.status_code)
    return body


def _part(parent: Any, key: str) -> dict[str, Any]:
    """``parent[key]`` when it is an object, else ``{}`` (a mistyped answer reads as missing fields)."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def summarize_job(job: dict[str, Any]) -> ScimJobSummary:
    status = _part(job, "status")
    schedule = _part(job, "schedule")
    last = _part(status, "lastExecution")
    success = _part(status, "lastSuccessfulExecution")
    quarantine = _part(status, "quarantine")
    return ScimJobSummary(
        id=str(job.get("id", "?")),
        template_id=job.get("templateId"),
        status_code=status.get("code"),
        schedule_state=schedule.get("state"),
        interval=schedule.get("interval"),
        last_successful_end=_parse_time(success.get("timeEnded")) or _parse_time(success.get("timeBegan")),
        last_execution_state=last.get("state"),
        last_error_code=_part(last, "error").get("code"),
        successive_failures=int(status.get("countSuccessiveCompleteFailures") or 0),
        quarantine_reason=quarantine.get("reason"),
        quarantine_error_code=_part(quarantine, "error").get("code"),
        quarantine_since=_parse_time(quarantine.get("seriesBegan"))
        or _parse_time(quarantine.get("currentBegan")),
        next_attempt=_parse_time(quarantine.get("nextAttempt")),
    )


def _job_problem(s: ScimJobSummary, now: dt.datetime, max_staleness: dt.timedelta) -> str | None:
    name = f"job {_short(s.id)}"
    if s.status_code == "Quarantine" or s.quarantine_reason:
        detail = s.quarantine_reason or "reason not given"
        if s.quarantine_error_code:
            detail += f", error {s.quarantine_error_code}"
        since = f" since {s.quarantine_since:%Y-%m-%d %H:%M} UTC" if s.quarantine_since else ""
        nxt = f"; next attempt {s.next_attempt:%Y-%m-%d %H:%M} UTC" if s.next_attempt else ""
        hint = ""
        if s.quarantine_error_code == "SystemForCrossDomainIdentityManagementInvalidCredentials":
            hint = " (the IAM Identity Center SCIM access token is invalid or expired: issue a new one)"
        return f"{name} is in quarantine ({detail}){since}{nxt}{hint}"
    if s.status_code == "Paused" or s.schedule_state == "Paused":
        return f"{name} is paused: provisioning stopped until an admin starts it again"
    if s.schedule_state == "Disabled":
        return f"{name} is disabled"
    if s.status_code == "NotConfigured":
        return f"{name} is not configured (no admin credentials or never started)"
    if s.status_code == "NotRun":
        return f"{name} has not completed its first provisioning cycle yet"
    if s.status_code != "Active":
        return f"{name} has status {s.status_code!r} (expected Active)"
    failed = ""
    if s.last_execution_state == "Failed":
        failed = (
            f"; last cycle failed ({s.last_error_code or 'no error code'}, {s.successive_failures} in a row)"
        )
    if s.last_successful_end is None:
        return f"{name} has never completed a successful cycle{failed}"
    age = now - s.last_successful_end
    if age > max_staleness:
        return (
            f"{name} is stale: last successful cycle ended {s.last_successful_end:%Y-%m-%d %H:%M} UTC, "
            f"{_ago(age)} ago (limit {_ago(max_staleness)}){failed}"
        )
    return None


def evaluate_jobs(jobs: list[dict[str, Any]], now: dt.datetime, max_staleness: dt.timedelta) -> ScimVerdict:
    """Healthy when every job is Active, not quarantined and succeeded within ``max_staleness``."""
    summaries = [summarize_job(j) for j in jobs]
    intervals = [d for d in (parse_duration(s.interval) for s in summaries) if d]
    interval_minutes = int(max(intervals).total_seconds() // 60) if intervals else None
    if not summaries:
        return ScimVerdict(
            status="unhealthy",
            reason="no provisioning job on the service principal: SCIM provisioning is not set up",
            checked_at=now,
        )
    problems = [p for p in (_job_problem(s, now, max_staleness) for s in summaries) if p]
    if problems:
        return ScimVerdict(
            status="unhealthy",
            reason="; ".join(problems),
            checked_at=now,
            jobs=summaries,
            interval_minutes=interval_minutes,
        )
    newest = min(now - s.last_successful_end for s in summaries if s.last_successful_end)
    note = ""
    retrying = [s for s in summaries if s.last_execution_state == "Failed"]
    if retrying:
        note = f"; note: last cycle of {len(retrying)} job(s) failed ({retrying[0].last_error_code}), not yet stale"
    return ScimVerdict(
        status="healthy",
        reason=f"{len(summaries)} provisioning job(s) Active; last successful cycle {_ago(newest)} ago{note}",
        checked_at=now,
        jobs=summaries,
        interval_minutes=interval_minutes,
    )


def check_scim_health(
    client: GraphClient, service_principal_id: str, now: dt.datetime, max_staleness: dt.timedelta
) -> ScimVerdict:
    """Read the jobs and evaluate them. A failing Graph call (401/403/404, 429 or 5xx after retries, no
    connection) is an *unhealthy* verdict whose reason is the error; this never raises for those."""
    try:
        jobs = client.list_sync_jobs(service_principal_id)
    except GraphError as exc:
        hint = {
            401: " (check the Graph connection's client id/secret and tenant)",
            400: " (check the Graph connection's tenant id, client id and scope)",
            403: " (the app needs the Synchronization.Read.All application permission)",
            404: " (check the service principal id of the IAM Identity Center enterprise app)",
        }.get(exc.status or 0, "")
        status = f"HTTP {exc.status}" if exc.status else "no answer"
        return ScimVerdict(
            status="unhealthy",
            reason=f"could not read the provisioning jobs: Graph {status} {exc.code}: {exc.message}{hint}",
            checked_at=now,
            error_code=exc.code,
            error_status=exc.status,
        )
    return evaluate_jobs(jobs, now, max_staleness)


# --------------------------------------------------------------------------- safety rule 4
def grace_period(
    verdict: ScimVerdict | dict[str, Any] | None,
    grace_cycles: int = 2,
    default_interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
) -> dt.timedelta:
    """``grace_cycles`` x the job's schedule interval (default 2 x 40 min)."""
    minutes: Any = None
    if isinstance(verdict, ScimVerdict):
        minutes = verdict.interval_minutes
    elif isinstance(verdict, dict):
        minutes = verdict.get("interval_minutes")
    return dt.timedelta(minutes=grace_cycles * int(minutes or default_interval_minutes))


def principal_pending_or_error(
    verdict: ScimVerdict | dict[str, Any] | None,
    record_time: dt.datetime,
    now: dt.datetime,
    *,
    grace_cycles: int = 2,
    default_interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
) -> Literal["pending", "error"]:
    """Safety rule 4 for a principal named in kintone but absent from Identity Center.

    ``record_time``: the record's last update (or creation) time, when the name could first have been
    seen. Pending while SCIM is unhealthy or unknown (provisioning cannot be blamed on the requester), and
    while healthy but the record is younger than the grace period; an error only when SCIM is healthy and
    the grace period has passed.
    """
    status = verdict.status if isinstance(verdict, ScimVerdict) else (verdict or {}).get("status", "unknown")
    if status != "healthy":
        return "pending"
    if record_time.tzinfo is None:
        record_time = record_time.replace(tzinfo=dt.UTC)
    grace = grace_period(verdict, grace_cycles, default_interval_minutes)
    return "error" if now - record_time > grace else "pending"


def _status_of(verdict: ScimVerdict | dict[str, Any] | None) -> str:
    if isinstance(verdict, ScimVerdict):
        return verdict.status
    return str((verdict or {}).get("status") or "unknown")


def _reason_of(verdict: ScimVerdict | dict[str, Any] | None) -> str:
    if isinstance(verdict, ScimVerdict):
        return verdict.reason
    return str((verdict or {}).get("reason") or "")


def escalate_missing_principals(
    problems: list[Problem],
    verdict: ScimVerdict | dict[str, Any] | None,
    now: dt.datetime,
    *,
    grace_cycles: int = 2,
    default_interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
) -> list[Problem]:
    """Apply :func:`principal_pending_or_error` to the plan's ``principal_not_found`` problems.

    The plan reports every missing principal as *pending* ("not in IAM Identity Center yet"). One that is
    due (SCIM healthy, record older than the grace period) becomes an *error* whose message says what to
    check, because waiting longer will not help: the user/group is not in scope of the provisioning job, or
    the name in kintone does not match. The record's age is its last update (else its creation): editing
    the name restarts the grace period.
    """
    grace = grace_period(verdict, grace_cycles, default_interval_minutes)
    out: list[Problem] = []
    for problem in problems:
        ref = problem.record
        if problem.code == "principal_not_found" and ref is not None:
            seen = ref.updated_at or ref.created_at or now
            if (
                principal_pending_or_error(
                    verdict,
                    seen,
                    now,
                    grace_cycles=grace_cycles,
                    default_interval_minutes=default_interval_minutes,
                )
                == "error"
            ):
                problem = problem.model_copy(
                    update={
                        "severity": "error",
                        "message": missing_principal_error(
                            str(problem.params.get("principal_type") or "USER"),
                            str(problem.params.get("principal_name") or "?"),
                            grace,
                        ),
                    }
                )
        out.append(problem)
    return out


def missing_principal_error(principal_type: str, name: str, grace: dt.timedelta) -> str:
    """The record error for a principal still missing after the grace period while SCIM is healthy."""
    waited = f"Entra ID provisioning is working and this record is older than {_ago(grace)}"
    if principal_type == "GROUP":
        return (
            f"Group {name} is not in IAM Identity Center, although {waited}. Check that a group with exactly "
            "this name exists in Entra ID and is assigned to the AWS IAM Identity Center enterprise "
            "application, or correct the group name in this record."
        )
    return (
        f"User {name} is not in IAM Identity Center, although {waited}. Check that this user exists in "
        "Entra ID with exactly this user name and is assigned to the AWS IAM Identity Center enterprise "
        "application (directly or through an assigned group), or correct the user in this record."
    )


# --------------------------------------------------------------------------- admin alert, once per change
ScimTransition = Literal["turned_unhealthy", "recovered"]


def scim_transition(
    previous: str | None, verdict: ScimVerdict | dict[str, Any] | None
) -> ScimTransition | None:
    """What admins must be told, given the last *known* status (``None``: never checked) and this verdict.

    ``turned_unhealthy``: unhealthy now, not unhealthy at the last check (a first check that finds it
    broken alerts too). ``recovered``: healthy now after an unhealthy check. Otherwise ``None``: a status
    that persists is not repeated every ten minutes, and an ``unknown`` verdict (check skipped or failed to
    run) neither alerts nor counts as a change.
    """
    status = _status_of(verdict)
    if status == "unhealthy" and previous != "unhealthy":
        return "turned_unhealthy"
    if status == "healthy" and previous == "unhealthy":
        return "recovered"
    return None


def scim_state_after(
    previous: dict[str, Any], verdict: ScimVerdict | dict[str, Any] | None, now: dt.datetime
) -> dict[str, Any]:
    """The persisted SCIM state (``audit.SCIM_STATE``) after this verdict: last known status, since when,
    and the reason that was alerted. An ``unknown`` verdict keeps the previous state."""
    status = _status_of(verdict)
    if status not in ("healthy", "unhealthy"):
        return dict(previous)
    if previous.get("status") == status:
        return {**previous, "checked_at": now.isoformat()}
    return {
        "status": status,
        "since": now.isoformat(),
        "reason": _reason_of(verdict),
        "checked_at": now.isoformat(),
    }


def scim_alert_text(
    transition: ScimTransition, verdict: ScimVerdict | dict[str, Any] | None, previous: dict[str, Any]
) -> str:
    """The Slack text of a SCIM transition (starts with a stable prefix admins and tests can filter on)."""
    reason = _reason_of(verdict)
    if transition == "turned_unhealthy":
        return (
            f"{SCIM_ALERT_PREFIX} Entra SCIM provisioning to IAM Identity Center is UNHEALTHY: {reason}. "
            "New users and groups are not being provisioned; kintone records naming them stay pending "
            "(no errors are sent to requesters) until it recovers. You will get one message when it does."
        )
    since = _parse_time(previous.get("since"))
    was = f" (unhealthy since {since:%Y-%m-%d %H:%M} UTC)" if since else ""
    return f"{SCIM_ALERT_PREFIX} Entra SCIM provisioning recovered{was}: {reason}."


SCIM_ALERT_PREFIX = "[idc-sync SCIM]"
