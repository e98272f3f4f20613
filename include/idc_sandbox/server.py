"""HTTP front of the sandbox: one port, routed by path and protocol, as DESIGN.md fixes it.

- ``POST /`` AWS JSON 1.1 (``X-Amz-Target``: sso-admin, identitystore, organizations) and AWS query (iam);
  ``POST /policy/validation`` Access Analyzer (REST-JSON). The signing name in the SigV4 ``Authorization``
  header decides when the target is ambiguous; signatures themselves are not verified.
- ``/k/v1/...`` kintone REST, ``/v1.0/...`` and ``/<tenant>/oauth2/v2.0/token`` Microsoft Graph,
  ``/services/...`` Slack incoming webhooks, ``/_sandbox/...`` the control API.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from idc_sandbox import (
    aws_access_analyzer,
    aws_iam,
    aws_identitystore,
    aws_organizations,
    aws_sso_admin,
    control,
    graph,
    kintone,
    slack,
)
from idc_sandbox.core import Sandbox, ServiceError

# X-Amz-Target prefix -> handler module (each has SERVICE, OPERATIONS, ERRORS)
JSON_SERVICES = {
    aws_sso_admin.TARGET_PREFIX: aws_sso_admin,
    aws_identitystore.TARGET_PREFIX: aws_identitystore,
    aws_organizations.TARGET_PREFIX: aws_organizations,
}


def _json_error(err: ServiceError) -> Response:
    body: dict[str, Any] = {"__type": err.code, "message": err.message, **err.extra}
    return Response(
        json.dumps(body),
        status_code=err.status,
        media_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": err.code, "x-amzn-RequestId": "sandbox"},
    )


def aws_guard(sandbox: Sandbox, module: Any, operation: str, params: dict[str, Any]) -> None:
    """Faults and throttling common to every AWS operation; raises the service's own error."""
    service = module.SERVICE
    errors: dict[str, tuple[str, int, str]] = module.ERRORS
    # optional modeled error fields per fault kind, e.g. identitystore's ThrottlingException.RetryAfterSeconds
    extras: dict[str, dict[str, Any]] = getattr(module, "ERROR_EXTRAS", {})
    if sandbox.faults.take(service, operation, ("outage",)):
        raise ServiceError("ServiceUnavailableException", "Service is unavailable (injected outage).", 503)
    for kind in ("throttle", "conflict", "error5xx", "access_denied"):
        rule = sandbox.faults.take(service, operation, (kind,))
        if rule:
            code, status, message = errors[kind]
            raise ServiceError(code, rule.message or message, status, **extras.get(kind, {}))
    family = getattr(module, "rate_family", lambda op: service)(operation)
    if not sandbox.allow(family):
        code, status, message = errors["throttle"]
        raise ServiceError(code, message, status, **extras.get("throttle", {}))


async def _dispatch_json(sandbox: Sandbox, request: Request, target: str) -> Response:
    prefix, _, operation = target.partition(".")
    module = JSON_SERVICES.get(prefix)
    if module is None:
        return _json_error(ServiceError("UnknownOperationException", f"Unknown target {target}", 400))
    raw = await request.body()
    params: dict[str, Any] = {}
    try:
        params = json.loads(raw or b"{}")
        if not isinstance(params, dict):
            raise ValueError("body is not a JSON object")
    except ValueError:
        err = ServiceError(
            "SerializationException", "Start of structure or map found where not expected.", 400
        )
        sandbox.calls.record(module.SERVICE, operation, {}, err.status, err.code)
        return _json_error(err)
    handler: Callable[[Sandbox, dict[str, Any]], dict[str, Any]] | None = module.OPERATIONS.get(operation)
    delay = sandbox.faults.latency_seconds(module.SERVICE, operation)
    if delay:
        await asyncio.sleep(delay)
    try:
        if handler is None:
            raise ServiceError("UnknownOperationException", f"Unknown operation {operation}", 400)
        aws_guard(sandbox, module, operation, params)
        with sandbox.lock:
            result = handler(sandbox, params)
    except ServiceError as err:
        sandbox.calls.record(module.SERVICE, operation, params, err.status, err.code)
        return _json_error(err)
    sandbox.calls.record(module.SERVICE, operation, params, 200, None)
    body = json.dumps(result, default=_json_default)
    if sandbox.faults.take(module.SERVICE, operation, ("garbled",)):
        body = body[: len(body) // 2]  # the operation took place; its answer is lost on the way
    return Response(body, media_type="application/x-amz-json-1.1")


def _json_default(value: Any) -> Any:
    # AWS JSON protocols send timestamps as epoch seconds.
    if hasattr(value, "timestamp"):
        return value.timestamp()
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _signing_name(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    # AWS4-HMAC-SHA256 Credential=AKID/20261128/us-east-1/iam/aws4_request, ...
    if "Credential=" in auth:
        parts = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(parts) >= 4:
            return parts[3]
    return ""


async def aws_root(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    target = request.headers.get("x-amz-target")
    if target:
        return await _dispatch_json(sandbox, request, target)
    raw = (await request.body()).decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    if "Action" in form or _signing_name(request) == "iam":
        return await aws_iam.handle_query(sandbox, form)
    return _json_error(ServiceError("UnknownOperationException", "Missing X-Amz-Target or Action", 400))


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_app(sandbox: Sandbox) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/_health", health, methods=["GET"]),
        *control.routes(),
        *kintone.routes(),
        *graph.routes(),
        *slack.routes(),
        *aws_access_analyzer.routes(),
        Route("/", aws_root, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SandboxServer:
    """Runs the sandbox in a background thread (tests, demo helpers): ``with SandboxServer() as s: s.url``."""

    def __init__(
        self, sandbox: Sandbox | None = None, port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.sandbox = sandbox or Sandbox()
        self.host = host
        self.port = port or free_port()
        config = uvicorn.Config(
            build_app(self.sandbox), host=host, port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="sandbox", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
