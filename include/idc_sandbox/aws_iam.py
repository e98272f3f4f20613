"""Sandbox IAM (AWS query protocol, XML responses): ``GetPolicy`` for AWS managed policies.

The pipeline checks that every AWS managed policy named in kintone exists before attaching it
(``iam:GetPolicy`` on ``arn:aws:iam::aws:policy/<path/>Name``). The catalog is the real list of AWS
managed policies (names, paths, default version ids) extracted from moto's bundled data into
``managed_policies.json``; :func:`managed_policy_names` exposes it to others (e.g. "did you mean ...").

Wire format as botocore's ``iam/2010-05-08`` model and the real service: form-encoded ``Action``,
``Version``, ``PolicyArn``; success ``<GetPolicyResponse><GetPolicyResult><Policy>...``; errors
``<ErrorResponse><Error><Type>Sender|Receiver</Type><Code>..</Code><Message>..</Message></Error>
<RequestId>..</RequestId></ErrorResponse>`` with NoSuchEntity (404), InvalidInput (400), ValidationError
(400, missing parameter), InvalidAction (400), Throttling (400), ServiceFailure (500).
Customer managed policies (``arn:aws:iam::<account>:policy/...``) are not modelled: always NoSuchEntity.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import uuid
from importlib import resources
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

from idc_sandbox.core import Sandbox, ServiceError, aws_fault_guard

SERVICE = "iam"
XMLNS = "https://iam.amazonaws.com/doc/2010-05-08/"
AWS_MANAGED_PREFIX = "arn:aws:iam::aws:policy/"
# fault kind -> (error code, HTTP status, default message), in IAM's own codes
ERRORS: dict[str, tuple[str, int, str]] = {
    "throttle": ("Throttling", 400, "Rate exceeded"),
    "conflict": (
        "ConcurrentModification",
        409,
        "The request was rejected because multiple requests to change this object were submitted simultaneously.",
    ),
    "error5xx": ("ServiceFailure", 500, "The request processing has failed because of an unknown error."),
    "access_denied": ("AccessDenied", 403, "User is not authorized to perform this operation."),
    "outage": ("ServiceUnavailable", 503, "Service is unavailable (injected outage)."),
}
# AWS managed policies carry no creation date in the catalog; one fixed, plausible value for all.
_CATALOG_DATE = "2015-02-06T18:39:46Z"
_POLICY_ARN = re.compile(r"^arn:aws:iam::(aws|\d{12}):policy/((?:[A-Za-z0-9.,+@=_-]+/)*)([\w+=,.@-]{1,128})$")


@functools.lru_cache(maxsize=1)
def managed_policy_catalog() -> dict[str, dict[str, Any]]:
    """``{"<path without leading slash>Name": {"DefaultVersionId": "v3"}}``, e.g. ``job-function/ViewOnlyAccess``."""
    text = resources.files("idc_sandbox").joinpath("managed_policies.json").read_text(encoding="utf-8")
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def managed_policy_names() -> list[str]:
    """All AWS managed policy names with their path, sorted: ``["AdministratorAccess", "job-function/ViewOnlyAccess", ...]``."""
    return sorted(managed_policy_catalog())


def managed_policy_arn(key: str) -> str:
    """``job-function/ViewOnlyAccess`` -> ``arn:aws:iam::aws:policy/job-function/ViewOnlyAccess``."""
    return AWS_MANAGED_PREFIX + key


def policy_id(arn: str) -> str:
    """A stable IAM-looking policy id (``ANPA`` + 17 upper-case alphanumerics) derived from the ARN."""
    digest = hashlib.sha256(arn.encode()).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "ANPA" + "".join(alphabet[b % 32] for b in digest[:17])


# --------------------------------------------------------------------------- XML framing
def _xml_response(action: str, result_xml: str, request_id: str) -> Response:
    body = (
        f'<{action}Response xmlns="{XMLNS}">\n'
        f"  <{action}Result>\n{result_xml}  </{action}Result>\n"
        f"  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n"
        f"</{action}Response>\n"
    )
    return Response(body, status_code=200, media_type="text/xml", headers={"x-amzn-RequestId": request_id})


def error_response(err: ServiceError, request_id: str) -> Response:
    kind = "Receiver" if err.status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{XMLNS}">\n'
        f"  <Error>\n    <Type>{kind}</Type>\n    <Code>{escape(err.code)}</Code>\n"
        f"    <Message>{escape(err.message)}</Message>\n  </Error>\n"
        f"  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n"
    )
    return Response(
        body, status_code=err.status, media_type="text/xml", headers={"x-amzn-RequestId": request_id}
    )


def _policy_xml(arn: str, key: str, entry: dict[str, Any]) -> str:
    path_part, _, name = key.rpartition("/")
    path = f"/{path_part}/" if path_part else "/"
    fields = [
        ("PolicyName", name),
        ("DefaultVersionId", entry.get("DefaultVersionId", "v1")),
        ("PolicyId", policy_id(arn)),
        ("Path", path),
        ("Arn", arn),
        ("AttachmentCount", "0"),
        ("PermissionsBoundaryUsageCount", "0"),
        ("IsAttachable", "true"),
        ("CreateDate", entry.get("CreateDate", _CATALOG_DATE)),
        ("UpdateDate", entry.get("UpdateDate", entry.get("CreateDate", _CATALOG_DATE))),
    ]
    inner = "".join(f"      <{tag}>{escape(str(value))}</{tag}>\n" for tag, value in fields)
    return f"    <Policy>\n{inner}    </Policy>\n"


# --------------------------------------------------------------------------- operations
def get_policy(form: dict[str, str]) -> str:
    """The ``<Policy>`` XML of an AWS managed policy, or ServiceError."""
    arn = form.get("PolicyArn")
    if arn is None:
        raise ServiceError(
            "ValidationError",
            "1 validation error detected: Value null at 'policyArn' failed to satisfy constraint: "
            "Member must not be null",
            400,
        )
    if len(arn) < 20:
        raise ServiceError(
            "ValidationError",
            f"1 validation error detected: Value '{arn}' at 'policyArn' failed to satisfy constraint: "
            "Member must have length greater than or equal to 20",
            400,
        )
    match = _POLICY_ARN.match(arn)
    if not match:
        raise ServiceError("InvalidInput", f"ARN {arn} is not valid.", 400)
    owner, path, name = match.groups()
    key = f"{path}{name}"
    entry = managed_policy_catalog().get(key) if owner == "aws" else None
    if entry is None:
        raise ServiceError("NoSuchEntity", f"Policy {arn} was not found.", 404)
    return _policy_xml(arn, key, entry)


_ACTIONS = {"GetPolicy": get_policy}


async def handle_query(sandbox: Sandbox, form: dict[str, str]) -> Response:
    """One IAM query-protocol request (already form-decoded by the server)."""
    request_id = str(uuid.uuid4())
    action = form.get("Action", "")
    logged: dict[str, Any] = {"PolicyArn": form["PolicyArn"]} if "PolicyArn" in form else {}
    delay = sandbox.faults.latency_seconds(SERVICE, action or "*")
    if delay:
        await asyncio.sleep(delay)
    try:
        if not action:
            raise ServiceError("MissingAction", "Missing Action", 400)
        handler = _ACTIONS.get(action)
        if handler is None:
            raise ServiceError(
                "InvalidAction", f"Could not find operation {action} for version 2010-05-08", 400
            )
        aws_fault_guard(sandbox, SERVICE, action, ERRORS, family=SERVICE)
        result = handler(form)
    except ServiceError as err:
        sandbox.calls.record(SERVICE, action or "(missing)", logged, err.status, err.code)
        return error_response(err, request_id)
    sandbox.calls.record(SERVICE, action, logged, 200, None)
    return _xml_response(action, result, request_id)
