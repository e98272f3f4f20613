"""Raw kintone records of the two apps -> typed :class:`~idc_sync.model.DesiredState`.

Why this shape: people type these records by hand, so anything can be in them, and a typo must never
revoke access or half-apply a permission set. So:

* a record that cannot be understood becomes a :class:`~idc_sync.model.Problem` on *that* record (stable
  ``code``, an English message saying what to do, ``params`` for translations), never an exception; one bad
  record never blocks the others;
* a permission set record with any error is left out of ``permission_sets`` and its name goes to
  ``held_permission_sets``: the permission set keeps its current definition in IdC;
* an assignment record is all-or-nothing for what changes its meaning (principal type, principals,
  permission set, expiry date: a mistyped date must never become permanent access) but per line for
  ``targets``: a bad line is reported and the other targets still count;
* the same principal x target x permission set named by several records is kept once (the first record
  by record id) with the most generous expiry; the later records get a ``duplicate_assignment`` warning;
* a configured field code missing from the app is one run-level ``missing_field`` problem (an admin's
  mistake), and its records are skipped: a wrong code must never read as "empty".

Field rules (lengths, patterns, durations, ids) are :mod:`idc_sync.idc_fields`'s. Field codes come from
:class:`~idc_sync.config.SyncConfig`; system fields (``$id``, ``$revision``, modifier, created/updated time)
are found by *type*, because their codes depend on the app's language. Problem codes and their params are
at each ``c.add`` call below.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from idc_sync import idc_fields
from idc_sync.config import AssignmentFields, PermissionSetFields, SyncConfig
from idc_sync.idc_fields import normalise_session_duration, normalise_target
from idc_sync.isolation import internal_error_problem
from idc_sync.model import (
    AppKey,
    AssignmentSpec,
    CustomerPolicyRef,
    DesiredState,
    PermissionsBoundary,
    PermissionSetSpec,
    Problem,
    RecordRef,
    Severity,
)
from idc_sync.policy import managed_policy_arn
from idc_sync.problems import Code

log = logging.getLogger(__name__)

MAX_PROBLEMS_PER_RECORD = 20  # as validation's MAX_FINDINGS_PER_RECORD: what a comment lists

# Items on one line of a list field: whitespace, commas, semicolons (also ideographic/full-width , ;).
_SEPARATORS = re.compile("[\\s,;\u3001\uff0c\uff1b]+")


# --------------------------------------------------------------------------- record access
class _MissingField(Exception):
    """A configured field absent from a record (:func:`_missing_fields` screens for it first)."""


def _system_value(record: Mapping[str, Any], kind: str) -> Any:
    for f in record.values():
        if isinstance(f, dict) and f.get("type") == kind:
            return f.get("value")
    return None


def _value(record: Mapping[str, Any], code: str) -> Any:
    f = record.get(code)
    if not isinstance(f, dict) or "value" not in f:
        raise _MissingField(code)
    return f["value"]


def _text(record: Mapping[str, Any], code: str) -> str:
    value = _value(record, code)
    if value is None:
        return ""
    if isinstance(value, list):  # e.g. a CHECK_BOX where text was expected
        return "\n".join(str(v) for v in value)
    return str(value)


def _users(record: Mapping[str, Any], code: str) -> list[str]:
    value = _value(record, code)
    out: list[str] = []
    for entry in value or []:
        user_code = entry.get("code") if isinstance(entry, dict) else entry
        if isinstance(user_code, str) and user_code.strip() and user_code.strip() not in out:
            out.append(user_code.strip())
    return out


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _record_id(record: Mapping[str, Any]) -> str:
    value = _system_value(record, "__ID__")
    if value is None and isinstance(record.get("$id"), dict):
        value = record["$id"].get("value")
    return str(value) if value is not None else ""


def _sort_key(record: Mapping[str, Any]) -> tuple[int, str]:
    rid = _record_id(record)
    return (int(rid), rid) if rid.isascii() and rid.isdigit() else (10**18, rid)


def _ref(
    record: Mapping[str, Any], app: AppKey, app_id: str, extra_mentions: Iterable[str] = ()
) -> RecordRef:
    modifier = _system_value(record, "MODIFIER")
    mentions: list[str] = []
    if isinstance(modifier, dict) and modifier.get("code"):
        mentions.append(str(modifier["code"]))
    for code in extra_mentions:
        if code not in mentions:
            mentions.append(code)
    revision = _system_value(record, "__REVISION__")
    return RecordRef(
        app=app,
        app_id=str(app_id),
        record_id=_record_id(record),
        revision=str(revision) if revision is not None else "",
        mentions=tuple(mentions),
        created_at=_parse_time(_system_value(record, "CREATED_TIME")),
        updated_at=_parse_time(_system_value(record, "UPDATED_TIME")),
    )


@dataclass
class _Collector:
    """Problems of one record; ``failed`` tells whether any was an error. At most
    :data:`MAX_PROBLEMS_PER_RECORD` are kept (20,000 bad target lines are not 20,000 comments); ``all()``
    counts the rest in one ``more_findings``."""

    ref: RecordRef
    problems: list[Problem] = field(default_factory=list)
    dropped: int = 0
    subject: str = ""  # the permission set the record is about, for ``more_findings``

    def add(self, code: Code, message: str, severity: Severity = "error", **params: Any) -> None:
        if len(self.problems) >= MAX_PROBLEMS_PER_RECORD:
            self.dropped += 1
            return
        self.problems.append(
            Problem(code=code, message=message, severity=severity, record=self.ref, params=params)
        )

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def all(self) -> list[Problem]:
        if not self.dropped:
            return self.problems
        more = Problem(
            code="more_findings",
            message=f"... and {self.dropped} more finding(s) are not listed (at most "
            f"{MAX_PROBLEMS_PER_RECORD} per record). Fix the listed ones; the rest are reported once they are fixed.",
            record=self.ref,
            params={"permission_set": self.subject, "count": self.dropped, "shown": MAX_PROBLEMS_PER_RECORD},
        )
        return [*self.problems, more]


def split_lines(text: str) -> list[tuple[int, str]]:
    """Non-blank items with their 1-based line number; items on a line may be separated by commas etc."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for item in _SEPARATORS.split(line):
            item = item.strip().strip("\"'`\u201c\u201d\u2018\u2019")
            if item:
                out.append((number, item))
    return out


def normalise_policy_path(path: str) -> str:
    """IAM paths start and end with ``/``; people write ``team``, ``/team`` or ``team/``."""
    path = path.strip()
    if not path or path == "/":
        return "/"
    return "/" + path.strip("/") + "/"


def parse_customer_policy(value: str) -> CustomerPolicyRef | None:
    """``/path/Name``, ``path/Name`` or ``Name`` -> a reference; None when not a valid name/path."""
    text = value.strip()
    if "/" in text.strip("/"):
        path, _, name = text.strip("/").rpartition("/")
        path = normalise_policy_path(path)
    else:
        name, path = text.strip("/"), "/"
    if not idc_fields.is_policy_name(name) or not idc_fields.is_policy_path(path):
        return None
    return CustomerPolicyRef(name=name, path=path)


def parse_permissions_boundary(value: str) -> PermissionsBoundary | None:
    """An AWS managed policy name/ARN, or ``customer:/path/Name`` (``customer:Name``); None if invalid."""
    text = value.strip()
    if text.lower().startswith("customer:"):
        ref = parse_customer_policy(text.split(":", 1)[1])
        return PermissionsBoundary(customer_managed_policy=ref) if ref else None
    arn = _managed_arn(text)
    return PermissionsBoundary(managed_policy_arn=arn) if arn else None


def _managed_arn(value: str) -> str | None:
    try:
        arn = managed_policy_arn(value)
    except ValueError:
        return None
    return arn if idc_fields.is_managed_policy_arn(arn) else None


# --------------------------------------------------------------------------- permission sets
def _parse_permission_set(
    record: Mapping[str, Any], config: SyncConfig, app_id: str
) -> tuple[PermissionSetSpec | None, str | None, RecordRef, list[Problem]]:
    """-> (spec or None, the name when known, the record's ref, problems)."""
    f = config.permission_set_fields
    c = _Collector(_ref(record, "permission_sets", app_id, _users(record, f.owners)))
    name = _ps_name(record, f, c)
    c.subject = name
    description = _description(record, f, c)
    duration = _session_duration(record, f, c)
    managed = _managed_policies(record, f, c)
    customer = _customer_policies(record, f, c)
    inline = _text(record, f.inline_policy)
    boundary = _permissions_boundary(record, f, c)
    relay_state = _relay_state(record, f, c)
    if c.failed or duration is None:
        return None, name or None, c.ref, c.all()
    spec = PermissionSetSpec(
        name=name,
        description=description,
        session_duration=duration,
        relay_state=relay_state,
        managed_policies=managed,
        customer_managed_policies=customer,
        inline_policy=inline if inline.strip() else None,
        permissions_boundary=boundary,
        record=c.ref,
    )
    return spec, name, c.ref, c.all()


def _ps_name(record: Mapping[str, Any], f: PermissionSetFields, c: _Collector) -> str:
    name = _text(record, f.name).strip()
    if not name:
        c.add(
            "missing_name",
            f"The permission set has no name. Fill in the field '{f.name}' (1-32 characters: letters, digits "
            "and + = , . @ - _).",
            field=f.name,
        )
    return name


def _description(record: Mapping[str, Any], f: PermissionSetFields, c: _Collector) -> str:
    description = _text(record, f.description).strip()
    if not idc_fields.is_description(description):
        bad = idc_fields.description_bad_characters(description)
        c.add(
            "invalid_description",
            f"The description in '{f.description}' cannot be used by IAM Identity Center: it allows at most "
            f"{idc_fields.DESCRIPTION_MAX} characters of Latin-1 text (no Japanese or emoji). Shorten or rewrite it"
            + (f" (unsupported characters: {bad})." if bad else "."),
            field=f.description,
            length=len(description),
            max=idc_fields.DESCRIPTION_MAX,
            characters=bad,
        )
    return description


def _session_duration(record: Mapping[str, Any], f: PermissionSetFields, c: _Collector) -> str | None:
    """The duration as IdC stores it (empty field: the default, PT1H); None when invalid."""
    raw = _text(record, f.session_duration).strip()
    if not raw:
        return idc_fields.SESSION_DURATION_DEFAULT
    duration = normalise_session_duration(raw)
    if duration is None:
        c.add(
            "invalid_session_duration",
            f"The session duration '{raw}' in '{f.session_duration}' is not valid. Choose an ISO-8601 "
            "duration from PT1H to PT12H (for example PT4H).",
            field=f.session_duration,
            value=raw,
        )
    return duration


def _managed_policies(record: Mapping[str, Any], f: PermissionSetFields, c: _Collector) -> list[str]:
    """ARNs of the AWS managed policies, one per line (name, path/name or ARN), sorted and unique."""
    managed: set[str] = set()
    for line, item in split_lines(_text(record, f.managed_policies)):
        arn = _managed_arn(item)
        if arn is None:
            c.add(
                "invalid_managed_policy",
                f"Line {line} of '{f.managed_policies}' ('{item}') is not an AWS managed policy. Write its name "
                "(ReadOnlyAccess), path and name (job-function/ViewOnlyAccess) or ARN "
                "(arn:aws:iam::aws:policy/...); customer managed policies go in the table "
                f"'{f.customer_managed_policies}'.",
                field=f.managed_policies,
                value=item,
                line=line,
            )
        else:
            managed.add(arn)
    return sorted(managed)


def _customer_policies(
    record: Mapping[str, Any], f: PermissionSetFields, c: _Collector
) -> list[CustomerPolicyRef]:
    """The rows of the customer managed policies table (empty rows skipped), sorted by path and name."""
    customer: dict[tuple[str, str], CustomerPolicyRef] = {}
    rows = _value(record, f.customer_managed_policies) or []
    for row_number, row in enumerate(rows, start=1):
        cells = row.get("value", {}) if isinstance(row, dict) else {}
        cmp_name = _text(cells, f.cmp_name).strip() if f.cmp_name in cells else ""
        cmp_path = _text(cells, f.cmp_path).strip() if f.cmp_path in cells else ""
        if not cmp_name:
            if cmp_path and cmp_path != "/":
                c.add(
                    "invalid_customer_managed_policy",
                    f"Row {row_number} of '{f.customer_managed_policies}' has a path but no policy name. "
                    "Fill in the name or delete the row.",
                    field=f.customer_managed_policies,
                    name="",
                    path=cmp_path,
                    row=row_number,
                )
            continue  # an empty row (kintone shows one by default)
        path = normalise_policy_path(cmp_path)
        if not idc_fields.is_policy_name(cmp_name) or not idc_fields.is_policy_path(path):
            c.add(
                "invalid_customer_managed_policy",
                f"Row {row_number} of '{f.customer_managed_policies}' (name '{cmp_name}', path '{cmp_path or '/'}') "
                "is not a valid IAM policy reference. The name is up to 128 letters, digits and + = , . @ - _; the "
                "path looks like / or /team/.",
                field=f.customer_managed_policies,
                name=cmp_name,
                path=cmp_path,
                row=row_number,
            )
            continue
        customer[(path, cmp_name)] = CustomerPolicyRef(name=cmp_name, path=path)
    return [customer[k] for k in sorted(customer)]


def _permissions_boundary(
    record: Mapping[str, Any], f: PermissionSetFields, c: _Collector
) -> PermissionsBoundary | None:
    raw = _text(record, f.permissions_boundary).strip()
    boundary = parse_permissions_boundary(raw) if raw else None
    if raw and boundary is None:
        c.add(
            "invalid_permissions_boundary",
            f"The permissions boundary '{raw}' in '{f.permissions_boundary}' is not understood. Write an "
            "AWS managed policy name or ARN (PowerUserAccess), or a customer managed policy as customer:/path/Name.",
            field=f.permissions_boundary,
            value=raw,
        )
    return boundary


def _relay_state(record: Mapping[str, Any], f: PermissionSetFields, c: _Collector) -> str | None:
    relay_state = _text(record, f.relay_state).strip() or None
    if relay_state and not idc_fields.is_relay_state(relay_state):
        c.add(
            "invalid_relay_state",
            f"The relay state in '{f.relay_state}' must be an https:// console URL of at most {idc_fields.RELAY_STATE_MAX} "
            "characters without spaces or non-ASCII characters (for example https://console.aws.amazon.com/ec2/).",
            field=f.relay_state,
            value=relay_state[: idc_fields.RELAY_STATE_MAX],
            max=idc_fields.RELAY_STATE_MAX,
        )
    return relay_state


# --------------------------------------------------------------------------- assignments
def _parse_assignment(
    record: Mapping[str, Any], config: SyncConfig, app_id: str
) -> tuple[list[AssignmentSpec], list[Problem]]:
    f = config.assignment_fields
    c = _Collector(_ref(record, "assignments", app_id))
    principal_type, principals = _principals(record, config, c)
    targets = _targets(record, f, c)
    ps_name = _text(record, f.permission_set).strip()
    if not ps_name:
        c.add(
            "missing_permission_set",
            f"No permission set is chosen. Pick one in '{f.permission_set}'.",
            field=f.permission_set,
        )
    # A name not in the permission sets app is not an error here: the lookup may still hold the old name
    # of a renamed record (kintone copies it at save time). The plan, which knows IdC, tells a rename
    # (``permission_set_renamed``) from an unknown name (``unknown_permission_set``).
    expires_on = _expires_on(record, f, c)

    c.subject = ps_name
    # Target lines fail alone; every other error makes the whole record mean nothing.
    if any(p.severity == "error" and p.code != "invalid_target" for p in c.problems):
        return [], c.all()
    specs = [
        AssignmentSpec(
            principal_type=principal_type,  # type: ignore[arg-type]
            principal_name=principal,
            target=target,
            permission_set_name=ps_name,
            expires_on=expires_on,
            record=c.ref,
        )
        for principal in dict.fromkeys(principals)
        for target in targets
    ]
    return specs, c.all()


def _principals(record: Mapping[str, Any], config: SyncConfig, c: _Collector) -> tuple[str, list[str]]:
    """-> (principal type as written, upper-cased; IdC user names or the group's display name)."""
    f = config.assignment_fields
    raw_type = _text(record, f.principal_type).strip()
    principal_type = raw_type.upper()
    users = _users(record, f.users)
    group_name = _text(record, f.group_name).strip()
    if principal_type == "USER":
        principals = _user_names(users, config, c)
        if group_name:
            c.add(
                "ignored_field",
                f"'{f.group_name}' is ignored because '{f.principal_type}' is USER. Clear it, or set the type to "
                "GROUP to assign the group instead.",
                severity="warning",
                field=f.group_name,
                principal_type="USER",
            )
        return principal_type, principals
    if principal_type == "GROUP":
        if not group_name:
            c.add(
                "no_principals",
                f"No group is named. Fill in '{f.group_name}' with the group's display name in IAM Identity "
                f"Center (or set '{f.principal_type}' to USER and select users).",
                field=f.group_name,
                principal_type="GROUP",
            )
        if users:
            c.add(
                "ignored_field",
                f"'{f.users}' is ignored because '{f.principal_type}' is GROUP. Clear it, or set the type to USER "
                "to assign the users instead.",
                severity="warning",
                field=f.users,
                principal_type="GROUP",
            )
        return principal_type, [group_name] if group_name else []
    c.add(
        "invalid_principal_type",
        f"'{f.principal_type}' is '{raw_type}'; it must be USER or GROUP.",
        field=f.principal_type,
        value=raw_type,
    )
    return principal_type, []


def _user_names(users: list[str], config: SyncConfig, c: _Collector) -> list[str]:
    """kintone user codes -> IdC user names (``user_name_template``)."""
    f = config.assignment_fields
    if not users:
        c.add(
            "no_principals",
            f"No user is selected. Choose at least one user in '{f.users}' (or set '{f.principal_type}' to "
            "GROUP and fill in the group name).",
            field=f.users,
            principal_type="USER",
        )
    names: list[str] = []
    for code in users:
        try:
            names.append(config.user_name_template.format(code=code).strip())
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            c.add(
                "invalid_user_name_template",
                f"The idc-sync setting user_name_template '{config.user_name_template}' cannot be applied "
                f"({type(exc).__name__}: {exc}). An administrator must fix it; only {{code}} is available.",
                template=config.user_name_template,
                error=str(exc),
            )
            break
    return names


def _targets(record: Mapping[str, Any], f: AssignmentFields, c: _Collector) -> list[str]:
    """Canonical account/OU ids, unique, in the order written; a bad line is reported and skipped."""
    targets: list[str] = []
    items = split_lines(_text(record, f.targets))
    if not items:
        c.add(
            "no_targets",
            f"No target is given. Write one 12-digit AWS account id or OU id (ou-...) per line in '{f.targets}'.",
            field=f.targets,
        )
    for line, item in items:
        target = normalise_target(item)
        if target is None:
            hint = ""
            if not item.isascii() and any(ch.isdigit() for ch in item):
                hint = " Write ids with ASCII digits 0-9 (not full-width or other scripts' digits)."
            elif item.isdigit():
                hint = " An account id has exactly 12 digits; check that a leading zero was not lost."
            c.add(
                "invalid_target",
                f"Line {line} of '{f.targets}' ('{item}') is neither a 12-digit AWS account id nor an OU id "
                f"(ou-xxxx-xxxxxxxx); it is skipped, the other targets still apply.{hint}",
                field=f.targets,
                value=item,
                line=line,
            )
        elif target not in targets:
            targets.append(target)
    return targets


def _expires_on(record: Mapping[str, Any], f: AssignmentFields, c: _Collector) -> dt.date | None:
    raw = _text(record, f.expires_on).strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        c.add(
            "invalid_expires_on",
            f"'{f.expires_on}' is '{raw}', not a date. Write it as YYYY-MM-DD, or leave it empty for "
            "permanent access.",
            field=f.expires_on,
            value=raw,
        )
        return None


def _later(a: dt.date | None, b: dt.date | None) -> dt.date | None:
    """The more generous expiry: no expiry wins, else the later day."""
    if a is None or b is None:
        return None
    return max(a, b)


# --------------------------------------------------------------------------- entry point
def _row_lacks(record: Mapping[str, Any], table: str, code: str) -> bool:
    rows = record.get(table, {}).get("value") if isinstance(record.get(table), dict) else None
    return any(
        isinstance(row, dict)
        and isinstance(row.get("value"), dict)
        and not isinstance(row["value"].get(code), dict)
        for row in rows or []
    )


def _missing_fields(
    records: list[dict[str, Any]],
    codes: Iterable[str],
    app: AppKey,
    app_id: str,
    problems: list[Problem],
    subtable_codes: Iterable[tuple[str, str]] = (),
) -> set[int]:
    """Reports configured field codes absent from records once per field (not once per record: a wrong
    field code is an admin's configuration error, not the requester's); returns the affected indexes.

    A wrong code must never read as "empty": an empty policy field would *remove* the policies in IdC.
    """
    affected: set[int] = set()
    checks: list[tuple[str, Any]] = [
        (code, lambda r, c=code: not isinstance(r.get(c), dict)) for code in codes
    ]
    checks += [
        (f"{table}.{code}", lambda r, t=table, c=code: _row_lacks(r, t, c)) for table, code in subtable_codes
    ]
    for code, lacks in checks:
        missing = [i for i, r in enumerate(records) if lacks(r)]
        if not missing:
            continue
        affected.update(missing)
        problems.append(
            Problem(
                code="missing_field",
                message=(
                    f"The {app.replace('_', ' ')} app (id {app_id}) has no field with code '{code}' "
                    f"({len(missing)} of {len(records)} records skipped). Fix the field code in the app's form or "
                    "in the idc_sync configuration (permission_set_fields / assignment_fields)."
                ),
                severity="error",
                record=None,
                params={"field": code, "app": app, "records": len(missing)},
            )
        )
    return affected


def parse_desired_state(
    ps_records: list[dict[str, Any]],
    asg_records: list[dict[str, Any]],
    config: SyncConfig,
    *,
    app_ids: Mapping[str, str] | None = None,
) -> DesiredState:
    """Turns the records of both apps into the desired state plus per-record problems. Never raises for
    record content."""
    ids = {
        "permission_sets": str(config.permission_sets_app_id),
        "assignments": str(config.assignments_app_id),
        **{k: str(v) for k, v in (app_ids or {}).items()},
    }
    state = DesiredState(records_read={"permission_sets": len(ps_records), "assignments": len(asg_records)})
    _read_permission_sets(ps_records, config, ids, state)
    _read_assignments(asg_records, config, ids, state)
    errors = sum(1 for p in state.problems if p.severity == "error")
    log.info(
        "parsed %d permission set records and %d assignment records: %d permission sets, %d held, "
        "%d assignments, %d errors, %d warnings",
        len(ps_records),
        len(asg_records),
        len(state.permission_sets),
        len(state.held_permission_sets),
        len(state.assignments),
        errors,
        len(state.problems) - errors,
    )
    return state


def _read_permission_sets(
    records: list[dict[str, Any]], config: SyncConfig, ids: Mapping[str, str], state: DesiredState
) -> None:
    """Fills ``state.permission_sets`` and ``held_permission_sets`` (names whose record has errors)."""
    ps_sorted = sorted(records, key=_sort_key)
    pf = config.permission_set_fields
    codes = [getattr(pf, n) for n in type(pf).model_fields if n not in ("cmp_name", "cmp_path")]
    subtable = [(pf.customer_managed_policies, pf.cmp_name), (pf.customer_managed_policies, pf.cmp_path)]
    skip = _missing_fields(
        ps_sorted, codes, "permission_sets", ids["permission_sets"], state.problems, subtable
    )
    first_by_name: dict[str, str] = {}  # casefolded name -> record id of the first record
    held: set[str] = set()
    for i, record in enumerate(ps_sorted):
        if i in skip:
            if raw := _raw_name(record, pf.name):
                held.add(raw)
            continue
        ref: RecordRef | None
        try:
            spec, name, ref, record_problems = _parse_permission_set(record, config, ids["permission_sets"])
        except Exception as exc:  # anything unforeseen in one record must not stop the run
            problem = _unreadable(record, "permission_sets", ids, exc)
            spec, name, ref, record_problems = None, _raw_name(record, pf.name), problem.record, [problem]
        if name and name.casefold() in first_by_name:
            first = first_by_name[name.casefold()]
            state.problems.extend([*record_problems, _duplicate_name(name, first, ref)])
            continue
        if name:
            first_by_name[name.casefold()] = _record_id(record)
        state.problems.extend(record_problems)
        if spec is not None:
            state.permission_sets[spec.name] = spec
        elif name:
            held.add(name)
    state.held_permission_sets = sorted(held - set(state.permission_sets))


def _duplicate_name(name: str, first_record_id: str, ref: RecordRef | None) -> Problem:
    return Problem(
        code="duplicate_permission_set_name",
        message=(
            f"The permission set name '{name}' is already used by record {first_record_id} "
            "(names are case-insensitive). Rename this one or delete the duplicate record."
        ),
        record=ref,
        params={"name": name, "first_record_id": first_record_id},
    )


def _read_assignments(
    records: list[dict[str, Any]], config: SyncConfig, ids: Mapping[str, str], state: DesiredState
) -> None:
    """Fills ``state.assignments``: each principal x target x permission set once, the first record's."""
    asg_sorted = sorted(records, key=_sort_key)
    af = config.assignment_fields
    codes = [getattr(af, n) for n in type(af).model_fields if n != "reason"]
    skip = _missing_fields(asg_sorted, codes, "assignments", ids["assignments"], state.problems)
    index: dict[tuple[str, str, str, str], int] = {}  # assignment key -> position in state.assignments
    for i, record in enumerate(asg_sorted):
        if i in skip:
            continue
        try:
            specs, record_problems = _parse_assignment(record, config, ids["assignments"])
        except Exception as exc:
            specs, record_problems = [], [_unreadable(record, "assignments", ids, exc)]
        state.problems.extend(record_problems)
        duplicates = _merge_assignments(specs, state.assignments, index)
        if duplicates:
            state.problems.append(_duplicate_assignment(duplicates, specs[0].record))


def _merge_assignments(
    specs: list[AssignmentSpec], kept: list[AssignmentSpec], index: dict[tuple[str, str, str, str], int]
) -> list[AssignmentSpec]:
    """Appends the new assignments of one record to ``kept``; returns the already kept ones it repeats
    (their expiry becomes the more generous of the two)."""
    duplicates: list[AssignmentSpec] = []
    for asg in specs:
        key = (asg.principal_type, asg.principal_name, asg.target, asg.permission_set_name)
        at = index.get(key)
        if at is None:
            index[key] = len(kept)
            kept.append(asg)
            continue
        first = kept[at]
        merged = _later(first.expires_on, asg.expires_on)
        if merged != first.expires_on:
            kept[at] = first.model_copy(update={"expires_on": merged})
        duplicates.append(first)
    return duplicates


def _duplicate_assignment(duplicates: list[AssignmentSpec], ref: RecordRef) -> Problem:
    first_ids = sorted({d.record.record_id for d in duplicates}, key=lambda r: (len(r), r))
    example = duplicates[0]
    return Problem(
        code="duplicate_assignment",
        message=(
            f"{len(duplicates)} of this record's assignments (for example {example.principal_type} "
            f"{example.principal_name} -> {example.target} with {example.permission_set_name}) are "
            f"already given by record(s) {', '.join(first_ids)}. Nothing is wrong, but consider removing "
            "the duplicate; access stays until every record that gives it is removed."
        ),
        severity="warning",
        record=ref,
        params={
            "count": len(duplicates),
            "first_record_ids": ", ".join(first_ids),
            "example": f"{example.principal_type}:{example.principal_name} -> {example.target} "
            f"({example.permission_set_name})",
        },
    )


def _raw_name(record: Mapping[str, Any], code: str) -> str | None:
    f = record.get(code)
    value = f.get("value") if isinstance(f, dict) else None
    return value.strip() or None if isinstance(value, str) else None


def _unreadable(record: Mapping[str, Any], app: AppKey, ids: Mapping[str, str], exc: Exception) -> Problem:
    """The per-record isolation of parsing (:mod:`idc_sync.isolation`), with this module's own code."""
    try:
        ref: RecordRef | None = _ref(record, app, ids[app])
    except Exception:
        ref = None
    problem = internal_error_problem(ref, "parse", exc, log=log, code="unreadable_record")
    return problem.model_copy(
        update={
            "message": (
                f"idc-sync could not read this record ({type(exc).__name__}). Check that its fields have the "
                "types of the app definition; if they do, tell the platform administrators."
            ),
            "params": {"error": problem.params["error"]},
        }
    )
