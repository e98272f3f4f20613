"""The hostile-input catalog, AWS side (issue 14): every AWS operation the code calls, answered by a crafted
server over real HTTP through the real boto3 clients (``IdcClients``, so with the pipeline's own checks).

A truncated, HTML, mistyped, huge or absurdly nested 200 must end in a ``MalformedResponse`` error that
names the service and the operation, after botocore's retries, without quoting the body — never in a
result that looks like an empty page. A service whose NextToken loops must end the read, not spin.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError

from idc_sync import aws_responses
from idc_sync.aws_clients import IdcClients, snake_case
from idc_sync.snapshot import paginate
from tests.component.hostile_server import Answer, HostileServer
from tests.unit.test_iam_policy import SERVICES, used_actions

RETRIES = 1  # botocore's ``retries.max_attempts`` counts retries: 1 + 1 requests (each retry waits)
PREFIX_SERVICE = {prefix: service for service, prefix in SERVICES.items()}
ATTR = {"sso-admin": "sso_admin", "access-analyzer": "accessanalyzer"}
SECRET_IN_BODY = "hostile-body-SECRET"


def _operations() -> list[tuple[str, str]]:
    """(botocore service, operation) for every operation the code can call."""
    out = []
    for action in sorted(used_actions()):
        prefix, op = action.split(":")
        out.append((PREFIX_SERVICE[prefix], op))
    return out


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def _shared() -> Iterator[HostileServer]:
    s = HostileServer()
    yield s
    s.close()


@pytest.fixture
def server(_shared: HostileServer) -> HostileServer:
    """One server for the module; each test gets it with no routes and no counts."""
    _shared.routes.clear()
    _shared.counts.clear()
    return _shared


# One boto3 session for the module (it caches the service models); clients are built per test because
# botocore's retry quota is per client and 100 malformed answers would spend a shared client's.
SESSION = boto3.Session(aws_access_key_id="AKIDHOSTILE", aws_secret_access_key="x", region_name="us-east-1")


def _clients(server: HostileServer) -> IdcClients:
    return IdcClients.from_session(
        SESSION,
        endpoint_url=server.url,
        retry_config={"mode": "standard", "max_attempts": RETRIES},
        max_rps={k: None for k in ("sso_admin", "identitystore", "organizations", "iam", "accessanalyzer")},
    )


def _client(clients: IdcClients, service: str) -> Any:
    return getattr(clients, ATTR.get(service, service.replace("-", "_")))


def _minimal(shape: Any) -> Any:
    """The smallest value botocore's parameter validation accepts for ``shape``."""
    kind = shape.type_name
    if kind == "structure" and shape.is_tagged_union:
        name, member = next(iter(shape.members.items()))  # a union takes exactly one member
        return {name: _minimal(member)}
    if kind == "structure":
        return {name: _minimal(shape.members[name]) for name in shape.required_members}
    if kind == "list":
        return [_minimal(shape.member) for _ in range(shape.metadata.get("min", 0))]
    if kind == "map":
        return {}
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind == "boolean":
        return False
    return "x" * max(1, shape.metadata.get("min", 1))


def _call(clients: IdcClients, service: str, op: str) -> Any:
    model = botocore.session.get_session().get_service_model(service).operation_model(op)
    params = _minimal(model.input_shape) if model.input_shape is not None else {}
    return getattr(_client(clients, service), snake_case(op))(**params)


def _serve(server: HostileServer, answer: Callable[[int], Answer]) -> None:
    for path in ("POST /", "POST /policy/validation", "GET /"):
        server.routes[path] = answer


def _requests(server: HostileServer) -> int:
    return sum(server.counts.values())


def _first_body_member(service: str, op: str) -> tuple[str, Any] | None:
    shape = botocore.session.get_session().get_service_model(service).operation_model(op).output_shape
    if shape is None:
        return None
    for name, member in shape.members.items():
        if not member.serialization.get("location"):
            return member.serialization.get("name", name), member
    return None


def _mistyped(service: str, op: str) -> bytes | None:
    found = _first_body_member(service, op)
    if found is None:
        return None
    key, member = found
    wrong: Any = [SECRET_IN_BODY] if member.type_name == "string" else SECRET_IN_BODY
    return json.dumps({key: wrong}).encode()


def _expect_malformed(server: HostileServer, clients: IdcClients, service: str, op: str) -> ClientError:
    with pytest.raises(ClientError) as exc:
        _call(clients, service, op)
    err = exc.value
    assert err.response["Error"]["Code"] == aws_responses.MALFORMED, err
    message = err.response["Error"]["Message"]
    assert service in message and op in message, message
    assert SECRET_IN_BODY not in str(err) and "Bad gateway" not in str(err)
    assert _requests(server) == 1 + RETRIES, "a malformed answer is retried like a 5xx, then given up"
    return err


def test_the_catalog_covers_every_aws_service_the_code_uses() -> None:
    assert {s for s, _ in OPERATIONS} == set(SERVICES)
    assert len(OPERATIONS) >= 35
    assert {s for _, s, _, _ in JSON_CASES} | {"iam"} == set(SERVICES)


def _json_cases() -> list[tuple[str, str, str, bytes]]:
    """(kind, service, operation, body) for every JSON operation; mistyped only where the answer has
    a body member (writes such as DeletePermissionSet answer an empty object)."""
    out = []
    for service, op in OPERATIONS:
        if service == "iam":
            continue
        out += [
            ("truncated JSON", service, op, b'{"AccountAssignments": [{"AccountId": "1111'),
            ("HTML with 200", service, op, b"<html><body>Bad gateway</body></html>"),
            ("JSON list instead of an object", service, op, json.dumps([SECRET_IN_BODY]).encode()),
        ]
        mistyped = _mistyped(service, op)
        if mistyped is not None:
            out.append(("mistyped member", service, op, mistyped))
    return out


JSON_CASES = _json_cases()


@pytest.mark.parametrize(
    ("kind", "service", "op", "body"), JSON_CASES, ids=[f"{k}-{s}:{o}" for k, s, o, _ in JSON_CASES]
)
def test_a_malformed_aws_answer_is_a_retried_error_never_an_empty_result(
    server: HostileServer, kind: str, service: str, op: str, body: bytes
) -> None:
    _serve(server, lambda _n: (200, {"Content-Type": "application/x-amz-json-1.1"}, body))
    err = _expect_malformed(server, _clients(server), service, op)
    assert "HTTP 200" in err.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("truncated XML", b"<GetPolicyResponse><GetPolicyResult><Policy><Arn>arn:aws"),
        ("HTML with 200", b"<html><body>Bad gateway</body></html>"),
        ("XML of another operation", b"<ListUsersResponse><ListUsersResult/></ListUsersResponse>"),
        ("not XML at all", b'{"Policy": {}}'),
    ],
)
def test_a_malformed_iam_answer_is_a_retried_error(server: HostileServer, kind: str, body: bytes) -> None:
    _serve(server, lambda _n: (200, {"Content-Type": "text/xml"}, body))
    _expect_malformed(server, _clients(server), "iam", "GetPolicy")


def test_a_huge_answer_is_refused(server: HostileServer) -> None:
    huge = json.dumps({"AccountAssignments": [], "pad": "x" * (aws_responses.MAX_BODY_BYTES + 1)}).encode()
    _serve(server, lambda _n: (200, {}, huge))
    err = _expect_malformed(server, _clients(server), "sso-admin", "ListAccountAssignments")
    assert "bytes" in err.response["Error"]["Message"]


def test_an_absurdly_nested_answer_is_refused_not_a_recursion_error(server: HostileServer) -> None:
    deep = b'{"Accounts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _serve(server, lambda _n: (200, {}, deep))
    _expect_malformed(server, _clients(server), "organizations", "ListAccounts")


def test_a_malformed_answer_that_recovers_is_read_normally(server: HostileServer) -> None:
    good = json.dumps({"Accounts": [{"Id": "111111111111", "Name": "a"}]}).encode()
    _serve(server, lambda n: (200, {}, b'{"Accounts": [' if n == 0 else good))
    assert _call(_clients(server), "organizations", "ListAccounts")["Accounts"][0]["Id"] == "111111111111"
    assert _requests(server) == 2


def test_a_good_answer_with_members_the_model_does_not_know_passes(server: HostileServer) -> None:
    body = {"Accounts": [{"Id": "111111111111", "Future": {"x": [1]}}], "NewField": 3, "NextToken": None}
    _serve(server, lambda _n: (200, {}, json.dumps(body).encode()))
    assert _call(_clients(server), "organizations", "ListAccounts")["Accounts"][0]["Id"] == "111111111111"


def test_error_answers_are_left_to_botocore(server: HostileServer) -> None:
    _serve(server, lambda _n: (400, {}, b'{"__type": "ValidationException", "message": "no"}'))
    with pytest.raises(ClientError) as exc:
        _call(_clients(server), "sso-admin", "ListInstances")
    assert exc.value.response["Error"]["Code"] == "ValidationException"


# ---------------------------------------------------------------------------------------------- pages
def _pages(tokens: Callable[[int], str | None], items: Callable[[int], list[dict[str, Any]]]) -> Any:
    def answer(n: int) -> Answer:
        body: dict[str, Any] = {"Accounts": items(n)}
        token = tokens(n)
        if token:
            body["NextToken"] = token
        return 200, {}, json.dumps(body).encode()

    return answer


def _account(n: int) -> list[dict[str, Any]]:
    return [{"Id": f"{n:012d}", "Name": f"a{n}"}]


@pytest.mark.parametrize(
    ("kind", "tokens", "items", "most_requests"),
    [
        ("the same NextToken again", lambda _n: "same", _account, 2),
        ("a cycle of two NextTokens", lambda n: "AB"[n % 2], _account, 3),
        ("empty pages with new NextTokens forever", lambda n: f"t{n}", lambda _n: [], 101),
    ],
)
def test_a_looping_paginated_read_ends_with_a_clear_error(
    server: HostileServer,
    kind: str,
    tokens: Callable[[int], str | None],
    items: Callable[[int], list[dict[str, Any]]],
    most_requests: int,
) -> None:
    _serve(server, _pages(tokens, items))
    clients = _clients(server)
    with pytest.raises(ClientError) as exc:
        list(paginate(clients.organizations, "list_accounts", "Accounts"))
    assert exc.value.response["Error"]["Code"] == aws_responses.MALFORMED
    assert "organizations ListAccounts" in exc.value.response["Error"]["Message"]
    assert _requests(server) == most_requests


def test_pages_end_at_the_page_limit() -> None:
    pages = ({"Accounts": [{"Id": str(n)}], "NextToken": f"t{n}"} for n in range(10**9))
    guarded = aws_responses.guard_pages(
        pages, "organizations", "ListAccounts", items_key="Accounts", max_pages=50
    )
    with pytest.raises(ClientError, match="more than 50 pages"):
        for _ in guarded:
            pass


def test_a_few_empty_pages_with_a_token_are_followed_to_the_end(server: HostileServer) -> None:
    """Organizations does answer empty pages with a NextToken now and then: they are not a loop."""
    _serve(server, _pages(lambda n: f"t{n}" if n < 5 else None, lambda n: _account(n) if n in (0, 5) else []))
    ids = [a["Id"] for a in paginate(_clients(server).organizations, "list_accounts", "Accounts")]
    assert ids == ["000000000000", "000000000005"]
