"""AWS answers that do not match the API model become a retried error, never a half-read.

botocore is lenient on purpose: a 200 whose body is not JSON parses as an empty result (its JSON parser
keeps unparseable text as ``{"message": ...}``, which no output shape reads), so a truncated
``ListAccountAssignments`` page would look like "no assignments" and a truncated ``ListAccountsForParent``
like an empty OU — a plan made from that deletes access. A body of the wrong shape (a string where the
model has a list) raises ``AttributeError`` from deep inside the parser, and a deeply nested one
``RecursionError``.

So every client checks each 200 answer against botocore's own output shape before botocore parses it
(``before-parse``) and turns a bad one into a 502 ``MalformedResponse`` error that names the service, the
operation and what is wrong, without quoting the body. This is botocore's own device for S3's "200 with
an error inside" (``handlers._handle_200_error``): rewrite the status in ``before-parse``, copy it to the
HTTP response in ``needs-retry``, and botocore's retry policy then retries it like any 5xx and, when the
attempts run out, raises a ``ClientError`` every caller already handles.

A flood of bad answers spends botocore's per-client retry quota like any 5xx flood does; calls then fail
fast with the same error instead of retrying.

Pages are bounded too (:func:`guard_pages`): a NextToken seen before, a run of empty pages or more pages
than any real organization needs ends the read with the same error instead of looping forever.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

MALFORMED = "MalformedResponse"
MALFORMED_STATUS = 502  # an upstream answered something that is not a valid answer: a bad gateway
MAX_BODY_BYTES = 16 * 1024 * 1024  # the largest real answer (a page of policies) is far below 1 MiB
MAX_PAGES = 10_000  # 2,000 accounts x 20 per page is 100 pages; 50,000 users x 100 is 500
MAX_EMPTY_PAGES = 100  # Organizations may answer an empty page with a NextToken, not a hundred in a row

_JSON_PROTOCOLS = ("json", "rest-json")


def problem_in_answer(operation_model: Any, status: int, body: bytes) -> str | None:
    """What is wrong with a successful answer, or None. Pure: the model, the status and the raw body."""
    if status >= 300 or operation_model.has_streaming_output:
        return None
    if len(body) > MAX_BODY_BYTES:
        return f"the body is {len(body):,} bytes, more than the {MAX_BODY_BYTES:,} any answer needs"
    protocol = operation_model.service_model.resolved_protocol
    shape = operation_model.output_shape
    if protocol in _JSON_PROTOCOLS:
        if not body.strip():
            return None if shape is None or not _body_members(shape) else "the body is empty"
        try:
            value = json.loads(body)
        except RecursionError:
            return "the body is nested deeper than any answer of the model"
        except ValueError as exc:
            return f"the body is not JSON ({type(exc).__name__} at byte {getattr(exc, 'pos', '?')} of {len(body):,})"
        if shape is None:
            return None
        return _shape_problem(shape, value, "", body_only=True)
    if protocol == "query":
        return _xml_problem(operation_model.name, body)
    return None


def _body_members(shape: Any) -> dict[str, Any]:
    """Members carried in a JSON body (rest-json also puts some in headers or the status code)."""
    return {name: m for name, m in shape.members.items() if not m.serialization.get("location")}


_SCALARS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "blob": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (int, float, str),
}


_CONTAINERS = {"structure": (dict, "an object"), "list": (list, "a list"), "map": (dict, "a map")}


def _shape_problem(shape: Any, value: Any, path: str, *, body_only: bool = False) -> str | None:
    """The first place where ``value`` does not have the type the model gives it (null is "absent")."""
    if value is None or shape.type_name == "document":
        return None
    kind = shape.type_name
    if kind in _CONTAINERS:
        want, said = _CONTAINERS[kind]
        if not isinstance(value, want):
            return f"{path or 'the body'} is {_what(value)}, the model says {said}"
        for child_shape, child, child_path in _children(shape, value, path, body_only):
            found = _shape_problem(child_shape, child, child_path)
            if found:
                return found
        return None
    allowed = _SCALARS.get(kind)
    if allowed is None or (isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))):
        return None
    return f"{path or 'the body'} is {_what(value)}, the model says {kind}"


def _children(shape: Any, value: Any, path: str, body_only: bool) -> Iterator[tuple[Any, Any, str]]:
    """(shape, value, path) of each member, item or map value present in ``value``."""
    if shape.type_name == "list":
        for i, item in enumerate(value):
            yield shape.member, item, f"{path}[{i}]"
    elif shape.type_name == "map":
        for key, item in value.items():
            yield shape.value, item, f"{path}[{key[:40]!r}]"
    else:
        members = _body_members(shape) if body_only else shape.members
        for name, member in members.items():
            key = member.serialization.get("name", name)
            if key in value:
                yield member, value[key], f"{path}.{key}" if path else key


def _what(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _xml_problem(operation: str, body: bytes) -> str | None:
    """Query protocol (IAM): well-formed XML whose root is ``<{Op}Response>`` holding ``<{Op}Result>``."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        return f"the body is not XML ({exc})"
    if _local(root.tag) != f"{operation}Response":
        return f"the XML root is <{_local(root.tag)[:60]}>, the model says <{operation}Response>"
    if not any(_local(child.tag) == f"{operation}Result" for child in root):
        return f"the XML has no <{operation}Result>"
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def malformed_error(service: str, operation: str, detail: str) -> ClientError:
    """The error a malformed answer ends in (what botocore raises once its retries are spent)."""
    return ClientError(
        {
            "Error": {"Code": MALFORMED, "Message": f"{service} {operation} answered badly: {detail}"},
            "ResponseMetadata": {"HTTPStatusCode": MALFORMED_STATUS},
        },
        operation,
    )


def _check_answer(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """``before-parse``: a bad 200 becomes a 502 ``MalformedResponse`` in the service's error format."""
    problem = problem_in_answer(operation_model, response_dict["status_code"], response_dict["body"] or b"")
    if problem is None:
        return
    service = operation_model.service_model.service_id.hyphenize()
    message = f"{service} {operation_model.name} answered HTTP 200 badly: {problem}"
    response_dict["status_code"] = MALFORMED_STATUS
    headers = response_dict["headers"]
    for name in list(headers):
        if name.lower() in ("x-amzn-errortype", "content-type"):
            del headers[name]
    if operation_model.service_model.resolved_protocol == "query":
        response_dict["body"] = (
            "<ErrorResponse><Error><Type>Receiver</Type>"
            f"<Code>{MALFORMED}</Code><Message>{_xml_text(message)}</Message>"
            "</Error><RequestId>none</RequestId></ErrorResponse>"
        ).encode()
    else:
        headers["x-amzn-ErrorType"] = MALFORMED
        response_dict["body"] = json.dumps({"__type": MALFORMED, "message": message}).encode()


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sync_status(response: Any = None, **_: Any) -> None:
    """``needs-retry``: give the HTTP response the status ``before-parse`` chose, so botocore retries it."""
    if response is None:
        return
    http_response, parsed = response
    status = (parsed or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", http_response.status_code)
    if http_response.status_code != status:
        http_response.status_code = status


def check_answers(client: Any) -> None:
    """Register the checks on one boto3 client. ``needs-retry.<service>.*`` is more specific than the
    ``needs-retry.<service>`` of botocore's retry handler, so the status is synced before it decides."""
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"before-parse.{service}.*", _check_answer)
    client.meta.events.register_first(f"needs-retry.{service}.*", _sync_status)


def guard_pages(
    pages: Iterable[dict[str, Any]],
    service: str,
    operation: str,
    *,
    token_key: str = "NextToken",
    items_key: str | None = None,
    max_pages: int = MAX_PAGES,
    max_empty: int = MAX_EMPTY_PAGES,
) -> Iterator[dict[str, Any]]:
    """The pages as they come, ended by a ``MalformedResponse`` error when the service loops: a NextToken
    it sent before (botocore only notices the same token twice in a row), more than ``max_empty`` empty
    pages in a row or more than ``max_pages`` pages in all."""
    seen: set[str] = set()
    empty = 0
    for n, page in enumerate(pages, start=1):
        yield page
        token = page.get(token_key)
        if not token:
            return
        empty = empty + 1 if items_key is not None and not page.get(items_key) else 0
        if token in seen:
            raise malformed_error(
                service, operation, f"page {n} sent a {token_key} it had sent before (a loop)"
            )
        if empty > max_empty:
            raise malformed_error(
                service, operation, f"{empty} empty pages in a row, each with a {token_key}"
            )
        if n >= max_pages:
            raise malformed_error(service, operation, f"more than {max_pages:,} pages")
        seen.add(str(token))
