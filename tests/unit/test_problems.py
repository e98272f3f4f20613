"""The producers against the registry (idc_sync.problems): bad records, bad permission sets, a plan full of
problems and a failed run, all through the real code. Every problem they emit has params that fit its
code's model (so it is rendered from its template, never the English fallback), and an admin code never
lands on a record. Codes no producer here reaches are listed, so a new code is a decision, not a gap."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest

from idc_sync import messages
from idc_sync.config import SyncConfig
from idc_sync.isolation import run_isolated
from idc_sync.model import (
    RECORD_ID_TAG,
    Account,
    AssignmentSpec,
    CustomerPolicyRef,
    DesiredState,
    ObservedState,
    OpResult,
    OrganizationalUnit,
    OrgSnapshot,
    PermissionsBoundary,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    Problem,
    RecordRef,
    Skipped,
)
from idc_sync.outcome import RunFacts, run_problems
from idc_sync.plan import compute_plan
from idc_sync.problems import REGISTRY
from idc_sync.records import parse_desired_state
from idc_sync.scim import escalate_missing_principals
from idc_sync.validation import validate_permission_sets
from tests.unit.fakes import FakeAnalyzer, FakeClients, FakeIam

CONFIG = SyncConfig()
TODAY = dt.date(2030, 1, 29)
MGMT, A1, A2, SUSPENDED = "111111111111", "200000000001", "200000000002", "200000000004"
PROD, EMPTY = "ou-ab12-aaaaaaaa", "ou-ab12-eeeeeeee"
RO = "arn:aws:iam::aws:policy/ReadOnlyAccess"
TYPO = "arn:aws:iam::aws:policy/ReadOnlyAcess"
GOOD_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
)


# --------------------------------------------------------------------------- records.py
def _field(kind: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "value": value}


def _system(rid: int) -> dict[str, Any]:
    return {
        "$id": _field("__ID__", str(rid)),
        "$revision": _field("__REVISION__", "1"),
        "Updated_by": _field("MODIFIER", {"code": "alice", "name": "Alice"}),
    }


def _ps(rid: int, name: str, **values: Any) -> dict[str, Any]:
    f = CONFIG.permission_set_fields
    rows = [
        {
            "id": str(i),
            "value": {f.cmp_name: _field("SINGLE_LINE_TEXT", n), f.cmp_path: _field("SINGLE_LINE_TEXT", p)},
        }
        for i, (n, p) in enumerate(values.pop("cmp", []))
    ]
    record = {
        **_system(rid),
        f.name: _field("SINGLE_LINE_TEXT", name),
        f.description: _field("MULTI_LINE_TEXT", values.get("description", "")),
        f.session_duration: _field("DROP_DOWN", values.get("session_duration", "PT1H")),
        f.managed_policies: _field("MULTI_LINE_TEXT", values.get("managed_policies", "")),
        f.customer_managed_policies: _field("SUBTABLE", rows),
        f.inline_policy: _field("MULTI_LINE_TEXT", ""),
        f.permissions_boundary: _field("SINGLE_LINE_TEXT", values.get("permissions_boundary", "")),
        f.relay_state: _field("SINGLE_LINE_TEXT", values.get("relay_state", "")),
        f.owners: _field("USER_SELECT", []),
    }
    if values.get("broken"):
        record[f.description] = {"type": "MULTI_LINE_TEXT"}  # no value at all: not even empty
    return record


def _asg(rid: int, **values: Any) -> dict[str, Any]:
    f = CONFIG.assignment_fields
    return {
        **_system(rid),
        f.principal_type: _field("RADIO_BUTTON", values.get("principal_type", "USER")),
        f.users: _field("USER_SELECT", [{"code": u, "name": u} for u in values.get("users", ["alice"])]),
        f.group_name: _field("SINGLE_LINE_TEXT", values.get("group_name", "")),
        f.targets: _field("MULTI_LINE_TEXT", values.get("targets", A1)),
        f.permission_set: _field("SINGLE_LINE_TEXT", values.get("permission_set", "Dev")),
        f.expires_on: _field("DATE", values.get("expires_on", "")),
        f.reason: _field("MULTI_LINE_TEXT", ""),
    }


def record_problems() -> list[Problem]:
    ps = [
        _ps(
            1,
            "",
            description="日本語の説明",
            session_duration="PT13H",
            managed_policies="arn:aws:iam::1:policy/X",
            cmp=[("a b", "/"), ("", "/team/")],
            permissions_boundary="customer:a b",
            relay_state="https://x/日本",
        ),
        _ps(2, "Dev"),
        _ps(3, "dev"),
        _ps(4, "Broken", broken=True),
    ]
    asg = [
        _asg(10, principal_type="ROLE", targets="", permission_set="", expires_on="tomorrow"),
        _asg(11, users=[], group_name="Admins"),
        _asg(12, principal_type="GROUP", group_name="", targets=f"12345\n{A1}"),
        _asg(13),
        _asg(14),  # the same assignment as record 13
    ]
    problems = parse_desired_state(ps, asg, CONFIG).problems
    bad_template = CONFIG.model_copy(update={"user_name_template": "{oops}"})
    problems += parse_desired_state([], [_asg(20)], bad_template).problems
    no_field = _asg(21)
    del no_field[CONFIG.assignment_fields.expires_on]
    problems += parse_desired_state([], [no_field], CONFIG).problems
    return problems


# --------------------------------------------------------------------------- validation.py
def _findings() -> list[dict[str, Any]]:
    """One Access Analyzer finding of each type."""
    return [
        {
            "findingType": kind,
            "issueCode": f"ISSUE_{kind}",
            "findingDetails": "details",
            "learnMoreLink": "https://docs.aws.amazon.com/x",
            "locations": [{"span": {"start": {"line": 1, "column": 2}}}],
        }
        for kind in ("ERROR", "SECURITY_WARNING", "WARNING", "SUGGESTION")
    ]


def _spec(name: str, rid: int, **kw: Any) -> PermissionSetSpec:
    record = RecordRef(app="permission_sets", app_id="1", record_id=str(rid))
    return PermissionSetSpec.model_validate({"name": name, "record": record, **kw})


def validation_problems() -> list[Problem]:
    specs = [
        _spec("a b", 1, description="x" * 701, session_duration="PT13H", relay_state="x" * 300),
        _spec("Jp", 2, description="日本", relay_state="https://x/<y>", inline_policy="日本" + GOOD_POLICY),
        _spec("dev", 3),
        _spec("Dev", 4, inline_policy=" " * 40_000 + GOOD_POLICY),
        _spec("Deep", 5, inline_policy="[" * 100),
        _spec("NotJson", 6, inline_policy="{"),
        _spec("List", 7, inline_policy="[]"),
        _spec("Empty", 8, inline_policy="{}"),
        _spec(
            "Statements",
            9,
            inline_policy=json.dumps(
                {
                    "Version": "2024-01-01",
                    "Statement": [
                        1,
                        {"Effect": "allow", "Action": "s3:*", "NotAction": "x"},
                        {"Effect": "Allow"},
                    ],
                }
            ),
        ),
        _spec("Many", 10, managed_policies=[f"arn:aws:iam::aws:policy/P{i}" for i in range(21)]),
        _spec("Some", 11, managed_policies=[f"arn:aws:iam::aws:policy/P{i}" for i in range(11)]),
        _spec(
            "Refs",
            12,
            managed_policies=[RO, RO, "arn:aws:iam::1:policy/X", TYPO],
            customer_managed_policies=[CustomerPolicyRef(name="a b", path="x")],
            permissions_boundary=PermissionsBoundary(
                managed_policy_arn="arn:aws:iam::aws:policy/NoSuchBoundary"
            ),
        ),
        _spec("Analyzed", 13, inline_policy=GOOD_POLICY),
        _spec(
            "Crowded",
            14,
            inline_policy=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}] * 25}
            ),
        ),
    ]
    desired = DesiredState(permission_sets={s.name: s for s in specs})
    problems = validate_permission_sets(
        desired, FakeClients(iam=FakeIam({RO}), accessanalyzer=FakeAnalyzer([_findings()])), CONFIG
    ).problems
    one = DesiredState(permission_sets={"Refs": specs[11], "Analyzed": specs[12]})
    for clients in (
        FakeClients(iam=FakeIam(set(), down=True), accessanalyzer=FakeAnalyzer(always="ValidationException")),
        FakeClients(iam=FakeIam({RO}), accessanalyzer=FakeAnalyzer(always="AccessDeniedException")),
    ):
        problems += validate_permission_sets(one, clients, CONFIG).problems
    return problems


# --------------------------------------------------------------------------- plan.py, scim.py
def _asg_spec(rid: int, target: str, ps: str = "Dev", name: str = "alice", **kw: Any) -> AssignmentSpec:
    record = RecordRef(
        app="assignments", app_id="2", record_id=str(rid), created_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    )
    return AssignmentSpec(
        principal_type="USER", principal_name=name, target=target, permission_set_name=ps, record=record, **kw
    )


def _state(name: str, n: int, *, managed: bool = True, **kw: Any) -> PermissionSetState:
    tags = {CONFIG.ownership_tag_key: CONFIG.ownership_tag_value} if managed else {}
    return PermissionSetState.model_validate(
        {"arn": f"arn:aws:sso:::permissionSet/ssoins-1/ps-{n:016x}", "name": name, "managed": managed, **kw}
        | {"tags": {**tags, **kw.get("tags", {})}}
    )


def plan_problems() -> tuple[Plan, list[Problem]]:
    org = OrgSnapshot(
        management_account_id=MGMT,
        root_id="r-ab12",
        ous={
            PROD: OrganizationalUnit(id=PROD, parent_id="r-ab12"),
            EMPTY: OrganizationalUnit(id=EMPTY, parent_id="r-ab12"),
        },
        accounts={
            MGMT: Account(id=MGMT, parent_id="r-ab12"),
            A1: Account(id=A1, parent_id="r-ab12"),
            A2: Account(id=A2, parent_id=PROD),
            SUSPENDED: Account(id=SUSPENDED, parent_id=PROD, state="SUSPENDED"),
        },
    )
    observed = ObservedState(
        instance_arn="arn:aws:sso:::instance/ssoins-1",
        identity_store_id="d-1",
        org=org,
        permission_sets={
            "Dev": _state("Dev", 1),
            "Theirs": _state("Theirs", 2, managed=False),
            "Blocked": _state("Blocked", 3, provisioned_accounts=[MGMT]),
            "OldName": _state("OldName", 4, tags={RECORD_ID_TAG: "9"}),
        },
        principal_ids={"USER:alice": "u-alice"},
    )
    desired = DesiredState(
        permission_sets={
            name: _spec(name, rid)
            for name, rid in (("Dev", 1), ("Theirs", 2), ("Blocked", 3), ("NewName", 9))
        },
        assignments=[
            _asg_spec(10, MGMT),
            _asg_spec(11, "999999999999"),
            _asg_spec(12, SUSPENDED),
            _asg_spec(13, "ou-ab12-zzzzzzzz"),
            _asg_spec(14, EMPTY),
            _asg_spec(15, "not-a-target"),
            _asg_spec(16, A1, ps="Nope"),
            _asg_spec(17, A1, name="ghost"),
            _asg_spec(18, A2, expires_on=TODAY + dt.timedelta(days=1)),
            _asg_spec(19, A1, ps="OldName"),
        ],
    )
    plan, problems = compute_plan(desired, observed, CONFIG, today=TODAY)
    healthy = {"status": "healthy", "interval_minutes": 40}
    return plan, escalate_missing_principals(problems, healthy, dt.datetime(2030, 2, 1, tzinfo=dt.UTC))


# --------------------------------------------------------------------------- outcome.py, isolation.py
def run_level_problems(plan: Plan) -> list[Problem]:
    op = next(op for op in plan.operations if op.records)  # its first record hears of the failure
    facts = RunFacts(
        run_id="r1",
        plan=plan,
        results=[OpResult(key=op.key, kind=op.kind, status="failed", message="ConflictException: busy")],
        withheld=[Skipped(key=f"delete_assignment:{A1}:Dev:USER:bob", reason="guard")],
        failed_tasks=["snapshot_idc"],
        first_failure="snapshot_idc",
    )
    problems = run_problems(facts, None, facts.failed_tasks)

    def boom() -> None:
        raise RecursionError("maximum recursion depth exceeded")

    run_isolated(
        "validate",
        op.records[0],
        boom,
        on_error=problems.append,
        default=None,
        log=logging.getLogger("test"),
        params={"permission_set": "Dev"},
    )
    return problems


# --------------------------------------------------------------------------- the checks
@pytest.fixture(scope="module")
def emitted() -> list[Problem]:
    logging.disable(logging.CRITICAL)  # the isolated errors log tracebacks on purpose
    try:
        plan, planned = plan_problems()
        return [*record_problems(), *validation_problems(), *planned, *run_level_problems(plan)]
    finally:
        logging.disable(logging.NOTSET)


def test_producers_reach_every_registered_code(emitted: list[Problem]) -> None:
    codes = {p.code for p in emitted}
    assert codes == set(REGISTRY), sorted(set(REGISTRY) ^ codes)


def test_every_emitted_problem_has_the_params_of_its_code(emitted: list[Problem]) -> None:
    wrong = []
    for p in emitted:
        try:
            REGISTRY[p.code].parse(p.params)
        except ValueError as exc:
            wrong.append(f"{p.code} {p.params}: {exc}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_emitted_problem_is_rendered_from_its_template(emitted: list[Problem], language: str) -> None:
    marked = [p.model_copy(update={"message": "(fallback)"}) for p in emitted]
    fallback = [(p.code, p.params) for p in marked if messages.render_problem(p, language) == "(fallback)"]
    assert not fallback


def test_admin_codes_never_carry_a_record_and_severities_are_declared(emitted: list[Problem]) -> None:
    for p in emitted:
        spec = REGISTRY[p.code]
        assert p.record is None or spec.sink == "record", p.code
        assert p.severity in spec.severities, (p.code, p.severity)
