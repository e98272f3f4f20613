"""Microsoft Graph as the pipeline sees it: the Entra token endpoint and provisioning (synchronization) jobs.

HTTP (``routes()``):
- ``POST /{tenant}/oauth2/v2.0/token``: client-credentials grant (form ``client_id``, ``client_secret``,
  ``scope=https://graph.microsoft.com/.default``, ``grant_type=client_credentials``), with the identity
  platform's error shapes (``invalid_client`` AADSTS7000215, ``unauthorized_client`` AADSTS700016,
  ``invalid_request`` AADSTS90002 for an unknown tenant, ``invalid_scope``, ``unsupported_grant_type``).
- ``GET /v1.0/servicePrincipals/{id}/synchronization/jobs`` and ``.../jobs/{jobId}``: the
  ``synchronizationJob`` resource (schedule, status with quarantine and task executions, settings).
  Bearer tokens are checked (missing / unknown / expired -> 401 ``InvalidAuthenticationToken``).

Faults (``sandbox.faults``, service ``"graph"``), operations ``token``, ``listJobs``, ``getJob``:
``throttle`` -> 429 + ``Retry-After``, ``error5xx`` -> 503, ``access_denied`` -> 403
``Authorization_RequestDenied``, ``outage`` -> bare 503, ``latency``.

In-process (tests and the control API): :func:`run_scim_cycle` simulates one Entra provisioning cycle
into the identity store, :func:`set_job` changes the job (pause, quarantine, make it stale),
:func:`job_json` renders a job as Graph returns it.
"""

from __future__ import annotations

import asyncio
import dataclasses as dc
import datetime as dt
import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from idc_sandbox.core import Sandbox
from idc_sandbox.state import EntraUser, Group, SyncJob, User

SERVICE = "graph"
TOKEN_LIFETIME_SECONDS = 3599  # what the identity platform hands out for app-only tokens (about 1 h)
GRAPH_SCOPES = ("https://graph.microsoft.com/.default", "00000003-0000-0000-c000-000000000000/.default")
QUARANTINE_AFTER_FAILURES = 3  # successive complete failures before the service quarantines the job
INVALID_CREDENTIALS = "SystemForCrossDomainIdentityManagementInvalidCredentials"
TROUBLESHOOTING_URL = (
    "https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-quarantine-status"
)
RETRY_AFTER_SECONDS = 1  # the Retry-After the sandbox asks for (real Graph: a few seconds)

_ERROR_MESSAGES = {
    INVALID_CREDENTIALS: (
        "Failed to authenticate to the SCIM endpoint of AWS IAM Identity Center: the secret token was "
        "rejected (invalid or expired). Generate a new SCIM access token in IAM Identity Center and save it "
        "in the enterprise application's provisioning settings."
    ),
}


# --------------------------------------------------------------------------- JSON helpers
def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    """Datetimes -> Graph's ISO-8601 UTC strings, recursively (execution/quarantine dicts may hold either)."""
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _job_extra(job: SyncJob) -> dict[str, Any]:
    # Graph fields the shared world model has no attribute for (kept on the instance, not in state.py).
    extra: dict[str, Any] = job.__dict__.get("_graph_extra") or {}
    return extra


def job_json(job: SyncJob) -> dict[str, Any]:
    """A ``synchronizationJob`` as ``GET .../synchronization/jobs/{id}`` returns it."""
    extra = _job_extra(job)
    quarantined = job.quarantine is not None or job.status_code == "Quarantine"
    status = {
        "code": job.status_code,
        "countSuccessiveCompleteFailures": job.successive_failures,
        "escrowsPruned": False,
        "lastExecution": job.last_execution,
        "lastSuccessfulExecution": job.last_successful_execution,
        "lastSuccessfulExecutionWithExports": extra.get("lastSuccessfulExecutionWithExports"),
        "progress": [],
        "quarantine": job.quarantine,
        "steadyStateFirstAchievedTime": extra.get("steadyStateFirstAchievedTime") or _NEVER,
        "steadyStateLastAchievedTime": job.steady_state_last_achieved or _NEVER,
        "synchronizedEntryCountByType": extra.get("synchronizedEntryCountByType", []),
        "troubleshootingUrl": TROUBLESHOOTING_URL if quarantined else None,
    }
    return _jsonable(
        {
            "id": job.id,
            "templateId": job.template_id,
            "schedule": {"expiration": None, "interval": job.interval, "state": job.schedule_state},
            "status": status,
            "synchronizationJobSettings": [
                {"name": "AzureIngestionAttributeOptimization", "value": "False"},
                {"name": "LookaheadQueryEnabled", "value": "False"},
                {"name": "QuarantineTooManyDeletesThreshold", "value": "500"},
            ],
        }
    )


# Graph reports "never" as DateTimeOffset.MinValue.
_NEVER = "0001-01-01T00:00:00Z"


def _graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    return JSONResponse(body, status_code=status, headers={"request-id": request_id, **(headers or {})})


def _aad_error(status: int, error: str, aadsts: int, description: str) -> Response:
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{aadsts}: {description}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {corr}\r\nTimestamp: {now}",
        "error_codes": [aadsts],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    return JSONResponse(body, status_code=status)


# --------------------------------------------------------------------------- token endpoint
async def token(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    tenant = request.path_params["tenant"]
    raw = (await request.body()).decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    logged = {"id": form.get("client_id", "")}  # the client id is not a secret; the secret is never logged
    delay = sandbox.faults.latency_seconds(SERVICE, "token")
    if delay:
        await asyncio.sleep(delay)
    resp = _token(sandbox, tenant, form)
    sandbox.calls.record(
        SERVICE, "token", logged, resp.status_code, None if resp.status_code == 200 else "error"
    )
    return resp


def _token(sandbox: Sandbox, tenant: str, form: dict[str, str]) -> Response:
    if sandbox.faults.take(SERVICE, "token", ("outage",)):
        return PlainTextResponse("Service Unavailable", status_code=503)
    if sandbox.faults.take(SERVICE, "token", ("throttle",)):
        resp = _aad_error(429, "temporarily_unavailable", 90055, "There are too many incoming requests.")
        resp.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return resp
    if sandbox.faults.take(SERVICE, "token", ("error5xx",)):
        return _aad_error(
            503, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."
        )
    with sandbox.lock:
        entra = sandbox.world.entra
        if tenant != entra.tenant_id:
            return _aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud.",
            )
        grant_type = form.get("grant_type")
        if not grant_type:
            return _aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant_type != "client_credentials":
            return _aad_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        if not client_id:
            return _aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if client_id not in entra.clients:
            return _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
                "happen if the application has not been installed by the administrator of the tenant.",
            )
        if form.get("client_secret", "") != entra.clients[client_id]:
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scope = form.get("scope", "")
        if scope not in GRAPH_SCOPES:
            return _aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )
        access_token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.sandbox." + sandbox.random_hex(48)
        now = sandbox.clock.time()
        entra.tokens = {t: exp for t, exp in entra.tokens.items() if exp > now}  # drop expired ones
        entra.tokens[access_token] = now + TOKEN_LIFETIME_SECONDS
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": access_token,
        }
    )


def expire_tokens(sandbox: Sandbox) -> None:
    """Make every issued access token expired (tests of token refresh)."""
    with sandbox.lock:
        for tok in sandbox.world.entra.tokens:
            sandbox.world.entra.tokens[tok] = 0.0


# --------------------------------------------------------------------------- synchronization jobs
def _check_auth(sandbox: Sandbox, request: Request) -> Response | None:
    header = request.headers.get("authorization", "")
    scheme, _, tok = header.partition(" ")
    if not header or scheme.lower() != "bearer" or not tok.strip():
        return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    with sandbox.lock:
        expiry = sandbox.world.entra.tokens.get(tok.strip())
    if expiry is None:
        message = (
            "IDX14100: JWT is not well formed, there are no dots (.)."
            if "." not in tok
            else "Access token validation failure. Invalid signature."
        )
        return _graph_error(401, "InvalidAuthenticationToken", message)
    if expiry <= sandbox.clock.time():
        return _graph_error(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        )
    return None


async def _jobs_endpoint(request: Request, operation: str) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    sp_id = request.path_params["sp_id"]
    job_id = request.path_params.get("job_id")
    delay = sandbox.faults.latency_seconds(SERVICE, operation)
    if delay:
        await asyncio.sleep(delay)
    resp = _jobs(sandbox, request, operation, sp_id, job_id)
    error = None
    if resp.status_code >= 400:
        error = getattr(resp, "_graph_code", None) or str(resp.status_code)
    params = {"id": job_id or sp_id}
    sandbox.calls.record(SERVICE, operation, params, resp.status_code, error)
    return resp


def _tag(resp: Response, code: str) -> Response:
    resp._graph_code = code  # type: ignore[attr-defined]  # for the call log
    return resp


def _jobs(sandbox: Sandbox, request: Request, operation: str, sp_id: str, job_id: str | None) -> Response:
    if sandbox.faults.take(SERVICE, operation, ("outage",)):
        return _tag(PlainTextResponse("Service Unavailable", status_code=503), "outage")
    auth_error = _check_auth(sandbox, request)
    if auth_error is not None:
        return _tag(auth_error, "InvalidAuthenticationToken")
    rule = sandbox.faults.take(SERVICE, operation, ("throttle",))
    if rule:
        return _tag(
            _graph_error(
                429,
                "TooManyRequests",
                rule.message
                or "Too many requests. Please retry after the interval in the Retry-After header.",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            ),
            "TooManyRequests",
        )
    rule = sandbox.faults.take(SERVICE, operation, ("error5xx",))
    if rule:
        return _tag(
            _graph_error(
                503,
                "serviceNotAvailable",
                rule.message or "The service is temporarily unavailable. Please retry later.",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            ),
            "serviceNotAvailable",
        )
    rule = sandbox.faults.take(SERVICE, operation, ("access_denied",))
    if rule:
        return _tag(
            _graph_error(
                403,
                "Authorization_RequestDenied",
                rule.message or "Insufficient privileges to complete the operation.",
            ),
            "Authorization_RequestDenied",
        )
    with sandbox.lock:
        entra = sandbox.world.entra
        if sp_id != entra.service_principal_id:
            return _tag(
                _graph_error(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{sp_id}' does not exist or one of its queried reference-property objects are "
                    "not present.",
                ),
                "Request_ResourceNotFound",
            )
        base = str(request.base_url).rstrip("/")
        context = f"{base}/v1.0/$metadata#servicePrincipals('{sp_id}')/synchronization/jobs"
        if job_id is None:
            return JSONResponse({"@odata.context": context, "value": [job_json(j) for j in entra.jobs]})
        for job in entra.jobs:
            if job.id == job_id:
                return JSONResponse({"@odata.context": f"{context}/$entity", **job_json(job)})
    return _tag(
        _graph_error(404, "Request_ResourceNotFound", f"Resource '{job_id}' does not exist."),
        "Request_ResourceNotFound",
    )


async def list_jobs(request: Request) -> Response:
    return await _jobs_endpoint(request, "listJobs")


async def get_job(request: Request) -> Response:
    return await _jobs_endpoint(request, "getJob")


def routes() -> list[BaseRoute]:
    return [
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/v1.0/servicePrincipals/{sp_id}/synchronization/jobs", list_jobs, methods=["GET"]),
        Route("/v1.0/servicePrincipals/{sp_id}/synchronization/jobs/{job_id}", get_job, methods=["GET"]),
    ]


# --------------------------------------------------------------------------- the SCIM cycle
_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")


def _interval(job: SyncJob) -> dt.timedelta:
    m = _DURATION.match(job.interval or "")
    if not m:
        return dt.timedelta(minutes=40)
    parts = {k: int(v or 0) for k, v in m.groupdict().items()}
    delta = dt.timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    return delta or dt.timedelta(minutes=40)


def _extra(job: SyncJob) -> dict[str, Any]:
    extra: dict[str, Any] = job.__dict__.setdefault("_graph_extra", {})
    return extra


def _execution(
    began: dt.datetime, ended: dt.datetime, state: str, error: dict[str, Any] | None = None, **counts: int
) -> dict[str, Any]:
    names = (
        "countEntitled",
        "countEntitledForProvisioning",
        "countEscrowed",
        "countEscrowedRaw",
        "countExported",
        "countExports",
        "countImported",
        "countImportedDeltas",
        "countImportedReferenceDeltas",
    )
    return {
        "activityIdentifier": str(uuid.uuid4()),
        **{n: counts.get(n, 0) for n in names},
        "error": error,
        "state": state,
        "timeBegan": began,
        "timeEnded": ended,
    }


def _runs(job: SyncJob) -> bool:
    """Whether the provisioning service runs this job at all (paused/disabled/unconfigured jobs do not)."""
    return job.schedule_state == "Active" and job.status_code in ("Active", "NotRun", "Quarantine")


def _new_user_id(sandbox: Sandbox) -> str:
    # Identity store ids look like "<10 hex>-<uuid>" (the prefix is the identity store's own).
    return f"{sandbox.random_hex(10)}-{uuid.UUID(int=sandbox.rng.getrandbits(128))}"


def _in_scope_users(sandbox: Sandbox) -> dict[str, EntraUser]:
    """Users assigned to the app directly, or through an assigned group (Entra's "assigned users and groups")."""
    entra = sandbox.world.entra
    scoped = {uid: u for uid, u in entra.users.items() if u.assigned_to_app}
    for group in entra.groups.values():
        if group.assigned_to_app:
            for uid in group.members:
                if uid in entra.users:
                    scoped[uid] = entra.users[uid]
    return scoped


def _provision(sandbox: Sandbox) -> dict[str, list[str]]:
    """Make the identity store's SCIM-provisioned principals equal to Entra's in-scope ones."""
    world = sandbox.world
    store = world.identity_store
    changes: dict[str, list[str]] = {
        k: []
        for k in (
            "users_created",
            "users_updated",
            "users_deleted",
            "groups_created",
            "groups_updated",
            "groups_deleted",
        )
    }
    scoped = _in_scope_users(sandbox)
    by_external = {u.external_id: u for u in store.users.values() if u.external_id}
    by_name = {u.user_name.lower(): u for u in store.users.values()}
    entra_to_idc: dict[str, str] = {}
    for eid, eu in sorted(scoped.items()):
        user = by_external.get(eid)
        if user is None:
            # SCIM matches on userName first: an existing unlinked user of that name is adopted.
            candidate = by_name.get(eu.user_principal_name.lower())
            if candidate is not None and not candidate.external_id:
                user = candidate
        wanted = {
            "user_name": eu.user_principal_name,
            "display_name": eu.display_name,
            "email": eu.mail or eu.user_principal_name,
            "given_name": eu.given_name,
            "family_name": eu.surname,
            "external_id": eid,
        }
        if user is None:
            user = User(user_id=_new_user_id(sandbox), **wanted)
            store.users[user.user_id] = user
            changes["users_created"].append(user.user_name)
        elif any(getattr(user, k) != v for k, v in wanted.items()):
            for k, v in wanted.items():
                setattr(user, k, v)
            changes["users_updated"].append(user.user_name)
        entra_to_idc[eid] = user.user_id
    for user in list(store.users.values()):
        if user.external_id and user.external_id not in scoped:
            del store.users[user.user_id]
            for existing in store.groups.values():
                existing.members.discard(user.user_id)
            changes["users_deleted"].append(user.user_name)

    entra_groups = {gid: g for gid, g in world.entra.groups.items() if g.assigned_to_app}
    groups_by_external = {g.external_id: g for g in store.groups.values() if g.external_id}
    groups_by_name = {g.display_name.lower(): g for g in store.groups.values()}
    for gid, eg in sorted(entra_groups.items()):
        members = {entra_to_idc[m] for m in eg.members if m in entra_to_idc}
        group: Group | None = groups_by_external.get(gid)
        if group is None:
            unlinked = groups_by_name.get(eg.display_name.lower())
            if unlinked is not None and not unlinked.external_id:
                group = unlinked
        if group is None:
            group = Group(group_id=_new_user_id(sandbox), display_name=eg.display_name, external_id=gid)
            group.members = members
            store.groups[group.group_id] = group
            changes["groups_created"].append(group.display_name)
        elif group.display_name != eg.display_name or group.members != members or group.external_id != gid:
            group.display_name, group.members, group.external_id = eg.display_name, members, gid
            changes["groups_updated"].append(group.display_name)
    for group in list(store.groups.values()):
        if group.external_id and group.external_id not in entra_groups:
            del store.groups[group.group_id]
            changes["groups_deleted"].append(group.display_name)
    return changes


def _fail(job: SyncJob, now: dt.datetime) -> dict[str, Any]:
    code = job.fail_error_code
    error = {
        "code": code,
        "message": _ERROR_MESSAGES.get(code, f"The provisioning cycle failed ({code})."),
        "tenantActionable": True,
    }
    job.last_execution = _execution(now, now, "Failed", error)
    job.successive_failures += 1
    if job.fail_next_cycles > 0:
        job.fail_next_cycles -= 1
    if (
        job.quarantine is not None
        or code == INVALID_CREDENTIALS
        or job.successive_failures >= QUARANTINE_AFTER_FAILURES
    ):
        previous = job.quarantine or {}
        series = int(previous.get("seriesCount", 0)) + 1
        # The service retries a quarantined job less and less often, up to once a day.
        backoff = min(_interval(job) * (2 ** (series - 1)), dt.timedelta(days=1))
        job.quarantine = {
            "currentBegan": now,
            "nextAttempt": now + backoff,
            "reason": previous.get("reason", "EncounteredQuarantineException"),
            "seriesBegan": previous.get("seriesBegan", now),
            "seriesCount": series,
            "error": error,
        }
        job.status_code = "Quarantine"
    return {"id": job.id, "state": "Failed", "error": code, "status": job.status_code}


def run_scim_cycle(sandbox: Sandbox) -> dict[str, Any]:
    """One Entra provisioning cycle: every runnable job runs; if one succeeds, in-scope users and groups are
    created/updated in the identity store (``external_id`` = Entra object id) and out-of-scope ones removed.

    A job with ``fail_next_cycles > 0`` or an active quarantine fails instead (nothing is provisioned by it):
    ``countSuccessiveCompleteFailures`` grows, ``lastExecution`` is Failed with ``fail_error_code``, and the
    job is quarantined at once for invalid SCIM credentials or after ``QUARANTINE_AFTER_FAILURES`` failures.
    Lifting a quarantine is an admin action: ``set_job(sandbox, quarantine=None, status_code="Active")``.
    """
    with sandbox.lock:
        now = sandbox.now()
        results: list[dict[str, Any]] = []
        succeeded: list[SyncJob] = []
        for job in sandbox.world.entra.jobs:
            if not _runs(job):
                results.append({"id": job.id, "state": "Skipped", "status": job.status_code})
                continue
            if job.fail_next_cycles > 0 or job.quarantine is not None:
                results.append(_fail(job, now))
                continue
            succeeded.append(job)
        changes: dict[str, list[str]] = {}
        if succeeded:
            changes = _provision(sandbox)
            exported = sum(len(v) for v in changes.values())
            scoped = len(_in_scope_users(sandbox)) + sum(
                1 for g in sandbox.world.entra.groups.values() if g.assigned_to_app
            )
            ended = sandbox.now()
            for job in succeeded:
                execution = _execution(
                    now,
                    ended,
                    "Succeeded",
                    countEntitled=scoped,
                    countEntitledForProvisioning=scoped,
                    countExported=exported,
                    countExports=exported,
                    countImported=len(sandbox.world.entra.users) + len(sandbox.world.entra.groups),
                )
                job.last_execution = execution
                job.last_successful_execution = execution
                job.successive_failures = 0
                job.status_code = "Active"
                job.steady_state_last_achieved = ended
                extra = _extra(job)
                extra.setdefault("steadyStateFirstAchievedTime", ended)
                if exported:
                    extra["lastSuccessfulExecutionWithExports"] = execution
                extra["synchronizedEntryCountByType"] = [
                    {"key": "user to User", "value": len(_in_scope_users(sandbox))},
                    {
                        "key": "group to Group",
                        "value": sum(1 for g in sandbox.world.entra.groups.values() if g.assigned_to_app),
                    },
                ]
                results.append({"id": job.id, "state": "Succeeded", "status": job.status_code})
        return {"ran_at": _iso(now), "jobs": results, "provisioned": bool(succeeded), **changes}


# --------------------------------------------------------------------------- setters
def set_job(
    sandbox: Sandbox,
    job_id: str | None = None,
    *,
    last_success_minutes_ago: float | None = None,
    quarantine_reason: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Change a job (the first one, or ``job_id``; a default job is created when there is none).

    ``fields`` are :class:`SyncJob` attributes (``status_code="Paused"``, ``schedule_state``,
    ``fail_next_cycles``, ``fail_error_code``, ``quarantine=None``, ``interval``...). Conveniences:
    ``last_success_minutes_ago=N`` records a successful cycle that ended N minutes ago (as last execution
    too); ``quarantine_reason="EncounteredQuarantineException"`` puts the job in quarantine now with
    ``fail_error_code`` as the error. Returns the job's Graph JSON.
    """
    known = {f.name for f in dc.fields(SyncJob)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"unknown SyncJob fields {sorted(unknown)}; expected some of {sorted(known)}")
    with sandbox.lock:
        jobs = sandbox.world.entra.jobs
        job = next((j for j in jobs if job_id is None or j.id == job_id), None)
        if job is None:
            job = SyncJob(id=job_id) if job_id else SyncJob()
            jobs.append(job)
        for name, value in fields.items():
            setattr(job, name, value)
        now = sandbox.now()
        if last_success_minutes_ago is not None:
            ended = now - dt.timedelta(minutes=last_success_minutes_ago)
            execution = _execution(ended - dt.timedelta(seconds=20), ended, "Succeeded")
            job.last_successful_execution = execution
            job.last_execution = execution
            job.steady_state_last_achieved = ended
            _extra(job).setdefault("steadyStateFirstAchievedTime", ended)
        if quarantine_reason is not None:
            code = job.fail_error_code
            error = {
                "code": code,
                "message": _ERROR_MESSAGES.get(code, f"The provisioning cycle failed ({code})."),
                "tenantActionable": True,
            }
            job.quarantine = {
                "currentBegan": now,
                "nextAttempt": now + _interval(job),
                "reason": quarantine_reason,
                "seriesBegan": now,
                "seriesCount": 1,
                "error": error,
            }
            job.status_code = "Quarantine"
            job.successive_failures = max(job.successive_failures, 1)
            job.last_execution = _execution(now, now, "Failed", error)
        return job_json(job)
