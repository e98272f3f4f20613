"""Sandbox sso-admin (AWS JSON 1.1, ``X-Amz-Target: SWBExternalService.<Operation>``).

The emulated IAM Identity Center instance is administered from a *delegated administrator* account
(``world.identity_center.owner_account_id``), as the pipeline runs in production. Requests are validated
against botocore's own service model (required members, lengths, patterns, enums, ranges), so a request
the real service would reject for its shape is rejected here with the same ``ValidationException``
wording (``1 validation error detected: Value ... at 'name' failed to satisfy constraint: ...``).

Semantics that matter to the pipeline, and the choices made where AWS documents nothing:

- Async operations (Create/DeleteAccountAssignment, ProvisionPermissionSet) answer ``IN_PROGRESS`` and
  reach a terminal state ``config.async_latency_seconds`` later. Nothing runs in the background: every
  handler first *settles* due requests (``settle_requests``) and applies their effect then.
- At most ``config.max_outstanding_assignment_ops`` in-progress assignment operations and
  ``config.max_concurrent_provisioning`` in-progress provisionings: the next one gets
  ``ThrottlingException`` (botocore retries it by itself).
- One in-progress async operation per account ("only one IAM role per account can be updated at a
  time"): a second one touching the same account gets ``ConflictException: There is a conflicting
  operation in process.`` (botocore does NOT retry it).
- CreateAccountAssignment provisions the permission set's current version to the account; changes to
  the permission set (policies, boundary, inline policy, description, duration, relay state) bump its
  version, so the account reports ``LATEST_PERMISSION_SET_NOT_PROVISIONED`` until ProvisionPermissionSet.
  Deleting the last assignment of a permission set in an account deprovisions it there (AWS removes the
  role). Tags never need provisioning.
- Creating an existing assignment succeeds (idempotent). Deleting a missing assignment is accepted and
  ends ``SUCCEEDED`` as a no-op (choice: the documented API gives no error for it, and a sync pipeline
  racing itself should converge rather than fail).
- PrincipalId unknown to the identity store -> synchronous ``ResourceNotFoundException``; a principal
  that disappears while the request is in progress (SCIM deleted it) -> the request ends ``FAILED``.
  Account unknown to the organization -> ``ResourceNotFoundException``; account not ACTIVE when the
  request completes -> ``FAILED``. An attached AWS managed policy unknown to the catalog
  (``managed_policies.json``) makes provisioning end ``FAILED`` with ``Not supported policy ...``.
- Delegated administrator: any write targeting the management account, or touching a permission set
  provisioned to the management account, -> ``AccessDeniedException``; reads are allowed.
  ``ListAccountAssignmentsForPrincipal`` is documented as management-account only, so a delegated
  administrator gets ``AccessDeniedException`` for it. When the instance owner *is* the management
  account none of this applies.
- DeletePermissionSet while assignments exist or while it is still provisioned to an account ->
  ``ConflictException`` (AWS: "Could not delete because PermissionSet has ApplicationProfile associated
  with it.").
- Attaching an already attached (customer) managed policy -> ``ConflictException``; detaching one that
  is not attached -> ``ResourceNotFoundException``; more than 20 managed + customer managed policies ->
  ``ServiceQuotaExceededException``. Get/DeletePermissionsBoundary when none is set ->
  ``ResourceNotFoundException``; GetInlinePolicy when none is set -> ``InlinePolicy: ""``.

The ``*_direct`` helpers at the bottom let seed loaders build a world without going through HTTP.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from idc_sandbox.core import Sandbox, ServiceError
from idc_sandbox.state import Assignment, AsyncRequest, IdentityCenter, PermissionSet

SERVICE = "sso-admin"
TARGET_PREFIX = "SWBExternalService"
# fault kind -> (error code, HTTP status, default message). sso-admin answers every client error with
# HTTP 400 (the model declares no httpStatusCode; the JSON protocol's default), server faults with 500.
ERRORS: dict[str, tuple[str, int, str]] = {
    "throttle": ("ThrottlingException", 400, "Rate exceeded"),
    "conflict": ("ConflictException", 400, "There is a conflicting operation in process."),
    "error5xx": ("InternalServerException", 500, "An internal error occurred."),
    "access_denied": ("AccessDeniedException", 400, "User is not authorized to perform this operation."),
}
OPERATIONS: dict[str, Callable[[Sandbox, dict[str, Any]], dict[str, Any]]] = {}

# Limits of the service (AWS quotas page); the async ones live in SandboxConfig.
MAX_PERMISSION_SETS = 2000
MAX_ATTACHED_POLICIES = 20  # managed + customer managed, together
MAX_TAGS = 75
MAX_INLINE_POLICY_NON_WHITESPACE = 10_240
DEFAULT_MAX_RESULTS = 100
# Who the sandbox says is calling (used in AccessDenied messages only).
CALLER_ROLE = "AWSReservedSSO_IdcSyncAutomation_0123456789abcdef/idc-sync"
INSTANCE_CREATED = dt.datetime(2023, 4, 1, 9, 0, tzinfo=dt.UTC)

CONFLICT_MESSAGE = "There is a conflicting operation in process."
TOO_MANY_REQUESTS_MESSAGE = "There are too many requests processing. Please try again later."
DEFAULT_ASYNC_FAILURE = (
    "Received a 403 status error: Access denied by IAM. Please check your policy, or wait for role "
    "propagation to complete. IAM Error: User: arn:aws:sts::{account}:assumed-role/AWSServiceRoleForSSO/"
    "sso is not authorized to perform: iam:CreateRole on resource: role AWSReservedSSO_{name}"
)


def rate_family(operation: str) -> str:
    """All sso-admin operations share one token bucket (about 20 requests/s per instance)."""
    return SERVICE


# =========================================================================== model-driven validation
@functools.lru_cache(maxsize=1)
def _service_model() -> Any:
    import botocore.session  # local import: only the sandbox needs botocore's data files here

    return botocore.session.get_session().get_service_model("sso-admin")


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


@functools.lru_cache(maxsize=256)
def _pattern_matcher(pattern: str) -> Callable[[str], bool] | None:
    """Full-match checker for a model pattern; ``\\p{..}`` classes (not in ``re``) are handled by hand."""
    if "\\p{" not in pattern:
        compiled = re.compile(pattern, re.ASCII)  # Java semantics: \\w and \\d are ASCII-only
        return lambda s: compiled.fullmatch(s) is not None
    m = re.fullmatch(r"\(?\[(.*)\]([*+])\)?", pattern)
    if not m:
        return None  # not a single character class: leave it unchecked rather than guess
    body, quant = m.group(1), m.group(2)
    cats: set[str] = set()
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if body.startswith("\\p{", i):
            end = body.index("}", i)
            cats.add(body[i + 3 : end])
            i = end + 1
        elif body[i] == "\\" and i + 1 < len(body):
            chars.add(body[i + 1])
            i += 2
        else:
            chars.add(body[i])
            i += 1

    def check(s: str) -> bool:
        if quant == "+" and not s:
            return False
        return all(c in chars or unicodedata.category(c)[0] in cats for c in s)

    return check


class _Invalid(Exception):
    """A wrong JSON type: the real service answers SerializationException before any validation."""


def _check(shape: Any, value: Any, path: str, errors: list[str]) -> None:
    kind = shape.type_name
    meta = shape.metadata
    prefix = f"Value {_show(value)!r} at '{path}' failed to satisfy constraint: Member must"
    if kind == "structure":
        if not isinstance(value, dict):
            raise _Invalid(path)
        for req in shape.required_members:
            if value.get(req) is None:
                where = f"{path}.{_camel(req)}" if path else _camel(req)
                errors.append(
                    f"Value null at '{where}' failed to satisfy constraint: Member must not be null"
                )
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _check(member, value[name], f"{path}.{_camel(name)}" if path else _camel(name), errors)
    elif kind == "list":
        if not isinstance(value, list):
            raise _Invalid(path)
        if "min" in meta and len(value) < meta["min"]:
            errors.append(f"{prefix} have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{prefix} have length less than or equal to {meta['max']}")
        for i, item in enumerate(value, 1):
            if item is None:
                errors.append(
                    f"Value null at '{path}.{i}.member' failed to satisfy constraint: Member must not be null"
                )
            else:
                _check(shape.member, item, f"{path}.{i}.member", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            raise _Invalid(path)
    elif kind == "string":
        if not isinstance(value, str):
            raise _Invalid(path)
        if shape.enum and value not in shape.enum:
            errors.append(f"{prefix} satisfy enum value set: [{', '.join(shape.enum)}]")
            return
        if "min" in meta and len(value) < meta["min"]:
            errors.append(f"{prefix} have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{prefix} have length less than or equal to {meta['max']}")
        pattern = meta.get("pattern")
        if pattern and value:
            matcher = _pattern_matcher(pattern)
            if matcher is not None and not matcher(value):
                errors.append(f"{prefix} satisfy regular expression pattern: {pattern}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path)
        if "min" in meta and value < meta["min"]:
            errors.append(f"{prefix} have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"{prefix} have value less than or equal to {meta['max']}")
    elif kind == "boolean" and not isinstance(value, bool):
        raise _Invalid(path)


def validate_request(operation: str, params: dict[str, Any]) -> None:
    """Validate ``params`` against the operation's input shape in botocore's model (like the service)."""
    input_shape = _service_model().operation_model(operation).input_shape
    if input_shape is None:
        return
    errors: list[str] = []
    try:
        _check(input_shape, params, "", errors)
    except _Invalid as exc:
        raise ServiceError(
            "SerializationException", f"Unexpected value type in payload at '{exc.args[0]}'", 400
        ) from None
    if errors:
        n = len(errors)
        head = f"{n} validation error{'s' if n > 1 else ''} detected: "
        raise ServiceError("ValidationException", head + "; ".join(errors), 400)


def _invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", message, 400)


def _not_found(message: str) -> ServiceError:
    return ServiceError("ResourceNotFoundException", message, 400)


def _conflict(message: str = CONFLICT_MESSAGE) -> ServiceError:
    return ServiceError("ConflictException", message, 400)


def _operation(name: str) -> Callable[[Callable[[Sandbox, dict[str, Any]], dict[str, Any]]], Any]:
    """Register a handler: validate against the model, settle due async requests, then run it."""

    def register(fn: Callable[[Sandbox, dict[str, Any]], dict[str, Any]]) -> Any:
        _service_model().operation_model(name)  # fails at import if the name is not in the model

        @functools.wraps(fn)
        def handler(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
            validate_request(name, params)
            with sandbox.lock:
                settle_requests(sandbox)
                return fn(sandbox, params)

        OPERATIONS[name] = handler
        return handler

    return register


# =========================================================================== lookups and guards
def _ic(sandbox: Sandbox) -> IdentityCenter:
    return sandbox.world.identity_center


def _instance_id(sandbox: Sandbox) -> str:
    return _ic(sandbox).instance_arn.rsplit("/", 1)[1]


def _check_instance(sandbox: Sandbox, params: dict[str, Any]) -> None:
    arn = params.get("InstanceArn")
    if arn is not None and arn != _ic(sandbox).instance_arn:
        raise _not_found(f"Instance {arn} does not exist.")


def _permission_set(sandbox: Sandbox, params: dict[str, Any]) -> PermissionSet:
    _check_instance(sandbox, params)
    arn = params["PermissionSetArn"]
    ps = _ic(sandbox).permission_sets.get(arn)
    if ps is None:
        raise _not_found(f"Could not find PermissionSet with arn {arn}.")
    return ps


def _delegated(sandbox: Sandbox) -> bool:
    return _ic(sandbox).owner_account_id != sandbox.world.organization.management_account_id


def _access_denied(sandbox: Sandbox, operation: str, resource: str) -> ServiceError:
    owner = _ic(sandbox).owner_account_id
    return ServiceError(
        "AccessDeniedException",
        f"User: arn:aws:sts::{owner}:assumed-role/{CALLER_ROLE} is not authorized to perform: "
        f"sso:{operation} on resource: {resource}",
        400,
    )


def _guard_account(sandbox: Sandbox, operation: str, account_id: str | None) -> None:
    """A delegated administrator cannot act on the management account."""
    mgmt = sandbox.world.organization.management_account_id
    if account_id == mgmt and _delegated(sandbox):
        raise _access_denied(sandbox, operation, f"arn:aws:sso:::account/{mgmt}")


def _guard_permission_set(sandbox: Sandbox, operation: str, ps: PermissionSet) -> None:
    """... nor change a permission set provisioned to the management account."""
    mgmt = sandbox.world.organization.management_account_id
    if _delegated(sandbox) and (mgmt, ps.arn) in _ic(sandbox).provisioned:
        raise _access_denied(sandbox, operation, ps.arn)


def _check_account(sandbox: Sandbox, account_id: str) -> None:
    if account_id not in sandbox.world.organization.accounts:
        raise _not_found(f"Account {account_id} is not a member of the organization.")


def _principal_exists(sandbox: Sandbox, principal_type: str, principal_id: str) -> bool:
    store = sandbox.world.identity_store
    return principal_id in (store.users if principal_type == "USER" else store.groups)


def _bump(ps: PermissionSet) -> None:
    ps.version += 1


def _is_latest(sandbox: Sandbox, account_id: str, ps_arn: str) -> bool:
    ps = _ic(sandbox).permission_sets.get(ps_arn)
    return ps is not None and _ic(sandbox).provisioned.get((account_id, ps_arn)) == ps.version


# =========================================================================== indexes
class _Index:
    """Derived lookups over ``IdentityCenter`` so a 50,000-assignment world answers in O(result).

    The world's sets and dicts stay the single source of truth (seed loaders write them directly); the
    index is rebuilt whenever their identity or size changed, and this module's own mutations go through
    the helpers below, which update world and index together.
    """

    def __init__(self) -> None:
        self.key: tuple[int, ...] | None = None
        self.assignments: dict[tuple[str, str], set[Assignment]] = {}
        self.accounts_by_ps: dict[str, set[str]] = {}
        self.ps_by_account: dict[str, set[str]] = {}
        self.requests_key: tuple[int, int] | None = None
        self.pending: dict[str, AsyncRequest] = {}


def _index(ic: IdentityCenter) -> _Index:
    idx: _Index | None = ic.__dict__.get("_sso_admin_index")
    if idx is None:
        idx = ic.__dict__["_sso_admin_index"] = _Index()
    key = _fingerprint(ic)
    if idx.key != key:
        idx.assignments = {}
        for a in ic.assignments:
            idx.assignments.setdefault((a.account_id, a.permission_set_arn), set()).add(a)
        idx.accounts_by_ps, idx.ps_by_account = {}, {}
        for acct, arn in ic.provisioned:
            idx.accounts_by_ps.setdefault(arn, set()).add(acct)
            idx.ps_by_account.setdefault(acct, set()).add(arn)
        idx.key = key
    requests_key = (id(ic.requests), len(ic.requests))
    if idx.requests_key != requests_key:
        idx.pending = {rid: r for rid, r in ic.requests.items() if r.status == "IN_PROGRESS"}
        idx.requests_key = requests_key
    return idx


def _fingerprint(ic: IdentityCenter) -> tuple[int, ...]:
    return (id(ic.assignments), len(ic.assignments), id(ic.provisioned), len(ic.provisioned))


# Mutations keep the world and the index in step (no O(world) rebuild per async request).
def _add_assignment(ic: IdentityCenter, a: Assignment) -> None:
    idx = _index(ic)
    ic.assignments.add(a)
    idx.assignments.setdefault((a.account_id, a.permission_set_arn), set()).add(a)
    idx.key = _fingerprint(ic)


def _remove_assignment(ic: IdentityCenter, a: Assignment) -> None:
    idx = _index(ic)
    ic.assignments.discard(a)
    pair = (a.account_id, a.permission_set_arn)
    members = idx.assignments.get(pair)
    if members is not None:
        members.discard(a)
        if not members:
            del idx.assignments[pair]
    idx.key = _fingerprint(ic)


def _set_provisioned(ic: IdentityCenter, account_id: str, ps_arn: str, version: int) -> None:
    idx = _index(ic)
    ic.provisioned[(account_id, ps_arn)] = version
    idx.accounts_by_ps.setdefault(ps_arn, set()).add(account_id)
    idx.ps_by_account.setdefault(account_id, set()).add(ps_arn)
    idx.key = _fingerprint(ic)


def _unprovision(ic: IdentityCenter, account_id: str, ps_arn: str) -> None:
    idx = _index(ic)
    ic.provisioned.pop((account_id, ps_arn), None)
    idx.accounts_by_ps.get(ps_arn, set()).discard(account_id)
    idx.ps_by_account.get(account_id, set()).discard(ps_arn)
    idx.key = _fingerprint(ic)


# =========================================================================== pagination
def _page(operation: str, items: Sequence[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    limit = params.get("MaxResults") or DEFAULT_MAX_RESULTS
    offset = 0
    token = params.get("NextToken")
    if token:
        try:
            op, _, raw = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
            offset = int(raw)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _invalid("Invalid NextToken.") from None
        if op != operation or offset < 0:
            raise _invalid("Invalid NextToken.")
    page = list(items[offset : offset + limit])
    nxt = None
    if offset + limit < len(items):
        nxt = base64.urlsafe_b64encode(f"{operation}:{offset + limit}".encode()).decode()
    return page, nxt


def _with_token(body: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token:
        body["NextToken"] = token
    return body


# =========================================================================== async requests
def _new_request_id(sandbox: Sandbox) -> str:
    return str(uuid.UUID(int=sandbox.rng.getrandbits(128), version=4))


def _in_progress(sandbox: Sandbox, kinds: Iterable[str]) -> list[AsyncRequest]:
    wanted = set(kinds)
    pending = _index(_ic(sandbox)).pending.values()
    return [r for r in pending if r.status == "IN_PROGRESS" and r.kind in wanted]


def _busy_accounts(sandbox: Sandbox) -> set[str]:
    busy: set[str] = set()
    for r in _in_progress(sandbox, ("create_assignment", "delete_assignment", "provision")):
        busy.update(r.payload.get("accounts", ()))
    return busy


def _start_request(
    sandbox: Sandbox,
    operation: str,
    kind: str,
    accounts: list[str],
    payload: dict[str, Any],
    ps: PermissionSet,
) -> AsyncRequest:
    """Quotas and per-account conflicts, then a new IN_PROGRESS request (fault ``async_failed`` decided now)."""
    cfg = sandbox.config
    if kind == "provision":
        if len(_in_progress(sandbox, ("provision",))) >= cfg.max_concurrent_provisioning:
            raise ServiceError("ThrottlingException", TOO_MANY_REQUESTS_MESSAGE, 400)
    elif (
        len(_in_progress(sandbox, ("create_assignment", "delete_assignment")))
        >= cfg.max_outstanding_assignment_ops
    ):
        raise ServiceError("ThrottlingException", TOO_MANY_REQUESTS_MESSAGE, 400)
    if _busy_accounts(sandbox) & set(accounts):
        raise _conflict()
    will_fail = None
    rule = sandbox.faults.take(SERVICE, operation, ("async_failed",))
    if rule is not None:
        first = accounts[0] if accounts else _ic(sandbox).owner_account_id
        will_fail = rule.message or DEFAULT_ASYNC_FAILURE.format(account=first, name=ps.name)
    request = AsyncRequest(
        request_id=_new_request_id(sandbox),
        kind=kind,
        status="IN_PROGRESS",
        created=sandbox.now(),
        completes_at=sandbox.monotonic() + max(cfg.async_latency_seconds, 0.0),
        payload={**payload, "accounts": list(accounts), "version": ps.version},
        will_fail=will_fail,
    )
    ic = _ic(sandbox)
    idx = _index(ic)
    ic.requests[request.request_id] = request
    idx.pending[request.request_id] = request
    idx.requests_key = (id(ic.requests), len(ic.requests))
    return request


@functools.lru_cache(maxsize=1)
def _managed_policy_catalog() -> frozenset[str]:
    try:
        text = resources.files("idc_sandbox").joinpath("managed_policies.json").read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ValueError):
        return frozenset()
    names = data.keys() if isinstance(data, dict) else data
    return frozenset(str(n).strip("/") for n in names)


def _unsupported_policy(ps: PermissionSet) -> str | None:
    catalog = _managed_policy_catalog()
    if not catalog:
        return None
    for arn in ps.managed_policies:
        name = arn.split(":policy/", 1)[1] if ":policy/" in arn else arn
        if name not in catalog or name.startswith("aws-service-role/"):
            return arn
    return None


def _apply(sandbox: Sandbox, request: AsyncRequest) -> str | None:
    """Apply a completed request's effect; returns a failure reason instead when it cannot be applied."""
    ic = _ic(sandbox)
    p = request.payload
    ps = ic.permission_sets.get(p["permission_set_arn"])
    if request.kind == "delete_assignment":
        assignment = Assignment(
            p["account_id"], p["permission_set_arn"], p["principal_type"], p["principal_id"]
        )
        if assignment in ic.assignments:
            _remove_assignment(ic, assignment)
            if not _index(ic).assignments.get((assignment.account_id, assignment.permission_set_arn)):
                # the last assignment is gone: AWS removes the role from the account
                _unprovision(ic, assignment.account_id, assignment.permission_set_arn)
        return None
    if ps is None:
        return f"Received a 404 status error: PermissionSet {p['permission_set_arn']} does not exist."
    for account_id in p["accounts"]:
        account = sandbox.world.organization.accounts.get(account_id)
        if account is None or account.state != "ACTIVE":
            return f"Received a 400 status error: Account {account_id} is not in the ACTIVE state."
    bad_policy = _unsupported_policy(ps)
    if bad_policy:
        return f"Received a 404 status error: Not supported policy {bad_policy}."
    if request.kind == "create_assignment":
        if not _principal_exists(sandbox, p["principal_type"], p["principal_id"]):
            return f"Received a 404 status error: Principal {p['principal_id']} does not exist."
        _add_assignment(ic, Assignment(p["account_id"], ps.arn, p["principal_type"], p["principal_id"]))
    for account_id in p["accounts"]:
        _set_provisioned(
            ic, account_id, ps.arn, max(ic.provisioned.get((account_id, ps.arn), 0), p["version"])
        )
    return None


def settle_requests(sandbox: Sandbox) -> None:
    """Bring every due IN_PROGRESS request to its terminal state (in completion order), applying effects."""
    now = sandbox.monotonic()
    with sandbox.lock:
        pending = _index(_ic(sandbox)).pending
        due = sorted(
            (r for r in pending.values() if r.status != "IN_PROGRESS" or r.completes_at <= now),
            key=lambda r: r.completes_at,
        )
        for request in due:
            pending.pop(request.request_id, None)
            if request.status != "IN_PROGRESS":
                continue  # finished by someone else (e.g. a test or the control API)
            reason = request.will_fail or _apply(sandbox, request)
            request.status = "FAILED" if reason else "SUCCEEDED"
            request.failure_reason = reason


def _assignment_status(request: AsyncRequest) -> dict[str, Any]:
    p = request.payload
    body: dict[str, Any] = {
        "Status": request.status,
        "RequestId": request.request_id,
        "TargetId": p["account_id"],
        "TargetType": "AWS_ACCOUNT",
        "PermissionSetArn": p["permission_set_arn"],
        "PrincipalType": p["principal_type"],
        "PrincipalId": p["principal_id"],
        "CreatedDate": request.created,
    }
    if request.failure_reason:
        body["FailureReason"] = request.failure_reason
    return body


def _provisioning_status(request: AsyncRequest) -> dict[str, Any]:
    p = request.payload
    body: dict[str, Any] = {
        "Status": request.status,
        "RequestId": request.request_id,
        "PermissionSetArn": p["permission_set_arn"],
        "CreatedDate": request.created,
    }
    if p.get("target_id"):
        body["AccountId"] = p["target_id"]
    if request.failure_reason:
        body["FailureReason"] = request.failure_reason
    return body


def _find_request(sandbox: Sandbox, params: dict[str, Any], key: str, kind: str) -> AsyncRequest:
    _check_instance(sandbox, params)
    request = _ic(sandbox).requests.get(params[key])
    if request is None or request.kind != kind:
        raise _not_found(f"Request {params[key]} does not exist.")
    return request


def _list_requests(sandbox: Sandbox, params: dict[str, Any], kind: str) -> list[AsyncRequest]:
    _check_instance(sandbox, params)
    wanted = (params.get("Filter") or {}).get("Status")
    return [
        r for r in _ic(sandbox).requests.values() if r.kind == kind and (wanted is None or r.status == wanted)
    ]


# =========================================================================== permission set validation
_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


def _check_session_duration(value: str) -> None:
    m = _DURATION.fullmatch(value)
    seconds = -1
    if m and value not in ("P", "PT"):
        d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        seconds = d * 86400 + h * 3600 + mi * 60 + s
    if not 3600 <= seconds <= 43200:
        raise _invalid(
            f"SessionDuration {value} is invalid: it must be an ISO-8601 duration between PT1H and PT12H."
        )


def _check_tags(tags: list[dict[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags:
        if tag["Key"].lower().startswith("aws:"):
            raise _invalid("Tag keys starting with 'aws:' are reserved for AWS use.")
        out[tag["Key"]] = tag["Value"]
    return out


def _check_inline_policy(text: str) -> None:
    try:
        doc = json.loads(text)
    except ValueError:
        raise _invalid("The inline policy document is malformed: it is not valid JSON.") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise _invalid("The inline policy document is malformed: it must be a JSON object with a Statement.")
    if sum(1 for c in text if not c.isspace()) > MAX_INLINE_POLICY_NON_WHITESPACE:
        raise _invalid(
            f"The inline policy exceeds the maximum size of {MAX_INLINE_POLICY_NON_WHITESPACE} "
            "non-whitespace characters."
        )


def _describe(ps: PermissionSet) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Name": ps.name,
        "PermissionSetArn": ps.arn,
        "CreatedDate": ps.created,
        "SessionDuration": ps.session_duration,
    }
    if ps.description:
        body["Description"] = ps.description
    if ps.relay_state:
        body["RelayState"] = ps.relay_state
    return body


def _policy_count(ps: PermissionSet) -> int:
    return len(ps.managed_policies) + len(ps.customer_managed)


def _cmp_ref(ref: dict[str, Any]) -> tuple[str, str]:
    return ref["Name"], ref.get("Path") or "/"


# =========================================================================== instance
@_operation("ListInstances")
def list_instances(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ic = _ic(sandbox)
    store_id = sandbox.world.identity_store.id
    instance = {
        "InstanceArn": ic.instance_arn,
        "IdentityStoreId": store_id,
        "IdentityStoreArn": f"arn:aws:identitystore::{ic.owner_account_id}:identitystore/{store_id}",
        "OwnerAccountId": ic.owner_account_id,
        "CreatedDate": INSTANCE_CREATED,
        "Status": "ACTIVE",
        "PrimaryRegion": sandbox.config.region,
    }
    page, token = _page("ListInstances", [instance], params)
    return _with_token({"Instances": page}, token)


# =========================================================================== permission sets
@_operation("CreatePermissionSet")
def create_permission_set(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    _check_instance(sandbox, params)
    if params.get("SessionDuration"):
        _check_session_duration(params["SessionDuration"])
    tags = _check_tags(params.get("Tags") or [])
    ic = _ic(sandbox)
    name = params["Name"]
    if any(ps.name == name for ps in ic.permission_sets.values()):
        raise _conflict(f"PermissionSet with name {name} already exists.")
    if len(ic.permission_sets) >= MAX_PERMISSION_SETS:
        raise ServiceError(
            "ServiceQuotaExceededException",
            f"The number of permission sets exceeds the limit of {MAX_PERMISSION_SETS} for this instance.",
            400,
        )
    ps = PermissionSet(
        arn=new_permission_set_arn(sandbox),
        name=name,
        description=params.get("Description") or "",
        session_duration=params.get("SessionDuration") or "PT1H",
        relay_state=params.get("RelayState"),
        tags=tags,
    )
    ic.permission_sets[ps.arn] = ps
    return {"PermissionSet": _describe(ps)}


@_operation("DescribePermissionSet")
def describe_permission_set(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    return {"PermissionSet": _describe(_permission_set(sandbox, params))}


@_operation("ListPermissionSets")
def list_permission_sets(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    _check_instance(sandbox, params)
    page, token = _page("ListPermissionSets", list(_ic(sandbox).permission_sets), params)
    return _with_token({"PermissionSets": page}, token)


@_operation("UpdatePermissionSet")
def update_permission_set(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "UpdatePermissionSet", ps)
    if params.get("SessionDuration"):
        _check_session_duration(params["SessionDuration"])
    changed = False
    for key, attr in (
        ("Description", "description"),
        ("SessionDuration", "session_duration"),
        ("RelayState", "relay_state"),
    ):
        if params.get(key) is not None and getattr(ps, attr) != params[key]:
            setattr(ps, attr, params[key])
            changed = True
    if changed:
        _bump(ps)
    return {}


@_operation("DeletePermissionSet")
def delete_permission_set(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "DeletePermissionSet", ps)
    ic = _ic(sandbox)
    idx = _index(ic)
    in_use = (
        bool(idx.accounts_by_ps.get(ps.arn))
        or any(arn == ps.arn for _, arn in idx.assignments)
        or any(
            r.payload.get("permission_set_arn") == ps.arn
            for r in _in_progress(sandbox, ("create_assignment", "delete_assignment", "provision"))
        )
    )
    if in_use:
        raise _conflict("Could not delete because PermissionSet has ApplicationProfile associated with it.")
    del ic.permission_sets[ps.arn]
    return {}


# =========================================================================== managed / customer managed policies
def _quota_check(ps: PermissionSet) -> None:
    if _policy_count(ps) >= MAX_ATTACHED_POLICIES:
        raise ServiceError(
            "ServiceQuotaExceededException",
            f"The number of managed policies and customer managed policy references attached to a permission "
            f"set cannot exceed {MAX_ATTACHED_POLICIES}.",
            400,
        )


@_operation("AttachManagedPolicyToPermissionSet")
def attach_managed_policy(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "AttachManagedPolicyToPermissionSet", ps)
    arn = params["ManagedPolicyArn"]
    if arn in ps.managed_policies:
        raise _conflict(f"Managed policy {arn} is already attached to permission set {ps.arn}.")
    _quota_check(ps)
    ps.managed_policies.append(arn)
    _bump(ps)
    return {}


@_operation("DetachManagedPolicyFromPermissionSet")
def detach_managed_policy(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "DetachManagedPolicyFromPermissionSet", ps)
    arn = params["ManagedPolicyArn"]
    if arn not in ps.managed_policies:
        raise _not_found(f"Managed policy {arn} is not attached to permission set {ps.arn}.")
    ps.managed_policies.remove(arn)
    _bump(ps)
    return {}


@_operation("ListManagedPoliciesInPermissionSet")
def list_managed_policies(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    items = [{"Name": arn.rsplit("/", 1)[1], "Arn": arn} for arn in ps.managed_policies]
    page, token = _page("ListManagedPoliciesInPermissionSet", items, params)
    return _with_token({"AttachedManagedPolicies": page}, token)


@_operation("AttachCustomerManagedPolicyReferenceToPermissionSet")
def attach_customer_managed(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "AttachCustomerManagedPolicyReferenceToPermissionSet", ps)
    ref = _cmp_ref(params["CustomerManagedPolicyReference"])
    if ref in ps.customer_managed:
        raise _conflict(
            f"Customer managed policy reference {ref[1]}{ref[0]} is already attached to {ps.arn}."
        )
    _quota_check(ps)
    ps.customer_managed.append(ref)
    _bump(ps)
    return {}


@_operation("DetachCustomerManagedPolicyReferenceFromPermissionSet")
def detach_customer_managed(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "DetachCustomerManagedPolicyReferenceFromPermissionSet", ps)
    ref = _cmp_ref(params["CustomerManagedPolicyReference"])
    if ref not in ps.customer_managed:
        raise _not_found(f"Customer managed policy reference {ref[1]}{ref[0]} is not attached to {ps.arn}.")
    ps.customer_managed.remove(ref)
    _bump(ps)
    return {}


@_operation("ListCustomerManagedPolicyReferencesInPermissionSet")
def list_customer_managed(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    items = [{"Name": name, "Path": path} for name, path in ps.customer_managed]
    page, token = _page("ListCustomerManagedPolicyReferencesInPermissionSet", items, params)
    return _with_token({"CustomerManagedPolicyReferences": page}, token)


# =========================================================================== inline policy
@_operation("PutInlinePolicyToPermissionSet")
def put_inline_policy(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "PutInlinePolicyToPermissionSet", ps)
    text = params["InlinePolicy"]
    _check_inline_policy(text)
    if ps.inline_policy != text:
        ps.inline_policy = text
        _bump(ps)
    return {}


@_operation("GetInlinePolicyForPermissionSet")
def get_inline_policy(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    return {"InlinePolicy": ps.inline_policy or ""}


@_operation("DeleteInlinePolicyFromPermissionSet")
def delete_inline_policy(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "DeleteInlinePolicyFromPermissionSet", ps)
    if ps.inline_policy is not None:
        ps.inline_policy = None
        _bump(ps)
    return {}


# =========================================================================== permissions boundary
@_operation("PutPermissionsBoundaryToPermissionSet")
def put_permissions_boundary(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "PutPermissionsBoundaryToPermissionSet", ps)
    boundary = params["PermissionsBoundary"]
    has_arn = boundary.get("ManagedPolicyArn") is not None
    has_ref = boundary.get("CustomerManagedPolicyReference") is not None
    if has_arn == has_ref:
        raise _invalid(
            "PermissionsBoundary must contain exactly one of ManagedPolicyArn or CustomerManagedPolicyReference."
        )
    if has_arn:
        value: dict[str, Any] = {"ManagedPolicyArn": boundary["ManagedPolicyArn"]}
    else:
        name, path = _cmp_ref(boundary["CustomerManagedPolicyReference"])
        value = {"CustomerManagedPolicyReference": {"Name": name, "Path": path}}
    if ps.boundary != value:
        ps.boundary = value
        _bump(ps)
    return {}


@_operation("GetPermissionsBoundaryForPermissionSet")
def get_permissions_boundary(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    if ps.boundary is None:
        raise _not_found(f"Permissions boundary for permission set {ps.arn} does not exist.")
    return {"PermissionsBoundary": json.loads(json.dumps(ps.boundary))}


@_operation("DeletePermissionsBoundaryFromPermissionSet")
def delete_permissions_boundary(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    _guard_permission_set(sandbox, "DeletePermissionsBoundaryFromPermissionSet", ps)
    if ps.boundary is None:
        raise _not_found(f"Permissions boundary for permission set {ps.arn} does not exist.")
    ps.boundary = None
    _bump(ps)
    return {}


# =========================================================================== tags
def _instance_tags(ic: IdentityCenter) -> dict[str, str]:
    # Kept on the IdentityCenter object itself so that ``Sandbox.reset`` (a new World) clears them.
    tags: dict[str, str] | None = getattr(ic, "instance_tags", None)
    if tags is None:
        tags = {}
        ic.instance_tags = tags  # type: ignore[attr-defined]
    return tags


def _tag_target(sandbox: Sandbox, params: dict[str, Any], operation: str, write: bool) -> dict[str, str]:
    _check_instance(sandbox, params)
    ic = _ic(sandbox)
    arn = params["ResourceArn"]
    if arn == ic.instance_arn:
        return _instance_tags(ic)
    ps = ic.permission_sets.get(arn)
    if ps is None:
        raise _not_found(f"Resource {arn} does not exist.")
    if write:
        _guard_permission_set(sandbox, operation, ps)
    return ps.tags


@_operation("TagResource")
def tag_resource(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    tags = _tag_target(sandbox, params, "TagResource", write=True)
    new = _check_tags(params["Tags"])
    if len({**tags, **new}) > MAX_TAGS:
        raise ServiceError(
            "ServiceQuotaExceededException", f"A resource can have at most {MAX_TAGS} tags.", 400
        )
    tags.update(new)
    return {}


@_operation("UntagResource")
def untag_resource(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    tags = _tag_target(sandbox, params, "UntagResource", write=True)
    for key in params["TagKeys"]:
        tags.pop(key, None)
    return {}


@_operation("ListTagsForResource")
def list_tags_for_resource(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    tags = _tag_target(sandbox, params, "ListTagsForResource", write=False)
    return {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


# =========================================================================== provisioning
@_operation("ProvisionPermissionSet")
def provision_permission_set(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    target_type = params["TargetType"]
    target_id = params.get("TargetId")
    if target_type == "AWS_ACCOUNT":
        if not target_id:
            raise _invalid("TargetId is required when TargetType is AWS_ACCOUNT.")
        _check_account(sandbox, target_id)
        _guard_account(sandbox, "ProvisionPermissionSet", target_id)
        accounts = [target_id]
    else:
        target_id = None
        accounts = sorted(_index(_ic(sandbox)).accounts_by_ps.get(ps.arn, ()))
    _guard_permission_set(sandbox, "ProvisionPermissionSet", ps)
    request = _start_request(
        sandbox,
        "ProvisionPermissionSet",
        "provision",
        accounts,
        {"permission_set_arn": ps.arn, "target_type": target_type, "target_id": target_id},
        ps,
    )
    return {"PermissionSetProvisioningStatus": _provisioning_status(request)}


@_operation("DescribePermissionSetProvisioningStatus")
def describe_provisioning_status(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    request = _find_request(sandbox, params, "ProvisionPermissionSetRequestId", "provision")
    return {"PermissionSetProvisioningStatus": _provisioning_status(request)}


@_operation("ListPermissionSetProvisioningStatus")
def list_provisioning_status(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    items = [
        {"Status": r.status, "RequestId": r.request_id, "CreatedDate": r.created}
        for r in _list_requests(sandbox, params, "provision")
    ]
    page, token = _page("ListPermissionSetProvisioningStatus", items, params)
    return _with_token({"PermissionSetsProvisioningStatus": page}, token)


@_operation("ListPermissionSetsProvisionedToAccount")
def list_permission_sets_provisioned_to_account(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    _check_instance(sandbox, params)
    account_id = params["AccountId"]
    wanted = params.get("ProvisioningStatus")
    provisioned = _index(_ic(sandbox)).ps_by_account.get(account_id, set())
    arns = [
        arn
        for arn in _ic(sandbox).permission_sets
        if arn in provisioned
        and (
            wanted is None
            or (wanted == "LATEST_PERMISSION_SET_PROVISIONED") == _is_latest(sandbox, account_id, arn)
        )
    ]
    page, token = _page("ListPermissionSetsProvisionedToAccount", arns, params)
    return _with_token({"PermissionSets": page}, token)


@_operation("ListAccountsForProvisionedPermissionSet")
def list_accounts_for_provisioned_permission_set(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    wanted = params.get("ProvisioningStatus")
    accounts = sorted(
        acct
        for acct in _index(_ic(sandbox)).accounts_by_ps.get(ps.arn, ())
        if wanted is None
        or (wanted == "LATEST_PERMISSION_SET_PROVISIONED") == _is_latest(sandbox, acct, ps.arn)
    )
    page, token = _page("ListAccountsForProvisionedPermissionSet", accounts, params)
    return _with_token({"AccountIds": page}, token)


# =========================================================================== account assignments
def _assignment_request(sandbox: Sandbox, params: dict[str, Any], operation: str, kind: str) -> AsyncRequest:
    ps = _permission_set(sandbox, params)
    account_id = params["TargetId"]
    _check_account(sandbox, account_id)
    principal_type, principal_id = params["PrincipalType"], params["PrincipalId"]
    if kind == "create_assignment" and not _principal_exists(sandbox, principal_type, principal_id):
        raise _not_found(f"{principal_type.title()} {principal_id} does not exist in identity store.")
    _guard_account(sandbox, operation, account_id)
    _guard_permission_set(sandbox, operation, ps)
    return _start_request(
        sandbox,
        operation,
        kind,
        [account_id],
        {
            "account_id": account_id,
            "permission_set_arn": ps.arn,
            "principal_type": principal_type,
            "principal_id": principal_id,
        },
        ps,
    )


@_operation("CreateAccountAssignment")
def create_account_assignment(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    request = _assignment_request(sandbox, params, "CreateAccountAssignment", "create_assignment")
    return {"AccountAssignmentCreationStatus": _assignment_status(request)}


@_operation("DeleteAccountAssignment")
def delete_account_assignment(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    request = _assignment_request(sandbox, params, "DeleteAccountAssignment", "delete_assignment")
    return {"AccountAssignmentDeletionStatus": _assignment_status(request)}


@_operation("DescribeAccountAssignmentCreationStatus")
def describe_assignment_creation_status(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    request = _find_request(sandbox, params, "AccountAssignmentCreationRequestId", "create_assignment")
    return {"AccountAssignmentCreationStatus": _assignment_status(request)}


@_operation("DescribeAccountAssignmentDeletionStatus")
def describe_assignment_deletion_status(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    request = _find_request(sandbox, params, "AccountAssignmentDeletionRequestId", "delete_assignment")
    return {"AccountAssignmentDeletionStatus": _assignment_status(request)}


def _status_metadata(requests: list[AsyncRequest]) -> list[dict[str, Any]]:
    return [{"Status": r.status, "RequestId": r.request_id, "CreatedDate": r.created} for r in requests]


@_operation("ListAccountAssignmentCreationStatus")
def list_assignment_creation_status(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    items = _status_metadata(_list_requests(sandbox, params, "create_assignment"))
    page, token = _page("ListAccountAssignmentCreationStatus", items, params)
    return _with_token({"AccountAssignmentsCreationStatus": page}, token)


@_operation("ListAccountAssignmentDeletionStatus")
def list_assignment_deletion_status(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    items = _status_metadata(_list_requests(sandbox, params, "delete_assignment"))
    page, token = _page("ListAccountAssignmentDeletionStatus", items, params)
    return _with_token({"AccountAssignmentsDeletionStatus": page}, token)


def _assignment_sort_key(a: Assignment) -> tuple[str, str, str, str]:
    return a.account_id, a.permission_set_arn, a.principal_type, a.principal_id


@_operation("ListAccountAssignments")
def list_account_assignments(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    ps = _permission_set(sandbox, params)
    account_id = params["AccountId"]
    found = sorted(_index(_ic(sandbox)).assignments.get((account_id, ps.arn), ()), key=_assignment_sort_key)
    items = [
        {
            "AccountId": a.account_id,
            "PermissionSetArn": a.permission_set_arn,
            "PrincipalType": a.principal_type,
            "PrincipalId": a.principal_id,
        }
        for a in found
    ]
    page, token = _page("ListAccountAssignments", items, params)
    return _with_token({"AccountAssignments": page}, token)


@_operation("ListAccountAssignmentsForPrincipal")
def list_account_assignments_for_principal(sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    _check_instance(sandbox, params)
    if _delegated(sandbox):
        # Documented: "This action must be called from the management account".
        raise _access_denied(sandbox, "ListAccountAssignmentsForPrincipal", _ic(sandbox).instance_arn)
    account_filter = (params.get("Filter") or {}).get("AccountId")
    found = sorted(
        (
            a
            for a in _ic(sandbox).assignments
            if a.principal_id == params["PrincipalId"]
            and a.principal_type == params["PrincipalType"]
            and (account_filter is None or a.account_id == account_filter)
        ),
        key=_assignment_sort_key,
    )
    items = [
        {
            "AccountId": a.account_id,
            "PermissionSetArn": a.permission_set_arn,
            "PrincipalId": a.principal_id,
            "PrincipalType": a.principal_type,
        }
        for a in found
    ]
    page, token = _page("ListAccountAssignmentsForPrincipal", items, params)
    return _with_token({"AccountAssignments": page}, token)


# =========================================================================== in-process helpers (seeding)
def new_permission_set_arn(sandbox: Sandbox) -> str:
    """A fresh ``arn:aws:sso:::permissionSet/ssoins-<16>/ps-<16 hex>`` for the sandbox's instance."""
    ic = _ic(sandbox)
    while True:
        arn = f"arn:aws:sso:::permissionSet/{_instance_id(sandbox)}/ps-{sandbox.random_hex(16)}"
        if arn not in ic.permission_sets:
            return arn


def create_permission_set_direct(
    sandbox: Sandbox,
    name: str,
    *,
    description: str = "",
    session_duration: str = "PT1H",
    relay_state: str | None = None,
    managed_policies: Iterable[str] = (),
    customer_managed: Iterable[tuple[str, str]] = (),
    inline_policy: str | dict[str, Any] | None = None,
    boundary: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Create a permission set without HTTP (seed loaders); returns its ARN.

    ``managed_policies`` are ARNs (``arn:aws:iam::aws:policy/...``), ``customer_managed`` ``(name, path)``
    pairs, ``inline_policy`` a JSON string or dict, ``boundary`` the wire shape (``{"ManagedPolicyArn": ...}``
    or ``{"CustomerManagedPolicyReference": {"Name": ..., "Path": ...}}``). Raises ``ValueError`` for a
    duplicate name; the API's other validations are not repeated here (seeds are trusted).
    """
    with sandbox.lock:
        ic = _ic(sandbox)
        if any(ps.name == name for ps in ic.permission_sets.values()):
            raise ValueError(f"permission set {name!r} already exists")
        if isinstance(inline_policy, dict):
            inline_policy = json.dumps(inline_policy)
        ps = PermissionSet(
            arn=new_permission_set_arn(sandbox),
            name=name,
            description=description,
            session_duration=session_duration,
            relay_state=relay_state,
            managed_policies=list(managed_policies),
            customer_managed=[(n, p or "/") for n, p in customer_managed],
            inline_policy=inline_policy,
            boundary=boundary,
            tags=dict(tags or {}),
        )
        ic.permission_sets[ps.arn] = ps
        return ps.arn


def add_assignment_direct(
    sandbox: Sandbox, account_id: str, permission_set_arn: str, principal_type: str, principal_id: str
) -> Assignment:
    """Add an assignment without HTTP and provision the permission set's current version to the account.

    Does not check that the account or principal exist (seeds may create them afterwards).
    """
    with sandbox.lock:
        ic = _ic(sandbox)
        ps = ic.permission_sets[permission_set_arn]
        assignment = Assignment(account_id, permission_set_arn, principal_type, principal_id)
        _add_assignment(ic, assignment)
        _set_provisioned(ic, account_id, permission_set_arn, ps.version)
        return assignment


def provision_direct(
    sandbox: Sandbox, account_id: str, permission_set_arn: str, *, stale: bool = False
) -> None:
    """Mark a permission set provisioned to an account; ``stale=True`` records an outdated version."""
    with sandbox.lock:
        ic = _ic(sandbox)
        ps = ic.permission_sets[permission_set_arn]
        # Versions start at 1, so ``version - 1`` is never the latest one.
        _set_provisioned(ic, account_id, permission_set_arn, ps.version - 1 if stale else ps.version)


def find_permission_set_direct(sandbox: Sandbox, name: str) -> PermissionSet | None:
    """The permission set with this name, if any."""
    with sandbox.lock:
        return next((ps for ps in _ic(sandbox).permission_sets.values() if ps.name == name), None)
