"""Unit tests of idc_sync.validation: local rules, GetPolicy/Access Analyzer (fakes and the sandbox), apply_validation."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from test_records import CONFIG, ps_record

from idc_sandbox.core import FaultRule, Sandbox
from idc_sync.aws_clients import DEFAULT_RETRIES, IdcClients
from idc_sync.config import SyncConfig
from idc_sync.model import (
    AssignmentOp,
    CustomerPolicyRef,
    DesiredState,
    OpKind,
    PermissionsBoundary,
    PermissionSetOp,
    PermissionSetSpec,
    Plan,
    ProvisionOp,
    RecordRef,
    Skipped,
    ValidationReport,
)
from idc_sync.records import parse_desired_state
from idc_sync.validation import (
    MAX_ANALYZER_FINDINGS,
    MAX_FINDINGS_PER_RECORD,
    apply_validation,
    managed_policy_catalog,
    suggest_managed_policies,
    validate_permission_sets,
)
from tests.unit.fakes import FakeAnalyzer, FakeClients, FakeIam, client_error

RO = "arn:aws:iam::aws:policy/ReadOnlyAccess"
VIEW = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
GOOD_INLINE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
    },
    indent=2,
)


def ref(record_id: str = "7") -> RecordRef:
    return RecordRef(app="permission_sets", app_id="1", record_id=record_id, mentions=("alice",))


def spec(name: str = "Dev", **kw: Any) -> PermissionSetSpec:
    kw.setdefault("record", ref())
    return PermissionSetSpec(name=name, **kw)


def local(*specs: PermissionSetSpec, only: set[str] | None = None) -> ValidationReport:
    desired = DesiredState(permission_sets={s.name: s for s in specs})
    return validate_permission_sets(desired, None, SyncConfig(), only=only)


def codes(report: ValidationReport) -> list[str]:
    return sorted(p.code for p in report.problems)


# --------------------------------------------------------------------------- local checks
def test_valid_permission_set_has_no_problems() -> None:
    report = local(
        spec(
            "Dev+Ops=,.@-_1",
            description="Developers (read only) - cafe\u00e9",
            session_duration="PT1H30M",
            relay_state="https://console.aws.amazon.com/ec2/home?region=ap-northeast-1#Instances:",
            managed_policies=[RO, VIEW],
            customer_managed_policies=[CustomerPolicyRef(name="Team.Policy", path="/team/a/")],
            inline_policy=GOOD_INLINE,
            permissions_boundary=PermissionsBoundary(managed_policy_arn=RO),
        )
    )
    assert report.problems == []
    assert report.blocked == []
    assert report.checked == 1


@pytest.mark.parametrize("name", ["a" * 33, "dev team", "開発", "dev/ops", "dev:ops"])
def test_invalid_names(name: str) -> None:
    report = local(spec(name))
    assert codes(report) == ["invalid_name"]
    problem = report.problems[0]
    assert problem.params["name"] == name and problem.params["max"] == 32
    assert problem.record == ref()
    assert report.blocked == [name]


def test_name_of_32_characters_is_fine() -> None:
    assert local(spec("a" * 32)).problems == []


def test_description_rules() -> None:
    report = local(spec("Long", description="x" * 701), spec("Jp", description="開発者用"))
    by_ps = {p.params["permission_set"]: p for p in report.problems}
    assert by_ps["Long"].code == "description_too_long" and by_ps["Long"].params["length"] == 701
    assert by_ps["Jp"].code == "description_invalid_characters" and "開" in str(
        by_ps["Jp"].params["characters"]
    )
    assert report.blocked == ["Jp", "Long"]
    assert local(spec(description="x" * 700)).problems == []


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("session_duration", "PT13H", "invalid_session_duration"),
        ("session_duration", "PT\uff14H", "invalid_session_duration"),
        ("relay_state", "https://x/" + "a" * 240, "invalid_relay_state"),
        ("relay_state", "https://console.aws.amazon.com/<script>", "invalid_relay_state"),
    ],
)
def test_session_duration_and_relay_state_are_told_once_by_records(field: str, value: str, code: str) -> None:
    """records.py checks these fields as typed and holds the record: the requester gets one message, and
    validation (which never sees the held set) does not check them a second time."""
    desired = parse_desired_state([ps_record(1, "Ops", **{field: value})], [], CONFIG)
    report = validate_permission_sets(desired, None, CONFIG)
    assert [p.code for p in [*desired.problems, *report.problems]] == [code]
    assert desired.held_permission_sets == ["Ops"] and report.checked == 0
    assert local(spec(**{field: value})).problems == []  # validation leaves these fields to records.py


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"Version": "2012-10-17", "Statement": [}', "inline_policy_not_json"),
        ('["not", "an", "object"]', "inline_policy_not_object"),
        (
            '{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
            "inline_policy_missing_version",
        ),
        (
            '{"Version": "2024-01-01", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
            "inline_policy_invalid_version",
        ),
        ('{"Version": "2012-10-17"}', "inline_policy_missing_statement"),
        ('{"Version": "2012-10-17", "Statement": []}', "inline_policy_missing_statement"),
        ('{"Version": "2012-10-17", "Statement": ["s3:*"]}', "inline_policy_invalid_statement"),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "allow", "Action": "s3:*", "Resource": "*"}]}',
            "inline_policy_invalid_effect",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Action": "s3:*", "Resource": "*"}]}',
            "inline_policy_invalid_effect",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}',
            "inline_policy_missing_action",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}]}',
            "inline_policy_action_and_notaction",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}',
            "inline_policy_missing_resource",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Sid": "読み取り", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
            "inline_policy_invalid_characters",
        ),
    ],
)
def test_inline_policy_shape(text: str, code: str) -> None:
    report = local(spec(inline_policy=text))
    assert codes(report) == [code]
    assert report.blocked == ["Dev"]


def test_inline_policy_not_json_reports_line_and_column() -> None:
    text = (
        '{\n  "Version": "2012-10-17",\n  "Statement": [\n    {"Effect": "Allow",, "Action": "s3:*"}\n  ]\n}'
    )
    [problem] = local(spec(inline_policy=text)).problems
    assert problem.code == "inline_policy_not_json"
    assert (problem.params["line"], problem.params["column"]) == (4, 24)
    assert "line 4, column 24" in problem.message


def test_inline_policy_statement_object_and_notaction_are_fine() -> None:
    text = '{"Version": "2008-10-17", "Statement": {"Effect": "Deny", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::b"}}'
    assert local(spec(inline_policy=text)).problems == []


def test_inline_policy_statement_label_uses_sid() -> None:
    text = '{"Version": "2012-10-17", "Statement": [{"Sid": "Ok", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Sid": "Bad", "Effect": "Permit", "Action": "s3:*", "Resource": "*"}]}'
    [problem] = local(spec(inline_policy=text)).problems
    assert problem.params["statement"] == "2 (Sid Bad)" and problem.params["value"] == "Permit"


def test_inline_policy_size_limits() -> None:
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/" + "k" * 60}
    big = json.dumps({"Version": "2012-10-17", "Statement": [statement] * 150})  # > 10,240 non-whitespace
    report = local(spec(inline_policy=big))
    assert codes(report) == ["inline_policy_too_large"]
    p = report.problems[0]
    assert int(p.params["non_whitespace"] or 0) > 10_240 and p.params["max_chars"] == 32_768
    padded = GOOD_INLINE.replace("{", "{" + " " * 33_000, 1)  # > 32,768 characters, few non-whitespace
    assert codes(local(spec(inline_policy=padded))) == ["inline_policy_too_large"]
    just_fits = GOOD_INLINE.replace("{", "{" + " " * (32_768 - len(GOOD_INLINE)), 1)
    assert len(just_fits) == 32_768 and local(spec(inline_policy=just_fits)).problems == []


def test_blank_inline_policy_is_no_policy() -> None:
    assert local(spec(inline_policy="  \n ")).problems == []


def test_policy_counts() -> None:
    managed = [f"arn:aws:iam::aws:policy/Policy{i}" for i in range(15)]
    customer = [CustomerPolicyRef(name=f"C{i}") for i in range(6)]
    report = local(spec("Many", managed_policies=managed, customer_managed_policies=customer))
    assert codes(report) == ["too_many_policies"]
    assert report.problems[0].params["count"] == 21
    report = local(spec("Eleven", managed_policies=managed[:11]))
    assert codes(report) == ["many_policies_quota"]
    assert report.problems[0].severity == "warning"
    assert report.blocked == []
    assert local(spec("Ten", managed_policies=managed[:10])).problems == []


def test_customer_policy_patterns_and_duplicates() -> None:
    report = local(
        spec(
            customer_managed_policies=[
                CustomerPolicyRef(name="bad name", path="/"),
                CustomerPolicyRef(name="Good", path="team"),
                CustomerPolicyRef(name="Good2", path="/team"),
                CustomerPolicyRef(name="Dup", path="/"),
                CustomerPolicyRef(name="Dup", path="/"),
            ],
            managed_policies=[RO, RO],
        )
    )
    assert codes(report) == [
        "duplicate_policy",
        "duplicate_policy",
        "invalid_customer_policy_name",
        "invalid_customer_policy_path",
        "invalid_customer_policy_path",
    ]
    assert {p.severity for p in report.problems if p.code == "duplicate_policy"} == {"warning"}


def test_invalid_managed_policy_arn_and_boundary() -> None:
    report = local(
        spec(
            managed_policies=["arn:aws:iam::123456789012:policy/Mine"],
            permissions_boundary=PermissionsBoundary(
                customer_managed_policy=CustomerPolicyRef(name="bad name")
            ),
        )
    )
    assert codes(report) == ["invalid_customer_policy_name", "invalid_managed_policy_arn"]


def test_names_differing_in_case() -> None:
    report = local(spec("dev"), spec("Dev"))
    assert codes(report) == ["duplicate_name"]
    assert report.problems[0].params == {"permission_set": "dev", "name": "dev", "other": "Dev"}


def test_only_limits_the_checked_sets() -> None:
    report = local(spec("bad name"), spec("Good", description="x" * 701), only={"Good"})
    assert report.checked == 1
    assert report.blocked == ["Good"]


def test_problem_messages_and_params_are_i18n_ready() -> None:
    report = local(spec(managed_policies=["arn:aws:iam::1:policy/X"], description="x" * 701))
    assert len(report.problems) == 2
    for p in report.problems:
        assert p.params["permission_set"] == "Dev"
        assert p.message.endswith(".")
        assert p.record is not None and p.record.key == "permission_sets:7"


# --------------------------------------------------------------------------- suggestions
def test_catalog_is_shipped() -> None:
    names = managed_policy_catalog()
    assert len(names) > 1000
    assert "ReadOnlyAccess" in names and "job-function/ViewOnlyAccess" in names
    assert not any(n.startswith(("#", "/")) for n in names)


@pytest.mark.parametrize(
    ("written", "first"),
    [
        ("ReadOnlyAcess", "ReadOnlyAccess"),
        ("readonlyaccess", "ReadOnlyAccess"),
        ("ViewOnlyAccess", "job-function/ViewOnlyAccess"),
        ("AdministratorAcces", "AdministratorAccess"),
        ("S3ReadOnlyAccess", "AmazonS3ReadOnlyAccess"),
        ("PowerUser", "PowerUserAccess"),
    ],
)
def test_suggestions(written: str, first: str) -> None:
    assert suggest_managed_policies(written)[0] == first


def test_no_suggestion_for_nonsense() -> None:
    assert suggest_managed_policies("zzzzqqqq") == []
    assert suggest_managed_policies("") == []


# --------------------------------------------------------------------------- AWS checks with fakes
def finding(ftype: str, issue: str, line: int = 3, column: int = 4) -> dict[str, Any]:
    return {
        "findingType": ftype,
        "issueCode": issue,
        "findingDetails": f"{issue} details.",
        "learnMoreLink": f"https://docs.aws.amazon.com/x#{issue}",
        "locations": [
            {
                "path": [{"value": "Statement"}],
                "span": {
                    "start": {"line": line, "column": column, "offset": 9},
                    "end": {"line": line, "column": column + 3, "offset": 12},
                },
            }
        ],
    }


def validate_fake(clients: FakeClients, *specs: PermissionSetSpec) -> ValidationReport:
    desired = DesiredState(permission_sets={s.name: s for s in specs})
    return validate_permission_sets(desired, clients, SyncConfig())  # type: ignore[arg-type]


def test_get_policy_called_once_per_distinct_arn_and_suggests() -> None:
    iam = FakeIam({RO, VIEW})
    typo = "arn:aws:iam::aws:policy/ReadOnlyAcess"
    report = validate_fake(
        FakeClients(iam=iam, accessanalyzer=FakeAnalyzer()),
        spec("A", managed_policies=[RO, typo]),
        spec(
            "B",
            managed_policies=[RO, VIEW, typo],
            permissions_boundary=PermissionsBoundary(managed_policy_arn=typo),
        ),
    )
    assert sorted(iam.calls) == sorted([RO, VIEW, typo])
    assert codes(report) == [
        "managed_policy_not_found",
        "managed_policy_not_found",
        "permissions_boundary_not_found",
    ]
    p = report.problems[0]
    assert p.params["policy"] == "ReadOnlyAcess" and p.params["arn"] == typo
    assert str(p.params["suggestions"]).startswith("ReadOnlyAccess")
    assert "does not exist. Did you mean ReadOnlyAccess" in p.message
    assert report.blocked == ["A", "B"]


def test_get_policy_unavailable_is_run_level_and_blocks_nothing() -> None:
    class DeniedIam(FakeIam):
        def get_policy(self, PolicyArn: str) -> dict[str, Any]:
            raise client_error("AccessDenied", status=403)

    report = validate_fake(
        FakeClients(iam=DeniedIam(set()), accessanalyzer=FakeAnalyzer()), spec(managed_policies=[RO])
    )
    assert codes(report) == ["managed_policy_check_unavailable"]
    assert report.problems[0].record is None and report.problems[0].severity == "warning"
    assert report.blocked == []


def test_access_analyzer_findings_map_to_problems_with_location() -> None:
    aa = FakeAnalyzer(
        pages=[
            [finding("ERROR", "INVALID_ACTION"), finding("SUGGESTION", "REDUNDANT_ACTION", 5, 0)],
            [
                finding("SECURITY_WARNING", "PASS_ROLE_WITH_STAR_IN_RESOURCE"),
                finding("WARNING", "MISSING_VERSION"),
            ],
        ]
    )
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa), spec(inline_policy=GOOD_INLINE)
    )
    assert len(aa.calls) == 2 and aa.calls[1]["nextToken"] == "1"
    assert aa.calls[0]["policyDocument"] == GOOD_INLINE  # the text as written: locations match it
    assert aa.calls[0]["policyType"] == "IDENTITY_POLICY"
    by_code = {p.code: p for p in report.problems}
    assert set(by_code) == {
        "policy_finding_error",
        "policy_finding_security_warning",
        "policy_finding_warning",
        "policy_finding_suggestion",
    }
    err = by_code["policy_finding_error"]
    assert err.severity == "error"
    assert (err.params["line"], err.params["column"]) == (3, 5)  # column shown 1-based
    assert "INVALID_ACTION" in err.message and "line 3, column 5" in err.message
    assert "https://docs.aws.amazon.com/x#INVALID_ACTION" in err.message
    assert by_code["policy_finding_security_warning"].severity == "error"
    assert by_code["policy_finding_warning"].severity == "warning"
    assert by_code["policy_finding_suggestion"].severity == "warning"
    assert by_code["policy_finding_suggestion"].params["line"] == 5
    assert report.blocked == ["Dev"]


def test_only_warnings_do_not_block() -> None:
    aa = FakeAnalyzer(
        pages=[[finding("WARNING", "MISSING_VERSION"), finding("SUGGESTION", "EMPTY_SID_VALUE")]]
    )
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa), spec(inline_policy=GOOD_INLINE)
    )
    assert report.blocked == [] and len(report.problems) == 2


def test_throttling_that_outlasts_botocore_is_not_retried_again() -> None:
    """botocore's retry config retries throttling (see the sandbox tests below); on top of it, validation
    would only multiply the attempts."""
    aa = FakeAnalyzer(errors=["ThrottlingException"])
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa), spec(inline_policy=GOOD_INLINE)
    )
    assert codes(report) == ["access_analyzer_unavailable"] and report.blocked == []
    assert len(aa.calls) == 1

    class ThrottledIam(FakeIam):
        def get_policy(self, PolicyArn: str) -> dict[str, Any]:
            self.calls.append(PolicyArn)
            raise client_error("Throttling")

    iam = ThrottledIam(set())
    report = validate_fake(FakeClients(iam=iam, accessanalyzer=FakeAnalyzer()), spec(managed_policies=[RO]))
    assert codes(report) == ["managed_policy_check_unavailable"] and report.blocked == []
    assert iam.calls == [RO]


def test_access_analyzer_unavailable_is_run_level() -> None:
    aa = FakeAnalyzer(errors=["ThrottlingException"] * 10)
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa),
        spec("A", inline_policy=GOOD_INLINE),
        spec("B", inline_policy=GOOD_INLINE),
    )
    [p] = report.problems
    assert p.code == "access_analyzer_unavailable" and p.record is None and p.severity == "warning"
    assert p.params["unchecked"] == 2
    assert report.blocked == []
    assert len(aa.calls) == 2  # one call each: retrying is botocore's


def test_local_errors_skip_access_analyzer() -> None:
    aa = FakeAnalyzer()
    validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa),
        spec(inline_policy='{"Version": "2012-10-17"}'),
        spec("NoInline"),
    )
    assert aa.calls == []


# --------------------------------------------------------------------------- AWS checks through the sandbox
@pytest.fixture
def sandbox_clients(sandbox_url: str) -> IdcClients:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return IdcClients.from_session(session, endpoint_url=sandbox_url, retries={"max_attempts": 1})


def test_sandbox_get_policy_and_access_analyzer(sandbox: Sandbox, sandbox_clients: IdcClients) -> None:
    pass_role = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"},
                {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
            ],
        },
        indent=2,
    )
    desired = DesiredState(
        permission_sets={
            "Good": spec("Good", managed_policies=[RO, VIEW], inline_policy=GOOD_INLINE),
            "Typo": spec("Typo", managed_policies=["arn:aws:iam::aws:policy/ReadOnlyAcess"]),
            "PassRole": spec("PassRole", inline_policy=pass_role),
        }
    )
    report = validate_permission_sets(desired, sandbox_clients, SyncConfig())
    assert report.blocked == ["PassRole", "Typo"], report.problems
    typo = next(p for p in report.problems if p.code == "managed_policy_not_found")
    assert "Did you mean ReadOnlyAccess" in typo.message
    sec = next(p for p in report.problems if p.code == "policy_finding_security_warning")
    assert sec.params["issue_code"] == "PASS_ROLE_WITH_STAR_IN_RESOURCE"
    # The finding points into the text as written: line 9 holds the iam:PassRole statement's Resource.
    line = int(sec.params["line"] or 0)
    assert "iam:PassRole" in "\n".join(pass_role.splitlines()[line - 3 : line]), (line, pass_role)
    assert str(sec.params["learn_more"]).startswith("https://")
    calls = sandbox.calls.counters()
    assert calls["iam"]["GetPolicy"] == 3  # RO, VIEW, the typo: once each
    assert calls["accessanalyzer"]["ValidatePolicy"] == 2


def test_sandbox_access_analyzer_denied_is_run_level(sandbox: Sandbox, sandbox_clients: IdcClients) -> None:
    sandbox.faults.add(FaultRule(service="accessanalyzer", kind="access_denied"))
    desired = DesiredState(permission_sets={"Good": spec("Good", inline_policy=GOOD_INLINE)})
    report = validate_permission_sets(desired, sandbox_clients, SyncConfig())
    [p] = report.problems
    assert p.code == "access_analyzer_unavailable" and "AccessDeniedException" in p.message
    assert report.blocked == []


@pytest.fixture
def default_clients(sandbox_url: str) -> IdcClients:
    """The clients as production builds them: botocore's standard retry mode, DEFAULT_RETRIES."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return IdcClients.from_session(session, endpoint_url=sandbox_url)


class _RecordedSleeps:
    """Stands in for the ``time`` module botocore's endpoint sleeps with between retries."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def botocore_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry back-off, recorded instead of slept."""
    import botocore.endpoint

    recorded = _RecordedSleeps()
    monkeypatch.setattr(botocore.endpoint, "time", recorded)
    return recorded.slept


def test_default_clients_retry_throttling_in_botocore(default_clients: IdcClients) -> None:
    for client in (default_clients.iam, default_clients.accessanalyzer):
        retries = client.meta.config.retries
        assert retries["mode"] == DEFAULT_RETRIES["mode"] in ("standard", "adaptive")  # both retry throttling
        assert retries["total_max_attempts"] == DEFAULT_RETRIES["max_attempts"] + 1 >= 3


def test_sandbox_access_analyzer_throttled_then_ok(
    sandbox: Sandbox, default_clients: IdcClients, botocore_sleeps: list[float]
) -> None:
    sandbox.faults.add(FaultRule(service="accessanalyzer", kind="throttle", count=2))
    desired = DesiredState(permission_sets={"Good": spec("Good", inline_policy=GOOD_INLINE)})
    report = validate_permission_sets(desired, default_clients, SyncConfig())
    assert report.problems == []
    assert sandbox.calls.counters()["accessanalyzer"]["ValidatePolicy"] == 3
    assert len(botocore_sleeps) == 2  # the two retries were botocore's


def test_sandbox_get_policy_throttled_then_ok(
    sandbox: Sandbox, default_clients: IdcClients, botocore_sleeps: list[float]
) -> None:
    sandbox.faults.add(FaultRule(service="iam", kind="throttle", count=2))
    desired = DesiredState(permission_sets={"Good": spec("Good", managed_policies=[RO])})
    report = validate_permission_sets(desired, default_clients, SyncConfig())
    assert report.problems == []
    assert sandbox.calls.counters()["iam"]["GetPolicy"] == 3
    assert len(botocore_sleeps) == 2  # the two retries were botocore's, no second layer


# --------------------------------------------------------------------------- apply_validation
USER_A: dict[str, Any] = {"principal_type": "USER", "principal_id": "a", "principal_name": "a"}


def test_apply_validation_moves_blocked_operations_to_skipped() -> None:
    asg_ref = RecordRef(app="assignments", app_id="2", record_id="40")
    bad = spec("Bad", record=ref("9"))
    ops = [
        PermissionSetOp(key="create_permission_set:Bad", kind=OpKind.CREATE_PERMISSION_SET, permission_set_name="Bad", spec=bad, records=[bad.record]),  # type: ignore[list-item]
        PermissionSetOp(key="update_permission_set:Good", kind=OpKind.UPDATE_PERMISSION_SET, permission_set_name="Good", spec=spec("Good")),
        ProvisionOp(key="provision_permission_set:Bad:1", permission_set_name="Bad", account_id="1"),
        AssignmentOp(key="create_assignment:1:Bad:USER:a", kind=OpKind.CREATE_ASSIGNMENT, permission_set_name="Bad", account_id="1", records=[asg_ref], **USER_A),
        AssignmentOp(key="create_assignment:1:Good:USER:a", kind=OpKind.CREATE_ASSIGNMENT, permission_set_name="Good", account_id="1", **USER_A),
        AssignmentOp(key="delete_assignment:2:Bad:USER:b", kind=OpKind.DELETE_ASSIGNMENT, permission_set_name="Bad", account_id="2", principal_type="USER", principal_id="b", principal_name="b"),
    ]  # fmt: skip
    plan = Plan(operations=ops, skipped=[Skipped(key="earlier", reason="x")], managed_assignment_count=12)
    report = local(bad.model_copy(update={"description": "x" * 701}), spec("Good"))
    assert report.blocked == ["Bad"]
    out = apply_validation(plan, report)
    assert [op.key for op in out.operations] == [
        "update_permission_set:Good",
        "create_assignment:1:Good:USER:a",
    ]
    assert [s.key for s in out.skipped] == [
        "earlier",
        "create_permission_set:Bad",
        "provision_permission_set:Bad:1",
        "create_assignment:1:Bad:USER:a",
        "delete_assignment:2:Bad:USER:b",
    ]
    skipped = {s.key: s for s in out.skipped}
    assert "description_too_long" in skipped["create_permission_set:Bad"].reason
    assert skipped["create_permission_set:Bad"].record == ref("9")
    assert skipped["create_assignment:1:Bad:USER:a"].record == asg_ref
    assert "existing assignments are kept" in skipped["delete_assignment:2:Bad:USER:b"].reason
    assert out.managed_assignment_count == 12
    assert len(plan.operations) == 6  # the input plan is not modified


def test_apply_validation_without_blocked_is_identity() -> None:
    op = AssignmentOp(
        key="k", kind=OpKind.CREATE_ASSIGNMENT, permission_set_name="X", account_id="1", **USER_A
    )
    plan = Plan(operations=[op])
    assert apply_validation(plan, ValidationReport()) == plan


# --------------------------------------------------------------------------- hostile records (issue 9)
DEEP = "[" * 3000  # 6 KB, under every size limit; json.loads raised RecursionError on it
HUGE = json.dumps({"Statement": [{}] * 10000})  # 10,000 statements: 30,008 findings before the cap


def test_deeply_nested_policy_is_a_clear_problem_not_a_recursion_error() -> None:
    report = local(spec("Deep", inline_policy=DEEP), spec("Good", inline_policy=GOOD_INLINE))
    assert codes(report) == ["inline_policy_too_deep"]
    problem = report.problems[0]
    assert problem.params == {"permission_set": "Deep", "max_depth": 32, "line": 1, "column": 33}
    assert "nests brackets more than 32 levels" in problem.message
    assert report.blocked == ["Deep"]


def test_sandbox_deep_policy_is_not_sent_to_access_analyzer(
    sandbox: Sandbox, sandbox_clients: IdcClients
) -> None:
    desired = DesiredState(
        permission_sets={
            "Deep": spec("Deep", inline_policy=DEEP),
            "Good": spec("Good", inline_policy=GOOD_INLINE),
        }
    )
    report = validate_permission_sets(desired, sandbox_clients, SyncConfig())
    assert report.blocked == ["Deep"]
    assert [p.code for p in report.problems] == ["inline_policy_too_deep"]
    assert sandbox.calls.counters()["accessanalyzer"]["ValidatePolicy"] == 1  # only Good's


def test_findings_are_capped_per_record_with_one_and_more_problem() -> None:
    report = local(spec("Huge", inline_policy=HUGE), spec("Dev", description="開発"))
    huge = [p for p in report.problems if p.params["permission_set"] == "Huge"]
    assert len(huge) == MAX_FINDINGS_PER_RECORD + 1
    more = [p for p in huge if p.code == "more_findings"]
    assert len(more) == 1
    # 10,000 x (Effect, Action, Resource) + missing Version + too large = 30,002 problems; 20 are listed
    assert more[0].params["count"] == 30_002 - MAX_FINDINGS_PER_RECORD
    assert more[0].severity == "error"
    assert f"and {30_002 - MAX_FINDINGS_PER_RECORD} more finding(s)" in more[0].message
    assert report.blocked == ["Dev", "Huge"]  # the other record is unaffected by the cap
    assert [p.code for p in report.problems if p.params["permission_set"] == "Dev"] == [
        "description_invalid_characters"
    ]
    assert len(report.model_dump_json()) < 20_000  # what validate_policies pushes to XCom


def test_capped_warnings_stay_a_warning_and_block_nothing() -> None:
    aa = FakeAnalyzer(pages=[[finding("SUGGESTION", f"S{i}") for i in range(25)]])
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa), spec(inline_policy=GOOD_INLINE)
    )
    assert len(report.problems) == MAX_FINDINGS_PER_RECORD + 1
    more = next(p for p in report.problems if p.code == "more_findings")
    assert (more.severity, more.params["count"]) == ("warning", 5)
    assert report.blocked == []


def test_a_hidden_error_beyond_the_cap_still_blocks() -> None:
    page = [finding("SUGGESTION", f"S{i}") for i in range(MAX_FINDINGS_PER_RECORD)]
    aa = FakeAnalyzer(pages=[[*page, finding("ERROR", "INVALID_ACTION")]])
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa), spec(inline_policy=GOOD_INLINE)
    )
    more = next(p for p in report.problems if p.code == "more_findings")
    assert (more.severity, more.params["count"]) == ("error", 1)
    assert report.blocked == ["Dev"]


def test_access_analyzer_pages_are_read_only_up_to_the_bound() -> None:
    aa = FakeAnalyzer(pages=[[finding("WARNING", f"W{p}-{i}") for i in range(10)] for p in range(50)])
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=aa), spec(inline_policy=GOOD_INLINE)
    )
    assert len(aa.calls) == MAX_ANALYZER_FINDINGS // 10  # not all 50 pages
    more = next(p for p in report.problems if p.code == "more_findings")
    assert more.params["count"] == MAX_ANALYZER_FINDINGS - MAX_FINDINGS_PER_RECORD


def test_number_beyond_the_int_digit_limit_is_not_json_not_a_crash() -> None:
    prefix = '{"Version": "2012-10-17", "Statement": [{"Sid": '
    report = local(spec(inline_policy=prefix + "9" * 5000 + "}]}"))
    assert codes(report) == ["inline_policy_not_json"]
    assert report.problems[0].params["column"] == len(prefix) + 1  # where the number starts
    assert "more than 4,300 digits" in str(report.problems[0].params["error"])


def test_unexpected_error_in_one_permission_set_is_a_problem_on_its_record_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from idc_sync import validation

    def boom(spec_: PermissionSetSpec) -> list[Any]:
        if spec_.name == "Bad":
            raise RecursionError("maximum recursion depth exceeded")
        return []

    broken = validation.Check("x", "permission_set", "raises for Bad", fn=boom)
    monkeypatch.setattr(validation, "CHECKS", [*validation.CHECKS, broken])
    with caplog.at_level("ERROR", logger="idc_sync.validation"):
        report = local(spec("Bad", record=ref("8")), spec("Good", inline_policy=GOOD_INLINE))
    assert [(p.code, p.params["permission_set"], p.params["step"]) for p in report.problems] == [
        ("record_internal_error", "Bad", "validate")
    ]
    assert report.problems[0].record == ref("8")
    assert report.blocked == ["Bad"]
    assert any(r.exc_info and r.exc_info[0] is RecursionError for r in caplog.records)


def test_unexpected_access_analyzer_error_blocks_only_that_permission_set() -> None:
    class Broken(FakeAnalyzer):
        def validate_policy(self, **params: Any) -> dict[str, Any]:
            if "Sid" in params["policyDocument"]:
                raise TypeError("unexpected answer")
            return super().validate_policy(**params)

    other = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
    )
    report = validate_fake(
        FakeClients(iam=FakeIam(set()), accessanalyzer=Broken()),
        spec("Bad", inline_policy=other),
        spec("Good", inline_policy=GOOD_INLINE),
    )
    assert [(p.code, p.params["permission_set"]) for p in report.problems] == [
        ("record_internal_error", "Bad")
    ]
    assert report.blocked == ["Bad"]


# --------------------------------------------------------------------------- the check registry
def test_every_registered_check_has_a_problem_spec_with_texts_and_a_one_line_description() -> None:
    from idc_sync import validation
    from idc_sync.problems import LANGUAGES, REGISTRY

    assert len(validation.CHECKS) >= 30
    for c in validation.CHECKS:
        problem = REGISTRY[c.code]  # the code's params, sink and texts
        assert c.severity in problem.severities, c.code
        for language in LANGUAGES:
            assert problem.template(language, c.severity).strip(), (c.code, language)
        assert c.description.strip() and "\n" not in c.description and len(c.description) <= 100, c.code
        # a function exactly for the checks validation runs itself; the others are the AWS layer's
        assert (c.fn is None) == (c.on in ("iam", "access_analyzer", "validator")), c.code
    by_code: dict[str, set[str]] = {}
    for c in validation.CHECKS:
        by_code.setdefault(c.code, set()).add(c.severity)
    assert all(len(v) == 1 for v in by_code.values()), by_code  # a code registered twice means one thing
    admin = {c.code for c in validation.CHECKS if c.sink == "admin"}
    assert admin == {"access_analyzer_unavailable", "managed_policy_check_unavailable"}


def test_reported_problems_match_the_registry() -> None:
    """Every problem of a varied run has a registered code, its severity, and goes where its sink says."""
    from idc_sync import validation
    from idc_sync.problems import REGISTRY

    registry = {c.code: c for c in validation.CHECKS}
    bad = json.dumps(
        {"Version": "2024-01-01", "Statement": ["x", {"Effect": "allow", "Action": 1, "NotAction": 2}]}
    )
    aa = FakeAnalyzer(pages=[[finding(t, t) for t in ("ERROR", "SECURITY_WARNING", "WARNING", "SUGGESTION")]])

    class DeniedIam(FakeIam):
        def get_policy(self, PolicyArn: str) -> dict[str, Any]:
            if PolicyArn == VIEW:
                raise client_error("AccessDenied", status=403)
            return super().get_policy(PolicyArn)

    report = validate_fake(
        FakeClients(iam=DeniedIam({RO}), accessanalyzer=aa),
        spec("dev", inline_policy=bad, description="開発" + "x" * 700),
        spec(
            "Dev", managed_policies=[RO, RO, VIEW, "arn:aws:iam::aws:policy/Nope", "arn:aws:iam::1:policy/X"]
        ),
        spec("Cmp", customer_managed_policies=[CustomerPolicyRef(name="a b", path="x")]),
        spec("Ok", inline_policy=GOOD_INLINE),
        spec("Many", managed_policies=[f"arn:aws:iam::aws:policy/P{i}" for i in range(21)]),
        spec("Deep", inline_policy=DEEP),
    )
    seen = {p.code for p in report.problems}
    assert len(seen) >= 20, seen
    for p in report.problems:
        c = registry[p.code]
        assert p.severity == c.severity or p.code == "more_findings", p
        assert (p.record is None) == (c.sink == "admin"), p
        REGISTRY[p.code].parse(p.params)  # the params fit the code's model (else only English is shown)
