"""Catch what IAM Identity Center would reject (or should not accept) before anything is applied.

Why: a permission set typed by hand into kintone and sent to IdC as it is fails with an opaque
ValidationException halfway through an update (a half-applied permission set), and a policy that is valid
JSON can still be dangerous or useless. So each permission set is checked in three layers:

1. local checks, no AWS call: the :data:`CHECKS` registry below, one small function per problem code;
2. ``iam:GetPolicy`` once per distinct AWS managed policy ARN, with "did you mean ...?" suggestions from a
   shipped catalog of real AWS managed policy names;
3. IAM Access Analyzer ``ValidatePolicy`` on the inline policy exactly as written (so the line and column
   it reports point into the requester's text).

An error blocks only its own permission set (:func:`apply_validation` moves that set's operations to
``plan.skipped``); the rest of the plan proceeds. IAM or Access Analyzer being unreachable is the admins'
problem, not the requester's, and blocks nothing. Throttling is retried by botocore (the clients'
retry config, :mod:`idc_sync.aws_clients`), not here.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from idc_sync import idc_fields, safe_json
from idc_sync.aws_clients import error_code, error_text
from idc_sync.aws_responses import guard_pages
from idc_sync.config import SyncConfig
from idc_sync.isolation import run_isolated
from idc_sync.model import (
    CustomerPolicyRef,
    DesiredState,
    Operation,
    OpKind,
    PermissionSetOp,
    PermissionSetSpec,
    Plan,
    Problem,
    RecordRef,
    Severity,
    Skipped,
    ValidationReport,
)
from idc_sync.policy import managed_policy_name
from idc_sync.problems import REGISTRY, Code, Sink

if TYPE_CHECKING:
    from idc_sync.aws_clients import IdcClients

LOG = logging.getLogger(__name__)

# Work per record is bounded: a 10,000-statement policy once gave 30,008 findings (a 31 s XCom push, a
# notify busy for minutes). The first MAX_FINDINGS_PER_RECORD problems of a permission set are kept, then
# one ``more_findings`` problem counts the rest; Access Analyzer is read for at most MAX_ANALYZER_FINDINGS.
MAX_FINDINGS_PER_RECORD = 20
MAX_ANALYZER_FINDINGS = 100

_FINDING_CODES: dict[str, tuple[Code, Severity]] = {
    "ERROR": ("policy_finding_error", "error"),
    "SECURITY_WARNING": ("policy_finding_security_warning", "error"),
    "WARNING": ("policy_finding_warning", "warning"),
    "SUGGESTION": ("policy_finding_suggestion", "warning"),
}


# --------------------------------------------------------------------------- managed policy catalog
@cache
def managed_policy_catalog() -> tuple[str, ...]:
    """Names (with path, e.g. ``job-function/ViewOnlyAccess``) of real AWS managed policies.

    Shipped as ``data/aws_managed_policy_names.txt`` (generated from moto's bundled catalog); only used
    for suggestions, existence is always asked of IAM.
    """
    try:
        text = resources.files("idc_sync").joinpath("data/aws_managed_policy_names.txt").read_text("utf-8")
    except OSError as exc:  # an install without package data: suggestions are a nicety, not a reason to fail
        LOG.warning("managed policy catalog not available (%s): no 'did you mean' suggestions", exc)
        return ()
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def suggest_managed_policies(name: str, catalog: Iterable[str] | None = None, n: int = 3) -> list[str]:
    """Closest real managed policy names for a mistyped one (case-insensitive; paths optional)."""
    names = tuple(catalog) if catalog is not None else managed_policy_catalog()
    written = name.strip().strip("/")
    query = written.lower()
    if not query:
        return []
    by_key: dict[str, list[str]] = {}  # lower-case name, with and without its path -> catalog names
    for full in names:
        by_key.setdefault(full.lower(), []).append(full)
        base = full.rsplit("/", 1)[-1].lower()
        if base != full.lower():
            by_key.setdefault(base, []).append(full)
    query_base = query.rsplit("/", 1)[-1]
    keys = [query, query_base]  # exact (case-insensitive) hits first: right name, wrong case/path
    if len(query_base) >= 6:  # a missing prefix ("S3ReadOnlyAccess" for AmazonS3ReadOnlyAccess)
        containing = (k for k in by_key if query_base in k and k != query_base)
        keys += sorted(containing, key=lambda k: (len(k), k))[:2]
    keys += difflib.get_close_matches(query, list(by_key), n=n * 2, cutoff=0.6)
    if query_base != query:
        keys += difflib.get_close_matches(query_base, list(by_key), n=n, cutoff=0.6)
    out: list[str] = []
    for key in keys:
        for full in by_key.get(key, []):
            if full not in out and full != written:
                out.append(full)
    return out[:n]


# --------------------------------------------------------------------------- problems
class _Problems:
    """Thread-safe problem collector (Access Analyzer calls run in a small pool).

    Keeps the first ``cap`` problems of each permission set and only counts the rest (whether any of them
    is an error: that still blocks the set), so a hostile record costs bounded memory, XCom and comment.
    """

    def __init__(self, cap: int = MAX_FINDINGS_PER_RECORD) -> None:
        self.items: list[Problem] = []
        self._lock = threading.Lock()
        self._cap = cap
        self._kept: dict[str, int] = {}
        self._dropped: dict[str, tuple[PermissionSetSpec, int, bool]] = {}

    def overflow(self) -> list[Problem]:
        """One ``more_findings`` problem per permission set that had more than ``cap`` problems."""
        out = []
        for name, (spec, count, any_error) in sorted(self._dropped.items()):
            out.append(
                Problem(
                    code="more_findings",
                    message=(
                        f"... and {count} more finding(s) in the permission set {name} are not listed (at most "
                        f"{self._cap} are). Fix the listed ones; the rest are reported once they are fixed."
                    ),
                    severity="error" if any_error else "warning",
                    record=spec.record,
                    params={"permission_set": name, "count": count, "shown": self._cap},
                )
            )
        return out

    def add(
        self,
        spec: PermissionSetSpec | None,
        code: Code,
        message: str,
        severity: Severity = "error",
        **params: str | int | float | None,
    ) -> None:
        record: RecordRef | None = spec.record if spec is not None else None
        if spec is not None:
            if not self._keep(spec, severity):  # counted, not built: no Problem for the 30,000th finding
                return
            params = {"permission_set": spec.name, **params}
        problem = Problem(code=code, message=message, severity=severity, record=record, params=params)
        with self._lock:
            self.items.append(problem)

    def add_problem(self, spec: PermissionSetSpec, problem: Problem) -> None:
        """A ready-made problem of ``spec`` (per-record isolation), under the same cap."""
        if self._keep(spec, problem.severity):
            with self._lock:
                self.items.append(problem)

    def _keep(self, spec: PermissionSetSpec, severity: Severity) -> bool:
        with self._lock:
            kept = self._kept.get(spec.name, 0)
            if kept >= self._cap:
                _, count, any_error = self._dropped.get(spec.name, (spec, 0, False))
                self._dropped[spec.name] = (spec, count + 1, any_error or severity == "error")
                return False
            self._kept[spec.name] = kept + 1
            return True


# --------------------------------------------------------------------------- the check registry
# A check is a small function registered with ``@check``: the problem code it reports, what it looks at
# (``on``), its severity and a one-line description; whom the problem reaches (``sink``: the requester's
# record or the admins) and its texts are its code's, in :data:`idc_sync.problems.REGISTRY`. A check yields
# ``(message, params)`` per thing wrong; the runner (:func:`check_local`) adds the code, the severity and
# the permission set. Checks run in registration order, item by item for consecutive checks on the same
# kind of item (so a statement's problems stay together). What each ``on`` hands the function:
#
#   "all_permission_sets"  fn(desired, only) -> (spec, message, params)  names compared across sets
#   "permission_set"       fn(spec)                        every permission set checked
#   "customer_policy"      fn(spec, ref)                   each customer managed policy reference
#   "inline_policy"        fn(spec, policy: InlinePolicy)  a non-blank inline policy, parsed once
#   "statement"            fn(spec, statement: Statement)  each statement of a policy object
#
# Codes that the AWS layer or the runner itself reports are registered too (``on`` "iam",
# "access_analyzer" or "validator", no function), so CHECKS lists every code this module can report.
On = Literal[
    "all_permission_sets",
    "permission_set",
    "customer_policy",
    "inline_policy",
    "statement",
    "iam",
    "access_analyzer",
    "validator",
]
Param = str | int | float | None
Finding = tuple[str, dict[str, Param]]  # (English message, params)
_F = TypeVar("_F", bound=Callable[..., Iterable[Any]])


@dataclass(frozen=True)
class Check:
    code: Code
    on: On
    description: str
    severity: Severity = "error"
    fn: Callable[..., Iterable[Any]] | None = None  # None: reported by the AWS layer or the runner

    @property
    def sink(self) -> Sink:
        """Whom the problem reaches, "record" (the requester's record) or "admin" (Slack): its code's."""
        return REGISTRY[self.code].sink


CHECKS: list[Check] = []


def check(*, code: Code, on: On, description: str, severity: Severity = "error") -> Callable[[_F], _F]:
    """Registers the decorated function as the check of ``code`` (see the table above)."""

    def register(fn: _F) -> _F:
        CHECKS.append(Check(code, on, description, severity, fn))
        return fn

    return register


def reported(*, code: Code, on: On, description: str, severity: Severity = "error") -> None:
    """Registers a code that the AWS layer or the runner reports (no local function)."""
    CHECKS.append(Check(code, on, description, severity))


@dataclass(frozen=True)
class Statement:
    label: str  # "2" or "2 (Sid ReadLogs)": what the requester can find in their text
    body: Any  # as parsed: a dict when well-formed


@dataclass(frozen=True)
class InlinePolicy:
    """The inline policy as written, parsed once for every check that looks inside it."""

    text: str
    doc: Any = None
    error: safe_json.UnsafeJsonError | None = None  # why it did not parse; None when it did
    statements: tuple[Statement, ...] = ()  # of a policy object; one object counts as a list of one

    @classmethod
    def read(cls, text: str | None) -> InlinePolicy | None:
        """None for no (or a blank) inline policy."""
        if text is None or not text.strip():
            return None
        try:
            doc = safe_json.loads(text)
        except safe_json.UnsafeJsonError as exc:
            return cls(text, error=exc)
        raw = doc.get("Statement") if isinstance(doc, dict) else None
        raw = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
        return cls(text, doc, None, tuple(Statement(_statement_label(i, st), st) for i, st in enumerate(raw)))


def _statement_label(index: int, statement: Any) -> str:
    sid = statement.get("Sid") if isinstance(statement, dict) else None
    return f"{index + 1} (Sid {sid})" if isinstance(sid, str) and sid else str(index + 1)


# --------------------------------------------------------------------------- checks: names and fields
@check(
    code="duplicate_name",
    on="all_permission_sets",
    description="Two permission set names differ only in case (IdC treats them as one name).",
)
def _names_differing_in_case(
    desired: DesiredState, only: set[str] | None
) -> Iterator[tuple[PermissionSetSpec, str, dict[str, Param]]]:
    first: dict[str, str] = {}
    for name in sorted(desired.permission_sets):
        key = name.casefold()
        if key in first and (only is None or name in only):
            yield (
                desired.permission_sets[name],
                f"The permission set name '{name}' differs from '{first[key]}' only in upper/lower case; "
                "IAM Identity Center treats them as the same name. Rename one of them.",
                {"name": name, "other": first[key]},
            )
        first.setdefault(key, name)


@check(
    code="invalid_name",
    on="permission_set",
    description="The name is not 1-32 letters, digits and + = , . @ - _.",
)
def _name(spec: PermissionSetSpec) -> Iterator[Finding]:
    if not idc_fields.is_permission_set_name(spec.name):
        yield (
            f"The permission set name '{spec.name}' is not valid: use 1-{idc_fields.PERMISSION_SET_NAME_MAX} "
            "characters of letters, digits and + = , . @ - _ (no spaces or Japanese).",
            {"name": spec.name, "max": idc_fields.PERMISSION_SET_NAME_MAX},
        )


@check(
    code="description_too_long",
    on="permission_set",
    description="The description is longer than IdC allows (700 characters).",
)
def _description_length(spec: PermissionSetSpec) -> Iterator[Finding]:
    description = spec.description or ""
    if len(description) > idc_fields.DESCRIPTION_MAX:
        yield (
            f"The description of {spec.name} has {len(description)} characters; IAM Identity Center allows at "
            f"most {idc_fields.DESCRIPTION_MAX}. Shorten it.",
            {"length": len(description), "max": idc_fields.DESCRIPTION_MAX},
        )


@check(
    code="description_invalid_characters",
    on="permission_set",
    description="The description has characters outside Latin-1 (Japanese, emoji).",
)
def _description_characters(spec: PermissionSetSpec) -> Iterator[Finding]:
    bad = idc_fields.description_bad_characters(spec.description or "")
    if bad:
        yield (
            f"The description of {spec.name} contains characters IAM Identity Center does not accept ({bad}); "
            "only Latin-1 text is allowed (no Japanese or emoji). Rewrite it.",
            {"characters": bad},
        )


# Session duration and relay state are checked once, by records.py, on the field as typed: a record with
# a bad one is held there and never reaches this module, so the requester is told exactly once.


# --------------------------------------------------------------------------- checks: attached policies
def _policy_count(spec: PermissionSetSpec) -> int:
    return len(set(spec.managed_policies)) + len({(c.name, c.path) for c in spec.customer_managed_policies})


@check(
    code="too_many_policies",
    on="permission_set",
    description="More than 20 managed and customer managed policies.",
)
def _too_many_policies(spec: PermissionSetSpec) -> Iterator[Finding]:
    total, most = _policy_count(spec), idc_fields.ATTACHED_POLICIES_MAX
    if total > most:
        yield (
            f"{spec.name} has {total} managed and customer managed policies; IAM Identity Center allows at "
            f"most {most}. Combine some of them into a customer managed policy or the inline policy.",
            {"count": total, "max": most},
        )


@check(
    code="many_policies_quota",
    on="permission_set",
    severity="warning",
    description="11-20 policies: works only where IAM's policies-per-role quota was raised.",
)
def _many_policies(spec: PermissionSetSpec) -> Iterator[Finding]:
    total, quota = _policy_count(spec), idc_fields.IAM_ROLE_POLICIES_DEFAULT_QUOTA
    if quota < total <= idc_fields.ATTACHED_POLICIES_MAX:
        yield (
            f"{spec.name} has {total} managed and customer managed policies. More than {quota} works only "
            "where the IAM quota 'managed policies per role' has been raised in every target account; "
            "otherwise provisioning fails there.",
            {"count": total, "default_quota": quota},
        )


@check(
    code="invalid_managed_policy_arn",
    on="permission_set",
    description="A managed policy is not an AWS managed policy ARN.",
)
def _managed_policy_arns(spec: PermissionSetSpec) -> Iterator[Finding]:
    for arn in spec.managed_policies:
        if not idc_fields.is_managed_policy_arn(arn):
            yield (
                f"'{arn}' in {spec.name} is not an AWS managed policy. Write its name (ReadOnlyAccess), path "
                "and name (job-function/ViewOnlyAccess) or ARN; customer managed policies go in their own table.",
                {"policy": arn},
            )


@check(
    code="invalid_customer_policy_name",
    on="customer_policy",
    description="A customer managed policy name is not 1-128 letters, digits and + = , . @ - _.",
)
def _customer_policy_name(spec: PermissionSetSpec, ref: CustomerPolicyRef) -> Iterator[Finding]:
    if not idc_fields.is_policy_name(ref.name):
        yield (
            f"The customer managed policy name '{ref.name}' of {spec.name} is not valid: 1-128 letters, digits "
            "and + = , . @ - _.",
            {"name": ref.name, "path": ref.path},
        )


@check(
    code="invalid_customer_policy_path",
    on="customer_policy",
    description="A customer managed policy path is not / or /a/b/ (at most 512 characters).",
)
def _customer_policy_path(spec: PermissionSetSpec, ref: CustomerPolicyRef) -> Iterator[Finding]:
    if not idc_fields.is_policy_path(ref.path):
        yield (
            f"The path '{ref.path}' of customer managed policy '{ref.name}' in {spec.name} is not valid: it "
            "starts and ends with '/', for example / or /team/.",
            {"name": ref.name, "path": ref.path},
        )


@check(
    code="duplicate_policy",
    on="permission_set",
    severity="warning",
    description="The same policy is listed twice (it is attached once).",
)
def _duplicate_policies(spec: PermissionSetSpec) -> Iterator[Finding]:
    seen: set[str] = set()
    for label in [*spec.managed_policies, *(f"{c.path}{c.name}" for c in spec.customer_managed_policies)]:
        if label in seen:
            yield (
                f"{label} is listed twice in {spec.name}; it is attached once. Remove the duplicate line.",
                {"policy": label},
            )
        seen.add(label)


@check(
    code="invalid_customer_policy_name",
    on="permission_set",
    description="The customer managed permissions boundary is not a valid policy name and path.",
)
def _customer_boundary(spec: PermissionSetSpec) -> Iterator[Finding]:
    ref = spec.permissions_boundary.customer_managed_policy if spec.permissions_boundary else None
    if ref is not None and not (idc_fields.is_policy_name(ref.name) and idc_fields.is_policy_path(ref.path)):
        yield (
            f"The permissions boundary customer:{ref.path}{ref.name} of {spec.name} is not a valid policy "
            "reference (name: 1-128 letters, digits and + = , . @ - _; path like / or /team/).",
            {"name": ref.name, "path": ref.path},
        )


@check(
    code="invalid_managed_policy_arn",
    on="permission_set",
    description="The managed permissions boundary is not an AWS managed policy ARN.",
)
def _managed_boundary(spec: PermissionSetSpec) -> Iterator[Finding]:
    boundary = spec.permissions_boundary
    if boundary is None or boundary.customer_managed_policy is not None:
        return
    arn = boundary.managed_policy_arn
    if arn and not idc_fields.is_managed_policy_arn(arn):
        yield (
            f"The permissions boundary '{arn}' of {spec.name} is not an AWS managed policy.",
            {"policy": arn},
        )


# --------------------------------------------------------------------------- checks: the inline policy
@check(
    code="inline_policy_invalid_characters",
    on="inline_policy",
    description="The inline policy has characters outside Latin-1.",
)
def _policy_characters(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    bad = idc_fields.inline_policy_bad_characters(policy.text)
    if bad:
        yield (
            f"The inline policy of {spec.name} contains characters IAM Identity Center does not accept ({bad}); "
            "only Latin-1 text is allowed. Remove them (for example from Sid or condition values).",
            {"characters": bad},
        )


@check(
    code="inline_policy_too_large",
    on="inline_policy",
    description="The inline policy is over 32,768 characters or 10,240 non-whitespace characters.",
)
def _policy_size(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    text = policy.text
    if idc_fields.inline_policy_too_large(text):
        non_ws = idc_fields.inline_policy_non_whitespace(text)
        most, most_non_ws = idc_fields.INLINE_POLICY_MAX_CHARS, idc_fields.INLINE_POLICY_MAX_NON_WHITESPACE
        yield (
            f"The inline policy of {spec.name} is too large: {len(text):,} characters ({non_ws:,} not counting "
            f"whitespace); IAM Identity Center allows {most:,} characters of which at most {most_non_ws:,} "
            "non-whitespace. Shorten it (wildcards, fewer statements) or move part of it to a customer managed "
            "policy.",
            {
                "chars": len(text),
                "max_chars": most,
                "non_whitespace": non_ws,
                "max_non_whitespace": most_non_ws,
            },
        )


@check(
    code="inline_policy_too_deep",
    on="inline_policy",
    description="The inline policy nests brackets deeper than safe_json reads.",
)
def _policy_depth(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    exc = policy.error
    if exc is not None and exc.reason == "too_deep":
        yield (
            f"The inline policy of {spec.name} nests brackets more than {exc.limit} levels deep (at line "
            f"{exc.line}, column {exc.column}); an IAM policy needs at most about 6. Check for stray or "
            "repeated [ and { and rewrite the policy as Version plus a list of statements.",
            {"max_depth": exc.limit, "line": exc.line, "column": exc.column},
        )


@check(code="inline_policy_not_json", on="inline_policy", description="The inline policy is not JSON.")
def _policy_json(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    exc = policy.error
    # "too_large" (far above IdC's limit) is already inline_policy_too_large: not worth reading further.
    if exc is not None and exc.reason not in ("too_deep", "too_large"):
        yield (
            f"The inline policy of {spec.name} is not valid JSON: {exc.msg} at line {exc.line}, column "
            f"{exc.column}. Fix the JSON (check quotes, commas and brackets).",
            {"error": exc.msg, "line": exc.line, "column": exc.column},
        )


@check(
    code="inline_policy_not_object",
    on="inline_policy",
    description="The inline policy is JSON but not an object.",
)
def _policy_object(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    if policy.error is None and not isinstance(policy.doc, dict):
        kind = type(policy.doc).__name__
        yield (
            f"The inline policy of {spec.name} must be a JSON object "
            '({"Version": "2012-10-17", "Statement": [...]}), not a JSON ' + kind + ".",
            {"type": kind},
        )


@check(
    code="inline_policy_missing_version",
    on="inline_policy",
    description='The inline policy has no "Version".',
)
def _policy_version_missing(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    if isinstance(policy.doc, dict) and policy.doc.get("Version") is None:
        yield (
            f'The inline policy of {spec.name} has no "Version". Add "Version": "2012-10-17" at the top.',
            {},
        )


@check(
    code="inline_policy_invalid_version",
    on="inline_policy",
    description='"Version" is not 2012-10-17 (or the legacy 2008-10-17).',
)
def _policy_version(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    version = policy.doc.get("Version") if isinstance(policy.doc, dict) else None
    if version is not None and version not in idc_fields.POLICY_VERSIONS:
        yield (
            f'The inline policy of {spec.name} has "Version": {json.dumps(version)}; it must be "2012-10-17" '
            '(or the legacy "2008-10-17"). It is a fixed date, not the date you wrote the policy.',
            {"value": str(version)},
        )


@check(
    code="inline_policy_missing_statement",
    on="inline_policy",
    description='The inline policy has no (or an empty) "Statement".',
)
def _policy_statements(spec: PermissionSetSpec, policy: InlinePolicy) -> Iterator[Finding]:
    if isinstance(policy.doc, dict) and not policy.statements:
        yield (
            f'The inline policy of {spec.name} has no "Statement". Add a list of statements, each with Effect, '
            "Action and Resource.",
            {},
        )


@check(
    code="inline_policy_invalid_statement",
    on="statement",
    description="A statement is not a JSON object.",
)
def _statement_object(spec: PermissionSetSpec, st: Statement) -> Iterator[Finding]:
    if not isinstance(st.body, dict):
        yield (
            f"Statement {st.label} of the inline policy of {spec.name} is not a JSON object. Each statement is "
            '{"Effect": ..., "Action": ..., "Resource": ...}.',
            {"statement": st.label},
        )


@check(
    code="inline_policy_invalid_effect",
    on="statement",
    description='A statement\'s "Effect" is not "Allow" or "Deny".',
)
def _statement_effect(spec: PermissionSetSpec, st: Statement) -> Iterator[Finding]:
    if not isinstance(st.body, dict):
        return
    effect = st.body.get("Effect")
    if effect not in ("Allow", "Deny"):
        yield (
            f'Statement {st.label} of the inline policy of {spec.name} has "Effect": {json.dumps(effect)}; it '
            'must be "Allow" or "Deny" (case-sensitive).',
            {"statement": st.label, "value": None if effect is None else str(effect)},
        )


@check(
    code="inline_policy_missing_action",
    on="statement",
    description='A statement has neither "Action" nor "NotAction".',
)
def _statement_action(spec: PermissionSetSpec, st: Statement) -> Iterator[Finding]:
    if isinstance(st.body, dict) and "Action" not in st.body and "NotAction" not in st.body:
        yield (
            f'Statement {st.label} of the inline policy of {spec.name} has no "Action" (or "NotAction"). Add '
            'the actions it allows or denies, for example "Action": ["s3:GetObject"].',
            {"statement": st.label},
        )


@check(
    code="inline_policy_action_and_notaction",
    on="statement",
    description='A statement has both "Action" and "NotAction".',
)
def _statement_action_and_notaction(spec: PermissionSetSpec, st: Statement) -> Iterator[Finding]:
    if isinstance(st.body, dict) and "Action" in st.body and "NotAction" in st.body:
        yield (
            f'Statement {st.label} of the inline policy of {spec.name} has both "Action" and "NotAction"; keep '
            "only one.",
            {"statement": st.label},
        )


@check(
    code="inline_policy_missing_resource",
    on="statement",
    description='A statement has neither "Resource" nor "NotResource".',
)
def _statement_resource(spec: PermissionSetSpec, st: Statement) -> Iterator[Finding]:
    if isinstance(st.body, dict) and "Resource" not in st.body and "NotResource" not in st.body:
        yield (
            f'Statement {st.label} of the inline policy of {spec.name} has no "Resource". Identity policies '
            'need one: add "Resource": "*" or the ARNs it applies to.',
            {"statement": st.label},
        )


# --------------------------------------------------------------------------- codes reported elsewhere
reported(
    code="managed_policy_not_found",
    on="iam",
    description="iam:GetPolicy does not know an AWS managed policy (with did-you-mean suggestions).",
)
reported(
    code="permissions_boundary_not_found",
    on="iam",
    description="iam:GetPolicy does not know the managed permissions boundary.",
)
reported(
    code="managed_policy_check_unavailable",
    on="iam",
    severity="warning",
    description="iam:GetPolicy failed (not NoSuchEntity): nothing is blocked, admins are told.",
)
reported(
    code="policy_finding_error",
    on="access_analyzer",
    description="An Access Analyzer ERROR finding on the inline policy.",
)
reported(
    code="policy_finding_security_warning",
    on="access_analyzer",
    description="An Access Analyzer SECURITY_WARNING finding on the inline policy.",
)
reported(
    code="policy_finding_warning",
    on="access_analyzer",
    severity="warning",
    description="An Access Analyzer WARNING finding (advice only).",
)
reported(
    code="policy_finding_suggestion",
    on="access_analyzer",
    severity="warning",
    description="An Access Analyzer SUGGESTION finding (advice only).",
)
reported(
    code="inline_policy_rejected",
    on="access_analyzer",
    description="Access Analyzer refused to read the inline policy (ValidationException).",
)
reported(
    code="access_analyzer_unavailable",
    on="access_analyzer",
    severity="warning",
    description="ValidatePolicy failed: inline policies were applied after the local checks only.",
)
reported(
    code="more_findings",
    on="validator",
    description="Problems beyond MAX_FINDINGS_PER_RECORD, counted (a warning when none is an error).",
)
reported(
    code="record_internal_error",
    on="validator",
    description="An unexpected exception while checking one permission set (idc_sync.isolation).",
)


# --------------------------------------------------------------------------- the runner
_ITEM_CHECKS = ("permission_set", "customer_policy", "inline_policy", "statement")
_POLICY_CHECKS = ("inline_policy", "statement")


def _items(on: On, spec: PermissionSetSpec, policy: InlinePolicy | None) -> list[tuple[Any, ...]]:
    """The arguments of each call of a check ``on`` this kind of item."""
    if on == "permission_set":
        return [(spec,)]
    if on == "customer_policy":
        return [(spec, ref) for ref in spec.customer_managed_policies]
    if policy is None:
        return []
    if on == "inline_policy":
        return [(spec, policy)]
    return [(spec, st) for st in policy.statements]


def check_local(spec: PermissionSetSpec, out: _Problems) -> bool:
    """Runs the local checks of :data:`CHECKS` on ``spec``; True when its inline policy is worth sending
    to Access Analyzer (there is one, and no inline policy check found anything)."""
    policy = InlinePolicy.read(spec.inline_policy)
    policy_findings = 0
    local = [(c, c.fn) for c in CHECKS if c.on in _ITEM_CHECKS and c.fn is not None]
    for on, group in itertools.groupby(local, key=lambda pair: pair[0].on):
        checks = list(group)
        for args in _items(on, spec, policy):
            for c, fn in checks:
                for message, params in fn(*args):
                    out.add(spec, c.code, message, c.severity, **params)
                    policy_findings += on in _POLICY_CHECKS
    return policy is not None and policy_findings == 0


# --------------------------------------------------------------------------- AWS checks
class _AwsChecks:
    """The two AWS calls, each made once: botocore has already retried throttling and 5xx by then."""

    def __init__(self, clients: IdcClients, workers: int) -> None:
        self.clients = clients
        self.workers = workers

    def policies_exist(self, arns: Iterable[str]) -> tuple[dict[str, bool], list[tuple[str, str]]]:
        """ARN -> exists (one GetPolicy per distinct ARN); plus (arn, error) for those that could not be checked."""
        exists: dict[str, bool] = {}
        errors: list[tuple[str, str]] = []

        def one(arn: str) -> None:
            try:
                self.clients.iam.get_policy(PolicyArn=arn)
                exists[arn] = True
            except ClientError as exc:
                if error_code(exc) == "NoSuchEntity":
                    exists[arn] = False
                else:
                    errors.append((arn, error_text(exc)))
            except BotoCoreError as exc:
                errors.append((arn, error_text(exc)))

        todo = sorted(set(arns))
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(todo)))) as ex:
                list(ex.map(one, todo))
        return exists, errors

    def validate_policy(self, text: str) -> list[dict[str, Any]]:
        """Access Analyzer findings for an identity policy (paginated; at most MAX_ANALYZER_FINDINGS: more
        would only be counted and dropped). Raises on failure."""

        def pages() -> Iterator[dict[str, Any]]:
            params: dict[str, Any] = {"policyDocument": text, "policyType": "IDENTITY_POLICY", "locale": "EN"}
            while True:
                page: dict[str, Any] = self.clients.accessanalyzer.validate_policy(**params)
                yield page
                if not page.get("nextToken"):
                    return
                params["nextToken"] = page["nextToken"]

        findings: list[dict[str, Any]] = []
        guarded = guard_pages(
            pages(), "accessanalyzer", "ValidatePolicy", token_key="nextToken", items_key="findings"
        )
        for page in guarded:
            findings.extend(page.get("findings") or [])
            if len(findings) >= MAX_ANALYZER_FINDINGS:
                break
        return findings[:MAX_ANALYZER_FINDINGS]


def _finding_problem(spec: PermissionSetSpec, finding: dict[str, Any], out: _Problems) -> None:
    ftype = str(finding.get("findingType", "WARNING"))
    code, severity = _FINDING_CODES.get(ftype, ("policy_finding_warning", "warning"))
    issue = str(finding.get("issueCode", ""))
    details = str(finding.get("findingDetails", "")).strip()
    link = str(finding.get("learnMoreLink", ""))
    line: int | None = None
    column: int | None = None
    for loc in finding.get("locations") or []:
        start = (loc.get("span") or {}).get("start") or {}
        if "line" in start:
            line = int(start["line"])  # Access Analyzer: line from 1, column from 0
            column = int(start.get("column", 0)) + 1
            break
    where = f" at line {line}, column {column}" if line is not None else ""
    todo = (
        "Fix the inline policy; this permission set is not changed until then."
        if severity == "error"
        else "Consider improving the inline policy (advice only; nothing is blocked)."
    )
    label = ftype.replace("_", " ").lower()
    message = f"Access Analyzer {label} {issue} in the inline policy of {spec.name}{where}: {details} {todo}"
    if link:
        message += f" See {link}"
    out.add(
        spec,
        code,
        message,
        severity=severity,
        issue_code=issue,
        line=line,
        column=column,
        details=details,
        learn_more=link,
    )


# --------------------------------------------------------------------------- public API
def validate_permission_sets(
    desired: DesiredState,
    clients: IdcClients | None,
    config: SyncConfig,
    *,
    only: set[str] | None = None,
    workers: int = 4,
    log: logging.Logger | None = None,
    analyzer_cache: MutableMapping[str, Any] | None = None,
) -> ValidationReport:
    """Check the permission sets of ``desired`` (or only the names in ``only``). ``clients=None`` runs
    the local checks only.

    Returns the problems and the names of the blocked permission sets (any problem of severity error).

    ``analyzer_cache`` (optional, mutable): Access Analyzer answers by :func:`analyzer_cache_key` of the
    policy text, kept by the caller across runs. An unchanged policy is then not sent again (one call per
    inline policy every ten minutes would cost for nothing), yet its findings are reported every run, so a
    record's problems stay stable. Hits and new answers are written to it; failures are never cached.
    ``config`` is not read today; it is part of the signature every step calls.
    """
    log = log or LOG
    specs = [spec for name, spec in sorted(desired.permission_sets.items()) if only is None or name in only]
    out = _Problems()
    for c in CHECKS:
        if c.on == "all_permission_sets" and c.fn is not None:
            for spec, message, params in c.fn(desired, only):
                out.add(spec, c.code, message, c.severity, **params)
    isolated = functools.partial(_isolated, out=out, log=log)
    to_analyze = [spec for spec in specs if isolated(spec, functools.partial(check_local, spec, out))]
    if clients is not None and specs:
        aws = _AwsChecks(clients, workers)
        _check_managed_policies(specs, aws, out, log)
        _check_inline_policies(to_analyze, aws, out, log, analyzer_cache)
    return _report(out, len(specs), log)


def _isolated(
    spec: PermissionSetSpec, check: Callable[[], bool], *, out: _Problems, log: logging.Logger
) -> bool:
    """One permission set's check; an unexpected error becomes a blocking problem on its record only."""
    return run_isolated(
        "validate",
        spec.record,
        check,
        on_error=lambda p: out.add_problem(spec, p),
        default=False,
        log=log,
        params={"permission_set": spec.name},
    )


def _check_managed_policies(
    specs: list[PermissionSetSpec], aws: _AwsChecks, out: _Problems, log: logging.Logger
) -> None:
    """Managed policies (and managed boundaries): one GetPolicy per distinct well-formed ARN."""
    wanted: set[str] = set()
    for spec in specs:
        wanted.update(a for a in spec.managed_policies if idc_fields.is_managed_policy_arn(a))
        b = spec.permissions_boundary
        if b is not None and b.managed_policy_arn and idc_fields.is_managed_policy_arn(b.managed_policy_arn):
            wanted.add(b.managed_policy_arn)
    exists, errors = aws.policies_exist(wanted)

    def not_found(spec: PermissionSetSpec) -> bool:
        for arn in sorted(set(spec.managed_policies)):
            if exists.get(arn) is False:
                _not_found(spec, arn, "managed_policy_not_found", out)
        b = spec.permissions_boundary
        if b is not None and b.managed_policy_arn and exists.get(b.managed_policy_arn) is False:
            _not_found(spec, b.managed_policy_arn, "permissions_boundary_not_found", out)
        return True

    for spec in specs:
        _isolated(spec, functools.partial(not_found, spec), out=out, log=log)
    if errors:
        log.warning("iam:GetPolicy failed for %d policies: %s", len(errors), errors[0][1])
        out.add(
            None,
            "managed_policy_check_unavailable",
            f"Could not check {len(errors)} AWS managed policies with iam:GetPolicy ({errors[0][1]}). "
            "They were not blocked; check the pipeline role's iam:GetPolicy permission and IAM's health.",
            severity="warning",
            error=errors[0][1],
            unchecked=len(errors),
        )


def _check_inline_policies(
    specs: list[PermissionSetSpec],
    aws: _AwsChecks,
    out: _Problems,
    log: logging.Logger,
    cache: MutableMapping[str, Any] | None,
) -> None:
    """Access Analyzer on each inline policy, as written (a small thread pool)."""
    failures: list[tuple[str, str]] = []  # (permission set, error) of the calls that failed
    if specs:
        analyze = functools.partial(_analyze, aws=aws, out=out, cache=cache, failures=failures)
        with ThreadPoolExecutor(max_workers=max(1, min(aws.workers, len(specs)))) as ex:
            list(ex.map(lambda spec: _isolated(spec, lambda: analyze(spec), out=out, log=log), specs))
    if failures:
        names = ", ".join(sorted(n for n, _ in failures)[:10])
        log.warning(
            "Access Analyzer ValidatePolicy failed for %d policies: %s", len(failures), failures[0][1]
        )
        out.add(
            None,
            "access_analyzer_unavailable",
            f"IAM Access Analyzer could not validate the inline policies of {len(failures)} permission sets "
            f"({names}): {failures[0][1]}. They were applied after the local checks only; check the "
            "pipeline role's access-analyzer:ValidatePolicy permission and the service's health.",
            severity="warning",
            error=failures[0][1],
            unchecked=len(failures),
        )


def _analyze(
    spec: PermissionSetSpec,
    *,
    aws: _AwsChecks,
    out: _Problems,
    cache: MutableMapping[str, Any] | None,
    failures: list[tuple[str, str]],
) -> bool:
    """One inline policy: from the cache when its text was answered before, else from Access Analyzer."""
    assert spec.inline_policy is not None
    key = analyzer_cache_key(spec.inline_policy)
    cached = cache.get(key) if cache is not None else None
    if isinstance(cached, dict) and isinstance(cached.get("findings"), list):
        for finding in cached["findings"][:MAX_ANALYZER_FINDINGS]:
            _finding_problem(spec, finding, out)
        return True
    if isinstance(cached, dict) and isinstance(cached.get("rejected"), str):
        _rejected(spec, cached["rejected"], out)
        return True
    try:
        findings = aws.validate_policy(spec.inline_policy)
    except ClientError as exc:
        if error_code(exc) != "ValidationException":
            failures.append((spec.name, error_text(exc)))
            return True
        _rejected(spec, error_text(exc), out)
        if cache is not None:
            cache[key] = {"rejected": error_text(exc), "at": time.time()}
        return True
    except BotoCoreError as exc:
        failures.append((spec.name, error_text(exc)))
        return True
    if cache is not None:
        cache[key] = {"findings": findings, "at": time.time()}
    for finding in findings:
        _finding_problem(spec, finding, out)
    return True


def _report(out: _Problems, checked: int, log: logging.Logger) -> ValidationReport:
    problems = sorted(
        [*out.items, *out.overflow()],
        key=lambda p: (
            str(p.params.get("permission_set", "")),
            p.code == "more_findings",  # the "... and M more" line closes its set's list
            p.severity != "error",
            p.code,
            p.message,
        ),
    )
    blocked = sorted(
        {
            str(p.params["permission_set"])
            for p in problems
            if p.severity == "error" and "permission_set" in p.params
        }
    )
    if blocked:
        log.warning("validation blocks %d permission sets: %s", len(blocked), ", ".join(blocked[:20]))
    return ValidationReport(problems=problems, blocked=blocked, checked=checked)


def analyzer_cache_key(policy_text: str) -> str:
    """Cache key of an Access Analyzer answer: a digest of the policy text exactly as written (findings
    point at its lines and columns, so a reformatted policy is a new question)."""
    return hashlib.sha256(policy_text.encode("utf-8")).hexdigest()


def _rejected(spec: PermissionSetSpec, error: str, out: _Problems) -> None:
    out.add(
        spec,
        "inline_policy_rejected",
        f"IAM Access Analyzer rejected the inline policy of {spec.name}: {error}. Fix the policy document.",
        error=error,
    )


def _not_found(spec: PermissionSetSpec, arn: str, code: Code, out: _Problems) -> None:
    name = managed_policy_name(arn)
    suggestions = suggest_managed_policies(name)
    what = "managed policy" if code == "managed_policy_not_found" else "permissions boundary policy"
    hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
    out.add(
        spec,
        code,
        f"The AWS {what} {name} of {spec.name} does not exist.{hint} Fix the name in the record "
        "(names are case-sensitive; customer managed policies go in their own table).",
        policy=name,
        arn=arn,
        suggestions=", ".join(suggestions),
    )


_BLOCKABLE = (
    OpKind.CREATE_PERMISSION_SET,
    OpKind.UPDATE_PERMISSION_SET,
    OpKind.PROVISION_PERMISSION_SET,
    OpKind.CREATE_ASSIGNMENT,
    OpKind.DELETE_ASSIGNMENT,
    OpKind.DELETE_PERMISSION_SET,
)


def apply_validation(plan: Plan, report: ValidationReport) -> Plan:
    """A copy of ``plan`` without the operations of blocked permission sets (they go to ``skipped``).

    A blocked set keeps its current definition in IdC, is not created, and its assignments are neither
    created nor deleted: existing access stays as it is until the record is fixed.
    """
    blocked = set(report.blocked)
    if not blocked:
        return plan.model_copy(deep=True)
    codes: dict[str, list[str]] = {}
    for p in report.problems:
        ps = p.params.get("permission_set")
        if (
            p.severity == "error"
            and isinstance(ps, str)
            and ps in blocked
            and p.code not in codes.setdefault(ps, [])
        ):
            codes[ps].append(p.code)
    kept: list[Operation] = []
    skipped: list[Skipped] = list(plan.skipped)
    for op in plan.operations:
        name = op.permission_set_name
        if name not in blocked or op.kind not in _BLOCKABLE:
            kept.append(op)
            continue
        why = ", ".join(codes.get(name, [])) or "validation errors"
        if op.kind in (OpKind.CREATE_ASSIGNMENT,):
            reason = (
                f"permission set {name} failed validation ({why}); the assignment waits until it is fixed"
            )
        elif op.kind is OpKind.DELETE_ASSIGNMENT:
            reason = f"permission set {name} failed validation ({why}); existing assignments are kept until it is fixed"
        else:
            reason = f"permission set {name} failed validation ({why}); fix its record"
        spec = op.spec if isinstance(op, PermissionSetOp) else None
        record = op.records[0] if op.records else (spec.record if spec is not None else None)
        skipped.append(Skipped(key=op.key, reason=reason, record=record))
    return plan.model_copy(update={"operations": kept, "skipped": skipped}, deep=True)
