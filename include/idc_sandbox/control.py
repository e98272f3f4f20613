"""The sandbox's control API (``/_sandbox/...``, JSON, no auth: the CLI binds to 127.0.0.1 only).

It lets scripts, the demo and tests shape the world and look at what the pipeline did, without touching
the emulated services' own APIs (whose call counters must only count the pipeline's calls):

- ``POST /_sandbox/reset``                      empty world, no faults, no calls
- ``POST /_sandbox/seed``                       body: a seed object | ``{"name": "demo"}`` | ``{"generate": {...}}``
- ``GET|POST|DELETE /_sandbox/faults``          list / add (FaultRule fields) / clear fault rules
- ``POST /_sandbox/scim/cycle``                 one Entra provisioning cycle (``graph.run_scim_cycle``)
- ``PATCH /_sandbox/scim/job``                  change the sync job (``graph.set_job`` keyword arguments)
- ``GET /_sandbox/calls?service=&operation=&since=``  the call log; ``GET /_sandbox/counters``
- ``GET|DELETE /_sandbox/slack/messages``       captured Slack webhook posts
- ``GET /_sandbox/kintone/comments?app=&record=``    record comments (all records of the app without ``record``,
                                                 of every app without ``app``)
- ``GET|POST|DELETE /_sandbox/kintone/webhooks``  list / register ``{url, apps?, events?}`` / remove all webhooks
- ``GET /_sandbox/kintone/webhooks/deliveries`` what the webhooks sent or dropped (``kintone_webhooks``)
- ``POST /_sandbox/kintone/records``            ``{app, fields, user, id?}`` add (or update with ``id``) a record
                                                 as that user would in the UI; ``DELETE`` ``{app, id, user}``
                                                 deletes one (webhooks fire as for the UI)
- ``POST /_sandbox/kintone/tokens``             ``{app, token?}`` create an API token (a UI action in kintone)
- ``GET /_sandbox/state/assignments``           IdC assignments with names (``?account=&permission_set=&managed=``)
- ``GET /_sandbox/state/permission-sets``       permission sets with policies, tags and provisioning status
- ``GET|PATCH /_sandbox/config``                ``async_latency_seconds``, ``rate_limits`` (merged), other
                                                 SandboxConfig fields, and ``kintone`` knobs
- ``GET /_sandbox/credentials``                 the fixed sandbox-only credentials
"""

from __future__ import annotations

import dataclasses as dc
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from idc_sandbox import kintone as kintone_api
from idc_sandbox import kintone_webhooks
from idc_sandbox import seed as seeding
from idc_sandbox.core import FaultRule, Sandbox

KINTONE_KNOBS = (
    "daily_limit",
    "daily_limit_mode",
    "max_cursors",
    "cursor_ttl_seconds",
    "max_concurrent_requests",
)


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, default=_default, ensure_ascii=False),
        status_code=status,
        media_type="application/json",
    )


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise ControlError(f"body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


Endpoint = Callable[[Sandbox, Request], Awaitable[Any]]


def _wrap(fn: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        sandbox: Sandbox = request.app.state.sandbox
        try:
            result = await fn(sandbox, request)
        except ControlError as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        except seeding.SeedError as err:
            return JSONResponse({"error": f"invalid seed: {err}"}, status_code=400)
        except kintone_webhooks.WebhookError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        except kintone_api.KintoneError as err:
            return JSONResponse(
                {"error": err.text("en"), "code": err.wire_code, "errors": err.errors}, status_code=err.status
            )
        if isinstance(result, Response):
            return result
        return _json(result)

    return handle


# --------------------------------------------------------------------------- world
async def reset(sandbox: Sandbox, request: Request) -> Any:
    sandbox.reset()
    return {"reset": True}


async def seed(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    if "generate" in body:
        params = body["generate"] or {}
        if not isinstance(params, dict):
            raise ControlError("generate must be an object of generator parameters")
        try:
            return seeding.generate_seed(sandbox, **params)
        except TypeError as err:
            raise ControlError(f"bad generator parameters: {err}") from None
    if "name" in body and len(body) == 1:
        return seeding.load_seed(sandbox, seeding.load_named_seed(str(body["name"])))
    return seeding.load_seed(sandbox, body)


# --------------------------------------------------------------------------- faults
def _rule_json(rule: FaultRule) -> dict[str, Any]:
    return dc.asdict(rule)


async def faults(sandbox: Sandbox, request: Request) -> Any:
    if request.method == "GET":
        return {"faults": [_rule_json(r) for r in sandbox.faults.list()]}
    if request.method == "DELETE":
        sandbox.faults.clear()
        return {"faults": []}
    body = await _body(request)
    known = {f.name for f in dc.fields(FaultRule)} - {"id", "fired"}
    unknown = set(body) - known
    if unknown:
        raise ControlError(f"unknown fault fields {sorted(unknown)}; expected some of {sorted(known)}")
    if "service" not in body or "kind" not in body:
        raise ControlError("a fault needs service and kind")
    try:
        rule = sandbox.faults.add(FaultRule(**body))
    except ValueError as err:
        raise ControlError(str(err)) from None
    return _rule_json(rule)


# --------------------------------------------------------------------------- SCIM
def _graph() -> Any:
    try:
        from idc_sandbox import graph
    except ImportError:
        return None
    return graph


async def scim_cycle(sandbox: Sandbox, request: Request) -> Any:
    graph = _graph()
    if graph is None or not hasattr(graph, "run_scim_cycle"):
        raise ControlError("graph.run_scim_cycle is not available", 501)
    return graph.run_scim_cycle(sandbox)


async def scim_job(sandbox: Sandbox, request: Request) -> Any:
    graph = _graph()
    if graph is None or not hasattr(graph, "set_job"):
        raise ControlError("graph.set_job is not available", 501)
    body = await _body(request)
    job_id = body.pop("id", None)
    try:
        return graph.set_job(sandbox, job_id, **body)
    except (TypeError, ValueError) as err:
        raise ControlError(str(err)) from None


# --------------------------------------------------------------------------- observation
async def calls(sandbox: Sandbox, request: Request) -> Any:
    q = request.query_params
    since = _int_param(q.get("since") or 0, "since")
    found = sandbox.calls.calls(q.get("service") or None, q.get("operation") or None)
    return {"calls": [dc.asdict(c) for c in found if c.seq > since]}


async def counters(sandbox: Sandbox, request: Request) -> Any:
    with sandbox.lock:
        kintone = {
            str(a.id): {"requests_today": a.requests_today, "daily_limit": sandbox.world.kintone.daily_limit}
            for a in sandbox.world.kintone.apps.values()
        }
        cursors = len(sandbox.world.kintone.cursors)
    return {"calls": sandbox.calls.counters(), "kintone_apps": kintone, "kintone_live_cursors": cursors}


async def slack_messages(sandbox: Sandbox, request: Request) -> Any:
    with sandbox.lock:
        if request.method == "DELETE":
            sandbox.world.slack.messages.clear()
            return {"messages": []}
        return {
            "messages": [
                {"path": m.path, "payload": m.payload, "received_at": m.received_at}
                for m in sandbox.world.slack.messages
            ]
        }


def _int_param(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise ControlError(f"{name} must be an integer") from None


def _comments_by_record(sandbox: Sandbox, app_id: int) -> dict[str, list[dict[str, Any]]]:
    with sandbox.lock:
        app = sandbox.world.kintone.apps.get(app_id)
        record_ids = sorted(app.comments) if app else []
    return {str(r): kintone_api.comments_of(sandbox, app_id, r) for r in record_ids}


async def kintone_comments(sandbox: Sandbox, request: Request) -> Any:
    """``?app=&record=``: that record's comments; ``?app=``: by record; neither: by app, then record."""
    q = request.query_params
    if not q.get("app"):
        if q.get("record"):
            raise ControlError("record needs app: a record id is only unique within its app")
        with sandbox.lock:
            app_ids = sorted(sandbox.world.kintone.apps)
        return {"apps": {str(a): {"records": _comments_by_record(sandbox, a)} for a in app_ids}}
    app_id = _int_param(q.get("app"), "app")
    if q.get("record"):
        return {"comments": kintone_api.comments_of(sandbox, app_id, _int_param(q.get("record"), "record"))}
    return {"records": _comments_by_record(sandbox, app_id)}


async def kintone_webhooks_endpoint(sandbox: Sandbox, request: Request) -> Any:
    if request.method == "GET":
        return {"webhooks": kintone_webhooks.webhooks(sandbox)}
    if request.method == "DELETE":
        kintone_webhooks.clear(sandbox)
        return {"webhooks": []}
    body = await _body(request)
    unknown = set(body) - {"url", "apps", "events"}
    if unknown:
        raise ControlError(f"unknown webhook fields {sorted(unknown)}; expected url, apps, events")
    if "url" not in body:
        raise ControlError("a webhook needs url")
    hook_id = kintone_webhooks.register(sandbox, body["url"], body.get("apps"), body.get("events"))
    return _json({"id": hook_id}, status=201)


async def kintone_webhook_deliveries(sandbox: Sandbox, request: Request) -> Any:
    return {"deliveries": kintone_webhooks.deliveries(sandbox)}


async def kintone_records(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    app_id = _int_param(body.get("app"), "app")
    user = str(body.get("user") or "Administrator")
    fields = body.get("fields") or {}
    if app_id not in sandbox.world.kintone.apps:
        raise ControlError(f"no kintone app {app_id}", 404)
    if request.method == "DELETE":
        record_id = _int_param(body.get("id"), "id")
        kintone_api.delete_record(sandbox, app_id, record_id, user_code=user)
        return {"deleted": str(record_id)}
    if body.get("id") not in (None, ""):
        revision = kintone_api.update_record(sandbox, app_id, body["id"], fields, user_code=user)
        return {"id": str(body["id"]), "revision": revision}
    rid = kintone_api.add_record(sandbox, app_id, fields, user_code=user)
    return {"id": str(rid), "revision": "1"}


async def kintone_tokens(sandbox: Sandbox, request: Request) -> Any:
    body = await _body(request)
    app_id = _int_param(body.get("app"), "app")
    if app_id not in sandbox.world.kintone.apps:
        raise ControlError(f"no kintone app {app_id}", 404)
    return {"app": str(app_id), "token": kintone_api.add_api_token(sandbox, app_id, body.get("token"))}


async def state_assignments(sandbox: Sandbox, request: Request) -> Any:
    q = request.query_params
    if q.get("managed") not in (None, "", "true", "false"):
        raise ControlError(f"managed must be true or false (or left out), got {q.get('managed')!r}")
    with sandbox.lock:
        world = sandbox.world
        ic, org, store = world.identity_center, world.organization, world.identity_store
        out = []
        for a in ic.assignments:
            ps = ic.permission_sets.get(a.permission_set_arn)
            if q.get("account") and a.account_id != q.get("account"):
                continue
            if q.get("permission_set") and (ps is None or ps.name != q.get("permission_set")):
                continue
            managed = bool(ps and ps.tags.get(seeding.OWNERSHIP_TAG_KEY) == seeding.OWNERSHIP_TAG_VALUE)
            if q.get("managed") and managed != (q.get("managed") == "true"):
                continue
            if a.principal_type == "USER":
                user = store.users.get(a.principal_id)
                name = user.user_name if user else None
            else:
                group = store.groups.get(a.principal_id)
                name = group.display_name if group else None
            acct = org.accounts.get(a.account_id)
            out.append(
                {
                    "account_id": a.account_id,
                    "account_name": acct.name if acct else None,
                    "permission_set": ps.name if ps else None,
                    "permission_set_arn": a.permission_set_arn,
                    "managed": managed,
                    "principal_type": a.principal_type,
                    "principal_id": a.principal_id,
                    "principal_name": name,
                }
            )
    out.sort(
        key=lambda r: (
            r["account_id"],
            r["permission_set"] or "",
            r["principal_type"],
            r["principal_name"] or "",
        )
    )
    return {"count": len(out), "assignments": out}


async def state_permission_sets(sandbox: Sandbox, request: Request) -> Any:
    with sandbox.lock:
        ic = sandbox.world.identity_center
        provisioned: dict[str, dict[str, str]] = {}
        for (account, arn), version in ic.provisioned.items():
            ps = ic.permission_sets.get(arn)
            if ps is not None:
                provisioned.setdefault(arn, {})[account] = "LATEST" if version == ps.version else "STALE"
        out = [
            {
                "arn": ps.arn,
                "name": ps.name,
                "description": ps.description,
                "session_duration": ps.session_duration,
                "relay_state": ps.relay_state,
                "managed_policies": list(ps.managed_policies),
                "customer_managed": [{"name": n, "path": p} for n, p in ps.customer_managed],
                "inline_policy": ps.inline_policy,
                "permissions_boundary": ps.boundary,
                "tags": dict(ps.tags),
                "version": ps.version,
                "provisioned": dict(sorted(provisioned.get(ps.arn, {}).items())),
            }
            for ps in sorted(ic.permission_sets.values(), key=lambda p: p.name)
        ]
    return {"count": len(out), "permission_sets": out}


# --------------------------------------------------------------------------- config
def _config_json(sandbox: Sandbox) -> dict[str, Any]:
    k = sandbox.world.kintone
    return {**dc.asdict(sandbox.config), "kintone": {name: getattr(k, name) for name in KINTONE_KNOBS}}


async def config(sandbox: Sandbox, request: Request) -> Any:
    if request.method == "GET":
        return _config_json(sandbox)
    body = await _body(request)
    known = {f.name for f in dc.fields(sandbox.config)}
    unknown = set(body) - known - {"kintone"}
    if unknown:
        raise ControlError(
            f"unknown config keys {sorted(unknown)}; expected some of {sorted(known | {'kintone'})}"
        )
    kintone_knobs = body.pop("kintone", None) or {}
    bad = set(kintone_knobs) - set(KINTONE_KNOBS)
    if bad:
        raise ControlError(f"unknown kintone knobs {sorted(bad)}; expected some of {list(KINTONE_KNOBS)}")
    with sandbox.lock:
        for key, value in body.items():
            if key == "rate_limits":
                if not isinstance(value, dict):
                    raise ControlError("rate_limits must be an object {family: requests per second}")
                sandbox.config.rate_limits.update({str(k): float(v) for k, v in value.items()})
            else:
                setattr(sandbox.config, key, value)
        for key, value in kintone_knobs.items():
            setattr(sandbox.world.kintone, key, value)
    return _config_json(sandbox)


async def credentials(sandbox: Sandbox, request: Request) -> Any:
    return seeding.CREDENTIALS


def routes() -> list[BaseRoute]:
    table: list[tuple[str, Endpoint, list[str]]] = [
        ("/_sandbox/reset", reset, ["POST"]),
        ("/_sandbox/seed", seed, ["POST"]),
        ("/_sandbox/faults", faults, ["GET", "POST", "DELETE"]),
        ("/_sandbox/scim/cycle", scim_cycle, ["POST"]),
        ("/_sandbox/scim/job", scim_job, ["PATCH", "POST"]),
        ("/_sandbox/calls", calls, ["GET"]),
        ("/_sandbox/counters", counters, ["GET"]),
        ("/_sandbox/slack/messages", slack_messages, ["GET", "DELETE"]),
        ("/_sandbox/kintone/comments", kintone_comments, ["GET"]),
        ("/_sandbox/kintone/records", kintone_records, ["POST", "DELETE"]),
        ("/_sandbox/kintone/tokens", kintone_tokens, ["POST"]),
        ("/_sandbox/kintone/webhooks", kintone_webhooks_endpoint, ["GET", "POST", "DELETE"]),
        ("/_sandbox/kintone/webhooks/deliveries", kintone_webhook_deliveries, ["GET"]),
        ("/_sandbox/state/assignments", state_assignments, ["GET"]),
        ("/_sandbox/state/permission-sets", state_permission_sets, ["GET"]),
        ("/_sandbox/config", config, ["GET", "PATCH"]),
        ("/_sandbox/credentials", credentials, ["GET"]),
    ]
    return [Route(path, _wrap(fn), methods=methods) for path, fn, methods in table]
