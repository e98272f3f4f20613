"""validate_policies: catch what IAM Identity Center would reject (or should not accept) before apply.

Why: a permission set definition is typed by hand into kintone. Sending a broken one to IdC gives an
opaque ValidationException halfway through an update (a half-applied permission set), and a policy that
is valid JSON can still be dangerous or non-functional. So before anything is applied, each permission
set that the plan creates or updates is checked in three layers:

1. local rules (no AWS call): IdC's name/description/duration/relay-state rules, the inline policy's
   shape (JSON object, Version, Statement, Effect, Action, Resource) and size (≤32,768 characters,
   ≤10,240 non-whitespace), the number of attached policies (≤20; above 10 each target account needs an
   IAM quota raise), customer managed policy name/path patterns, duplicates;
2. ``iam:GetPolicy`` for every distinct AWS managed policy ARN (once per run), with "did you mean ...?"
   suggestions from a shipped catalog of real AWS managed policy names;
3. IAM Access Analyzer ``ValidatePolicy`` on the inline policy exactly as the requester wrote it (so the
   line/column it reports point into their text): ERROR and SECURITY_WARNING block the permission set,
   WARNING and SUGGESTION are advice.

An error blocks only its own permission set (:func:`apply_validation` moves that set's operations to
``plan.skipped``); the rest of the plan proceeds. If Access Analyzer or IAM cannot be reached, that is an
admin-level (run-level) problem, not the requester's, and it blocks nothing.

Problem codes (``params`` always include ``permission_set``; severity "error" unless noted):

=====================================  =====================================================================
``invalid_name``                       ``name``, ``max``
``duplicate_name``                     ``name``, ``other`` (names differing only in case)
``description_too_long``               ``length``, ``max``
``description_invalid_characters``     ``characters``
``invalid_session_duration``           ``value``
``relay_state_too_long``               ``length``, ``max``
``invalid_relay_state``                ``value``
``inline_policy_invalid_characters``   ``characters``
``inline_policy_not_json``             ``error``, ``line``, ``column``
``inline_policy_too_deep``             ``max_depth``, ``line``, ``column`` (safe_json's nesting limit)
``inline_policy_not_object``           ``type``
``inline_policy_missing_version``      (none)
``inline_policy_invalid_version``      ``value``
``inline_policy_missing_statement``    (none)
``inline_policy_invalid_statement``    ``statement``
``inline_policy_invalid_effect``       ``statement``, ``value``
``inline_policy_missing_action``       ``statement``
``inline_policy_action_and_notaction`` ``statement``
``inline_policy_missing_resource``     ``statement``
``inline_policy_too_large``            ``chars``, ``max_chars``, ``non_whitespace``, ``max_non_whitespace``
``too_many_policies``                  ``count``, ``max``
``many_policies_quota`` (warning)      ``count``, ``default_quota``
``invalid_customer_policy_name``       ``name``, ``path``
``invalid_customer_policy_path``       ``name``, ``path``
``duplicate_policy`` (warning)         ``policy``
``invalid_managed_policy_arn``         ``policy``
``managed_policy_not_found``           ``policy``, ``arn``, ``suggestions`` (comma-separated, may be empty)
``permissions_boundary_not_found``     ``policy``, ``arn``, ``suggestions``
``policy_finding_error``               ``issue_code``, ``line``, ``column``, ``details``, ``learn_more``
``policy_finding_security_warning``    same
``policy_finding_warning`` (warning)   same
``policy_finding_suggestion`` (warning) same
``inline_policy_rejected``             ``error`` (Access Analyzer's ValidationException)
``more_findings`` (error if any hidden one is) ``count``, ``shown`` (beyond MAX_FINDINGS_PER_RECORD)
``record_internal_error``              ``step``, ``error`` (an unexpected exception; see isolation.py)
``access_analyzer_unavailable``        run-level (``record`` None), warning: ``error``, ``unchecked``
``managed_policy_check_unavailable``   run-level, warning: ``error``, ``unchecked``
=====================================  =====================================================================
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from idc_sync import safe_json
from idc_sync.config import SyncConfig
from idc_sync.isolation import run_isolated
from idc_sync.model import (
    DesiredState,
    Operation,
    OpKind,
    PermissionSetSpec,
    Plan,
    Problem,
    RecordRef,
    Severity,
    Skipped,
    ValidationReport,
)
from idc_sync.policy import managed_policy_name

if TYPE_CHECKING:
    from idc_sync.aws_clients import IdcClients

LOG = logging.getLogger(__name__)

# IdC / IAM rules (botocore's sso-admin model and the IdC quotas page).
NAME_RE = re.compile(r"^[\w+=,.@-]{1,32}$", re.ASCII)
NAME_MAX = 32
DESCRIPTION_MAX = 700
DESCRIPTION_CHARS_RE = re.compile(r"^[\t\n\r\x20-\x7e\xa1-\xff]*$")
DURATION_RE = re.compile(r"^PT(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?$")  # ASCII digits only
DURATION_MIN, DURATION_MAX = 3600, 12 * 3600
RELAY_STATE_MAX = 240
RELAY_STATE_RE = re.compile(r"""^[a-zA-Z0-9&$@#\\/%?=~\-_'"|!:,.;*+\[\] (){}]+$""")
POLICY_CHARS_RE = re.compile(r"^[\t\n\r\x20-\xff]+$")
POLICY_MAX_CHARS = 32_768
POLICY_MAX_NON_WHITESPACE = 10_240
POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
MAX_POLICIES = 20
DEFAULT_POLICY_QUOTA = 10  # IAM "managed policies per role" default; more needs a raise in every account
CUSTOMER_POLICY_NAME_RE = re.compile(r"^[\w+=,.@-]{1,128}$", re.ASCII)
CUSTOMER_POLICY_PATH_RE = re.compile(r"^(/[A-Za-z0-9.,+@=_-]+)*/$")
MANAGED_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,128}$", re.ASCII)

# Work per record is bounded: a 10,000-statement policy once gave 30,008 findings (a 31 s XCom push, a
# notify busy for minutes). The first MAX_FINDINGS_PER_RECORD problems of a permission set are kept, then
# one ``more_findings`` problem counts the rest; Access Analyzer is read for at most MAX_ANALYZER_FINDINGS.
MAX_FINDINGS_PER_RECORD = 20
MAX_ANALYZER_FINDINGS = 100

BLOCKING_FINDINGS = ("ERROR", "SECURITY_WARNING")
_FINDING_CODES = {
    "ERROR": ("policy_finding_error", "error"),
    "SECURITY_WARNING": ("policy_finding_security_warning", "error"),
    "WARNING": ("policy_finding_warning", "warning"),
    "SUGGESTION": ("policy_finding_suggestion", "warning"),
}
_TRANSIENT = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "Throttling", "InternalServerException",
     "ServiceUnavailableException", "ServiceUnavailable", "ServiceFailure", "InternalFailure"}
)  # fmt: skip


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
    by_key: dict[str, list[str]] = {}
    for full in names:
        by_key.setdefault(full.lower(), []).append(full)
        base = full.rsplit("/", 1)[-1].lower()
        if base != full.lower():
            by_key.setdefault(base, []).append(full)
    out: list[str] = []
    query_base = query.rsplit("/", 1)[-1]
    for key in [query, query_base]:  # exact (case-insensitive) hits first: right name, wrong case/path
        for full in by_key.get(key, []):
            if full not in out and full != written:
                out.append(full)
    if len(query_base) >= 6:  # a missing prefix ("S3ReadOnlyAccess" for AmazonS3ReadOnlyAccess)
        containing = sorted(
            (k for k in by_key if query_base in k and k != query_base), key=lambda k: (len(k), k)
        )
        for key in containing[:2]:
            for full in by_key[key]:
                if full not in out and full != written:
                    out.append(full)
    for key in difflib.get_close_matches(query, list(by_key), n=n * 2, cutoff=0.6):
        for full in by_key[key]:
            if full not in out and full != written:
                out.append(full)
    if query_base != query:
        for key in difflib.get_close_matches(query_base, list(by_key), n=n, cutoff=0.6):
            for full in by_key[key]:
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
        code: str,
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


def _duration_seconds(value: str) -> int | None:
    m = DURATION_RE.match(value or "")
    if not m or not any(m.groups()):
        return None
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def _statement_label(index: int, statement: Any) -> str:
    sid = statement.get("Sid") if isinstance(statement, dict) else None
    return f"{index + 1} (Sid {sid})" if isinstance(sid, str) and sid else str(index + 1)


# --------------------------------------------------------------------------- local checks
def check_inline_policy(spec: PermissionSetSpec, out: _Problems) -> bool:
    """Shape and size of the inline policy; True when it is worth sending to Access Analyzer."""
    text = spec.inline_policy
    if text is None or not text.strip():
        return False
    name = spec.name
    ok = True
    if not POLICY_CHARS_RE.match(text):
        bad = "".join(sorted({ch for ch in text if not POLICY_CHARS_RE.match(ch)})[:10])
        out.add(
            spec,
            "inline_policy_invalid_characters",
            f"The inline policy of {name} contains characters IAM Identity Center does not accept ({bad}); only "
            "Latin-1 text is allowed. Remove them (for example from Sid or condition values).",
            characters=bad,
        )
        ok = False
    non_ws = sum(1 for ch in text if not ch.isspace())
    if len(text) > POLICY_MAX_CHARS or non_ws > POLICY_MAX_NON_WHITESPACE:
        out.add(
            spec,
            "inline_policy_too_large",
            f"The inline policy of {name} is too large: {len(text):,} characters ({non_ws:,} not counting "
            f"whitespace); IAM Identity Center allows {POLICY_MAX_CHARS:,} characters of which at most "
            f"{POLICY_MAX_NON_WHITESPACE:,} non-whitespace. Shorten it (wildcards, fewer statements) or move "
            "part of it to a customer managed policy.",
            chars=len(text),
            max_chars=POLICY_MAX_CHARS,
            non_whitespace=non_ws,
            max_non_whitespace=POLICY_MAX_NON_WHITESPACE,
        )
        ok = False
    try:
        doc = safe_json.loads(text)
    except safe_json.UnsafeJsonError as exc:
        if exc.reason == "too_large":
            return False  # already reported as inline_policy_too_large: not worth reading further
        if exc.reason == "too_deep":
            out.add(
                spec,
                "inline_policy_too_deep",
                f"The inline policy of {name} nests brackets more than {exc.limit} levels deep (at line "
                f"{exc.line}, column {exc.column}); an IAM policy needs at most about 6. Check for stray or "
                "repeated [ and { and rewrite the policy as Version plus a list of statements.",
                max_depth=exc.limit,
                line=exc.line,
                column=exc.column,
            )
            return False
        out.add(
            spec,
            "inline_policy_not_json",
            f"The inline policy of {name} is not valid JSON: {exc.msg} at line {exc.line}, column {exc.column}. "
            "Fix the JSON (check quotes, commas and brackets).",
            error=exc.msg,
            line=exc.line,
            column=exc.column,
        )
        return False
    if not isinstance(doc, dict):
        out.add(
            spec,
            "inline_policy_not_object",
            f"The inline policy of {name} must be a JSON object "
            '({"Version": "2012-10-17", "Statement": [...]}), not a JSON ' + type(doc).__name__ + ".",
            type=type(doc).__name__,
        )
        return False
    version = doc.get("Version")
    if version is None:
        out.add(
            spec,
            "inline_policy_missing_version",
            f'The inline policy of {name} has no "Version". Add "Version": "2012-10-17" at the top.',
        )
        ok = False
    elif version not in POLICY_VERSIONS:
        out.add(
            spec,
            "inline_policy_invalid_version",
            f'The inline policy of {name} has "Version": {json.dumps(version)}; it must be "2012-10-17" '
            '(or the legacy "2008-10-17"). It is a fixed date, not the date you wrote the policy.',
            value=str(version),
        )
        ok = False
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        out.add(
            spec,
            "inline_policy_missing_statement",
            f'The inline policy of {name} has no "Statement". Add a list of statements, each with Effect, '
            "Action and Resource.",
        )
        return False
    for i, st in enumerate(statements):
        label = _statement_label(i, st)
        if not isinstance(st, dict):
            out.add(
                spec,
                "inline_policy_invalid_statement",
                f"Statement {label} of the inline policy of {name} is not a JSON object. Each statement is "
                '{"Effect": ..., "Action": ..., "Resource": ...}.',
                statement=label,
            )
            ok = False
            continue
        effect = st.get("Effect")
        if effect not in ("Allow", "Deny"):
            out.add(
                spec,
                "inline_policy_invalid_effect",
                f'Statement {label} of the inline policy of {name} has "Effect": {json.dumps(effect)}; it must be '
                '"Allow" or "Deny" (case-sensitive).',
                statement=label,
                value=None if effect is None else str(effect),
            )
            ok = False
        has_action, has_not_action = "Action" in st, "NotAction" in st
        if not has_action and not has_not_action:
            out.add(
                spec,
                "inline_policy_missing_action",
                f'Statement {label} of the inline policy of {name} has no "Action" (or "NotAction"). Add the '
                'actions it allows or denies, for example "Action": ["s3:GetObject"].',
                statement=label,
            )
            ok = False
        elif has_action and has_not_action:
            out.add(
                spec,
                "inline_policy_action_and_notaction",
                f'Statement {label} of the inline policy of {name} has both "Action" and "NotAction"; keep only one.',
                statement=label,
            )
            ok = False
        if "Resource" not in st and "NotResource" not in st:
            out.add(
                spec,
                "inline_policy_missing_resource",
                f'Statement {label} of the inline policy of {name} has no "Resource". Identity policies need '
                'one: add "Resource": "*" or the ARNs it applies to.',
                statement=label,
            )
            ok = False
    return ok


def check_local(spec: PermissionSetSpec, out: _Problems) -> bool:
    """All checks that need no AWS call; True when the inline policy may go to Access Analyzer."""
    name = spec.name
    if not NAME_RE.match(name):
        out.add(
            spec,
            "invalid_name",
            f"The permission set name '{name}' is not valid: use 1-{NAME_MAX} characters of letters, digits and "
            "+ = , . @ - _ (no spaces or Japanese).",
            name=name,
            max=NAME_MAX,
        )
    description = spec.description or ""
    if len(description) > DESCRIPTION_MAX:
        out.add(
            spec,
            "description_too_long",
            f"The description of {name} has {len(description)} characters; IAM Identity Center allows at most "
            f"{DESCRIPTION_MAX}. Shorten it.",
            length=len(description),
            max=DESCRIPTION_MAX,
        )
    if not DESCRIPTION_CHARS_RE.match(description):
        bad = "".join(sorted({ch for ch in description if not DESCRIPTION_CHARS_RE.match(ch)})[:10])
        out.add(
            spec,
            "description_invalid_characters",
            f"The description of {name} contains characters IAM Identity Center does not accept ({bad}); only "
            "Latin-1 text is allowed (no Japanese or emoji). Rewrite it.",
            characters=bad,
        )
    seconds = _duration_seconds(spec.session_duration)
    if seconds is None or not DURATION_MIN <= seconds <= DURATION_MAX:
        out.add(
            spec,
            "invalid_session_duration",
            f"The session duration '{spec.session_duration}' of {name} is not valid: use an ISO-8601 duration "
            "from PT1H to PT12H (for example PT4H).",
            value=spec.session_duration,
        )
    relay = spec.relay_state
    if relay is not None:
        if len(relay) > RELAY_STATE_MAX:
            out.add(
                spec,
                "relay_state_too_long",
                f"The relay state of {name} has {len(relay)} characters; at most {RELAY_STATE_MAX} are allowed. "
                "Use a shorter console URL.",
                length=len(relay),
                max=RELAY_STATE_MAX,
            )
        elif not RELAY_STATE_RE.match(relay):
            out.add(
                spec,
                "invalid_relay_state",
                f"The relay state of {name} is not a valid URL for IAM Identity Center (no non-ASCII characters "
                "or angle brackets). Use a console URL such as https://console.aws.amazon.com/ec2/.",
                value=relay[:RELAY_STATE_MAX],
            )

    # Attached policies: count, patterns, duplicates.
    total = len(set(spec.managed_policies)) + len({(c.name, c.path) for c in spec.customer_managed_policies})
    if total > MAX_POLICIES:
        out.add(
            spec,
            "too_many_policies",
            f"{name} has {total} managed and customer managed policies; IAM Identity Center allows at most "
            f"{MAX_POLICIES}. Combine some of them into a customer managed policy or the inline policy.",
            count=total,
            max=MAX_POLICIES,
        )
    elif total > DEFAULT_POLICY_QUOTA:
        out.add(
            spec,
            "many_policies_quota",
            f"{name} has {total} managed and customer managed policies. More than {DEFAULT_POLICY_QUOTA} works "
            "only where the IAM quota 'managed policies per role' has been raised in every target account; "
            "otherwise provisioning fails there.",
            severity="warning",
            count=total,
            default_quota=DEFAULT_POLICY_QUOTA,
        )
    for arn in spec.managed_policies:
        if not MANAGED_ARN_RE.match(arn):
            out.add(
                spec,
                "invalid_managed_policy_arn",
                f"'{arn}' in {name} is not an AWS managed policy. Write its name (ReadOnlyAccess), path and "
                "name (job-function/ViewOnlyAccess) or ARN; customer managed policies go in their own table.",
                policy=arn,
            )
    for ref in spec.customer_managed_policies:
        if not CUSTOMER_POLICY_NAME_RE.match(ref.name):
            out.add(
                spec,
                "invalid_customer_policy_name",
                f"The customer managed policy name '{ref.name}' of {name} is not valid: 1-128 letters, digits "
                "and + = , . @ - _.",
                name=ref.name,
                path=ref.path,
            )
        if len(ref.path) > 512 or not CUSTOMER_POLICY_PATH_RE.match(ref.path):
            out.add(
                spec,
                "invalid_customer_policy_path",
                f"The path '{ref.path}' of customer managed policy '{ref.name}' in {name} is not valid: it "
                "starts and ends with '/', for example / or /team/.",
                name=ref.name,
                path=ref.path,
            )
    seen: set[str] = set()
    for label in [*spec.managed_policies, *(f"{c.path}{c.name}" for c in spec.customer_managed_policies)]:
        if label in seen:
            out.add(
                spec,
                "duplicate_policy",
                f"{label} is listed twice in {name}; it is attached once. Remove the duplicate line.",
                severity="warning",
                policy=label,
            )
        seen.add(label)
    boundary = spec.permissions_boundary
    if boundary is not None and boundary.customer_managed_policy is not None:
        ref = boundary.customer_managed_policy
        if not CUSTOMER_POLICY_NAME_RE.match(ref.name) or not CUSTOMER_POLICY_PATH_RE.match(ref.path):
            out.add(
                spec,
                "invalid_customer_policy_name",
                f"The permissions boundary customer:{ref.path}{ref.name} of {name} is not a valid policy "
                "reference (name: 1-128 letters, digits and + = , . @ - _; path like / or /team/).",
                name=ref.name,
                path=ref.path,
            )
    elif (
        boundary is not None
        and boundary.managed_policy_arn
        and not MANAGED_ARN_RE.match(boundary.managed_policy_arn)
    ):
        out.add(
            spec,
            "invalid_managed_policy_arn",
            f"The permissions boundary '{boundary.managed_policy_arn}' of {name} is not an AWS managed policy.",
            policy=boundary.managed_policy_arn,
        )
    return check_inline_policy(spec, out)


# --------------------------------------------------------------------------- AWS checks
def _retrying(sleep: Callable[[float], None], attempts: int) -> Retrying:
    def transient(exc: BaseException) -> bool:
        if isinstance(exc, ClientError):
            return str(exc.response.get("Error", {}).get("Code", "")) in _TRANSIENT
        return isinstance(exc, BotoCoreError)

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.5, max=10),
        retry=retry_if_exception(transient),
        sleep=sleep,
        reraise=True,
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def _code(exc: BaseException) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


class _AwsChecks:
    def __init__(
        self, clients: IdcClients, sleep: Callable[[float], None], attempts: int, workers: int
    ) -> None:
        self.clients = clients
        self.sleep = sleep
        self.attempts = attempts
        self.workers = workers

    def policies_exist(self, arns: Iterable[str]) -> tuple[dict[str, bool], list[tuple[str, str]]]:
        """ARN -> exists (one GetPolicy per distinct ARN); plus (arn, error) for those that could not be checked."""
        exists: dict[str, bool] = {}
        errors: list[tuple[str, str]] = []

        def one(arn: str) -> None:
            try:
                _retrying(self.sleep, self.attempts)(self.clients.iam.get_policy, PolicyArn=arn)
                exists[arn] = True
            except ClientError as exc:
                if _code(exc) == "NoSuchEntity":
                    exists[arn] = False
                else:
                    errors.append((arn, _error_text(exc)))
            except BotoCoreError as exc:
                errors.append((arn, _error_text(exc)))

        todo = sorted(set(arns))
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(todo)))) as ex:
                list(ex.map(one, todo))
        return exists, errors

    def validate_policy(self, text: str) -> list[dict[str, Any]]:
        """Access Analyzer findings for an identity policy (paginated; at most MAX_ANALYZER_FINDINGS: more
        would only be counted and dropped). Raises on failure."""
        findings: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"policyDocument": text, "policyType": "IDENTITY_POLICY", "locale": "EN"}
            if token:
                params["nextToken"] = token
            page = _retrying(self.sleep, self.attempts)(self.clients.accessanalyzer.validate_policy, **params)
            findings.extend(page.get("findings", []))
            token = page.get("nextToken")
            if not token or len(findings) >= MAX_ANALYZER_FINDINGS:
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
        severity=severity,  # type: ignore[arg-type]
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
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 5,
    workers: int = 4,
    log: logging.Logger | None = None,
    analyzer_cache: MutableMapping[str, Any] | None = None,
) -> ValidationReport:
    """Check the permission sets of ``desired`` (or only the names in ``only``: pass the sets the plan
    creates or updates, a run reads only what it must). ``clients=None`` runs the local checks only.

    Returns the problems and the names of the blocked permission sets (any problem of severity error).

    ``analyzer_cache`` (optional, mutable): Access Analyzer answers by :func:`analyzer_cache_key` of the
    policy text, kept by the caller across runs. An unchanged policy is then not sent again (one call per
    inline policy every ten minutes would cost for nothing), yet its findings are reported every run, so a
    record's problems stay stable. Hits and new answers are written to it; failures are never cached.
    """
    log = log or LOG
    specs = [spec for name, spec in sorted(desired.permission_sets.items()) if only is None or name in only]
    out = _Problems()

    # Names that differ only in case (IdC treats them as the same name).
    first: dict[str, str] = {}
    for name in sorted(desired.permission_sets):
        key = name.casefold()
        if key in first and (only is None or name in only):
            out.add(
                desired.permission_sets[name],
                "duplicate_name",
                f"The permission set name '{name}' differs from '{first[key]}' only in upper/lower case; "
                "IAM Identity Center treats them as the same name. Rename one of them.",
                name=name,
                other=first[key],
            )
        first.setdefault(key, name)

    def isolated(spec: PermissionSetSpec, check: Callable[[], bool]) -> bool:
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

    to_analyze: list[PermissionSetSpec] = [
        spec for spec in specs if isolated(spec, functools.partial(check_local, spec, out))
    ]

    if clients is not None and specs:
        aws = _AwsChecks(clients, sleep, max_attempts, workers)

        # Managed policies (and managed boundaries): one GetPolicy per distinct well-formed ARN.
        wanted: set[str] = set()
        for spec in specs:
            wanted.update(a for a in spec.managed_policies if MANAGED_ARN_RE.match(a))
            b = spec.permissions_boundary
            if b is not None and b.managed_policy_arn and MANAGED_ARN_RE.match(b.managed_policy_arn):
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
            isolated(spec, functools.partial(not_found, spec))
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

        # Access Analyzer on each inline policy, as written.
        failures: list[tuple[str, str]] = []

        def analyze(spec: PermissionSetSpec) -> bool:
            assert spec.inline_policy is not None
            cache_key = analyzer_cache_key(spec.inline_policy)
            cached = analyzer_cache.get(cache_key) if analyzer_cache is not None else None
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
                if _code(exc) == "ValidationException":
                    _rejected(spec, _error_text(exc), out)
                    if analyzer_cache is not None:
                        analyzer_cache[cache_key] = {"rejected": _error_text(exc), "at": time.time()}
                else:
                    failures.append((spec.name, _error_text(exc)))
                return True
            except BotoCoreError as exc:
                failures.append((spec.name, _error_text(exc)))
                return True
            if analyzer_cache is not None:
                analyzer_cache[cache_key] = {"findings": findings, "at": time.time()}
            for finding in findings:
                _finding_problem(spec, finding, out)
            return True

        if to_analyze:
            with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_analyze)))) as ex:
                list(ex.map(lambda spec: isolated(spec, lambda: analyze(spec)), to_analyze))
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
    return ValidationReport(problems=problems, blocked=blocked, checked=len(specs))


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


def _not_found(spec: PermissionSetSpec, arn: str, code: str, out: _Problems) -> None:
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
        record = op.records[0] if op.records else (op.spec.record if op.spec is not None else None)
        skipped.append(Skipped(key=op.key, reason=reason, record=record))
    return plan.model_copy(update={"operations": kept, "skipped": skipped}, deep=True)


def permission_sets_to_validate(plan: Plan) -> set[str]:
    """Names the plan creates or updates: the ``only`` argument for :func:`validate_permission_sets`.

    Unchanged permission sets were validated when they last changed; re-checking all of them every ten
    minutes would spend Access Analyzer/IAM calls for nothing.
    """
    return {
        op.permission_set_name
        for op in plan.operations
        if op.kind in (OpKind.CREATE_PERMISSION_SET, OpKind.UPDATE_PERMISSION_SET)
    }
