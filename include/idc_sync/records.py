"""Raw kintone records of the two apps -> typed :class:`~idc_sync.model.DesiredState`.

People type these records by hand, so anything can be in them. The rules:

* a record that cannot be understood becomes a :class:`~idc_sync.model.Problem` on *that* record
  (stable ``code``, an English message saying what to do, ``params`` for translations), never an
  exception; one bad record never blocks the others;
* a permission set record with any error is left out of ``permission_sets`` and its name goes to
  ``held_permission_sets``: the permission set keeps its current definition in IdC instead of being
  half-applied (dropping a mistyped policy line) or deleted (a typo must not revoke everyone's access);
* an assignment record is all-or-nothing for what changes its meaning (principal type, principals,
  permission set, expiry date: a mistyped date must never become permanent access) but per line for
  ``targets``: a bad line is reported and the other targets still count;
* the same principal x target x permission set named by several records is kept once (the first record
  by record id) with the most generous expiry, and the later records get a ``duplicate_assignment``
  warning.

Field codes come from :class:`~idc_sync.config.SyncConfig`; system fields (``$id``, ``$revision``,
modifier, created/updated time) are found by *type*, because their codes depend on the app's language.

Problem codes (all ``severity="error"`` unless noted) and their ``params``:

==============================  ==========================================================
``missing_field``               ``field`` (``table.code`` for subtable cells), ``app``, ``records``
                                (run-level, ``record=None``: the configured field code is not in the app;
                                affected records are skipped, their permission sets held)
``unreadable_record``           ``error``
``missing_name``                ``field``
``duplicate_permission_set_name`` ``name``, ``first_record_id``
``invalid_description``         ``field``, ``length``, ``max``, ``characters``
``invalid_session_duration``    ``field``, ``value``
``invalid_managed_policy``      ``field``, ``value``, ``line``
``invalid_customer_managed_policy`` ``field``, ``name``, ``path``, ``row``
``invalid_permissions_boundary`` ``field``, ``value``
``invalid_relay_state``         ``field``, ``value``, ``max``
``invalid_principal_type``      ``field``, ``value``
``no_principals``               ``field``, ``principal_type``
``invalid_user_name_template``  ``template``, ``error``
``ignored_field`` (warning)     ``field``, ``principal_type``
``no_targets``                  ``field``
``invalid_target``              ``field``, ``value``, ``line``
``missing_permission_set``      ``field``
``invalid_expires_on``          ``field``, ``value``
``duplicate_assignment`` (warning) ``count``, ``first_record_ids``, ``example``
==============================  ==========================================================
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from idc_sync.config import SyncConfig
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
)
from idc_sync.policy import managed_policy_arn

log = logging.getLogger(__name__)

# sso-admin / IAM input rules (botocore service models)
_DESCRIPTION_MAX = 700
_DESCRIPTION_CHARS = re.compile(r"^[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*$")
_RELAY_STATE_MAX = 240
_RELAY_STATE_CHARS = re.compile(r"^[a-zA-Z0-9&$@#\\/%?=~\-_'\"|!:,.;*+\[\] (){}]+$")
_DURATION = re.compile(r"^PT(?:([0-9]+)H)?(?:([0-9]+)M)?$")
_MANAGED_ARN = re.compile(
    r"^arn:aws(-[a-z]{1,5}){0,3}:iam::aws:policy((/[A-Za-z0-9.,+@=_-]+)*)/([A-Za-z0-9.,+=@_-]+)$"
)
_POLICY_NAME = re.compile(r"^[\w+=,.@-]{1,128}$", re.ASCII)
_POLICY_PATH = re.compile(r"^((/[A-Za-z0-9.,+@=_-]+)*)/$")
# ASCII digits only: ``\d`` would take full-width and Arabic-Indic digits as an account id.
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
_DASHED_ACCOUNT_ID = re.compile(r"^[0-9]{4}-[0-9]{4}-[0-9]{4}$")  # as the AWS console shows it
_OU_ID = re.compile(r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$")
_TARGET_SEPARATORS = re.compile("[\\s,;\u3001\uff0c\uff1b]+")  # + ideographic/fullwidth , ;
_POLICY_SEPARATORS = re.compile("[\\s,;\u3001\uff0c\uff1b]+")  # + ideographic/fullwidth , ;


# --------------------------------------------------------------------------- record access
class _MissingField(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


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
    """Problems of one record; ``failed`` tells whether any was an error."""

    ref: RecordRef | None
    problems: list[Problem] = field(default_factory=list)

    def add(self, code: str, message: str, severity: str = "error", **params: Any) -> None:
        self.problems.append(
            Problem(code=code, message=message, severity=severity, record=self.ref, params=params)  # type: ignore[arg-type]
        )

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


# --------------------------------------------------------------------------- field parsers
def parse_session_duration(value: str) -> str | None:
    """``PT1H``..``PT12H`` (also ``PT1H30M``, ``PT90M``) -> the value as IdC stores it; None if invalid."""
    text = value.strip().upper()
    match = _DURATION.match(text) if text.isascii() else None
    if not match or not (match.group(1) or match.group(2)):
        return None
    minutes = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    return text if 60 <= minutes <= 720 else None


def split_lines(text: str, separators: re.Pattern[str]) -> list[tuple[int, str]]:
    """Non-blank items with their 1-based line number; items on a line may be separated by commas etc."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for item in separators.split(line):
            item = item.strip().strip("\"'`\u201c\u201d\u2018\u2019")
            if item:
                out.append((number, item))
    return out


def normalise_target(value: str) -> str | None:
    """A 12-digit account id (``1234-5678-9012`` accepted) or an OU id (any case) -> canonical; else None."""
    text = value.strip()
    if not text.isascii():  # full-width digits, or a Kelvin sign that .lower() would turn into "k"
        return None
    if _DASHED_ACCOUNT_ID.match(text):
        text = text.replace("-", "")
    if _ACCOUNT_ID.match(text):
        return text
    lowered = text.lower()
    if _OU_ID.match(lowered):
        return lowered
    return None


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
    if not _POLICY_NAME.match(name) or not _POLICY_PATH.match(path):
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
    return arn if _MANAGED_ARN.match(arn) else None


# --------------------------------------------------------------------------- permission sets
def _parse_permission_set(
    record: Mapping[str, Any], config: SyncConfig, app_id: str
) -> tuple[PermissionSetSpec | None, str | None, RecordRef, list[Problem]]:
    """-> (spec or None, the name when known, the record's ref, problems)."""
    f = config.permission_set_fields
    owners = _users(record, f.owners)
    c = _Collector(_ref(record, "permission_sets", app_id, owners))

    name = _text(record, f.name).strip()
    if not name:
        c.add(
            "missing_name",
            f"The permission set has no name. Fill in the field '{f.name}' (1-32 characters: letters, digits "
            "and + = , . @ - _).",
            field=f.name,
        )

    description = _text(record, f.description).strip()
    if len(description) > _DESCRIPTION_MAX or not _DESCRIPTION_CHARS.match(description):
        bad = sorted({ch for ch in description if not _DESCRIPTION_CHARS.match(ch)})
        c.add(
            "invalid_description",
            f"The description in '{f.description}' cannot be used by IAM Identity Center: it allows at most "
            f"{_DESCRIPTION_MAX} characters of Latin-1 text (no Japanese or emoji). Shorten or rewrite it"
            + (f" (unsupported characters: {''.join(bad[:10])})." if bad else "."),
            field=f.description,
            length=len(description),
            max=_DESCRIPTION_MAX,
            characters="".join(bad[:10]),
        )

    raw_duration = _text(record, f.session_duration).strip()
    duration = parse_session_duration(raw_duration) if raw_duration else "PT1H"
    if duration is None:
        c.add(
            "invalid_session_duration",
            f"The session duration '{raw_duration}' in '{f.session_duration}' is not valid. Choose an ISO-8601 "
            "duration from PT1H to PT12H (for example PT4H).",
            field=f.session_duration,
            value=raw_duration,
        )

    managed: set[str] = set()
    for line, item in split_lines(_text(record, f.managed_policies), _POLICY_SEPARATORS):
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
        if not _POLICY_NAME.match(cmp_name) or not _POLICY_PATH.match(path):
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

    inline = _text(record, f.inline_policy)
    inline_policy = inline if inline.strip() else None

    raw_boundary = _text(record, f.permissions_boundary).strip()
    boundary = parse_permissions_boundary(raw_boundary) if raw_boundary else None
    if raw_boundary and boundary is None:
        c.add(
            "invalid_permissions_boundary",
            f"The permissions boundary '{raw_boundary}' in '{f.permissions_boundary}' is not understood. Write an "
            "AWS managed policy name or ARN (PowerUserAccess), or a customer managed policy as customer:/path/Name.",
            field=f.permissions_boundary,
            value=raw_boundary,
        )

    relay_state = _text(record, f.relay_state).strip() or None
    if relay_state and (len(relay_state) > _RELAY_STATE_MAX or not _RELAY_STATE_CHARS.match(relay_state)):
        c.add(
            "invalid_relay_state",
            f"The relay state in '{f.relay_state}' must be a console URL of at most {_RELAY_STATE_MAX} characters "
            "without spaces or non-ASCII characters (for example https://console.aws.amazon.com/ec2/).",
            field=f.relay_state,
            value=relay_state[:_RELAY_STATE_MAX],
            max=_RELAY_STATE_MAX,
        )

    assert c.ref is not None
    if c.failed or duration is None:
        return None, name or None, c.ref, c.problems
    spec = PermissionSetSpec(
        name=name,
        description=description,
        session_duration=duration,
        relay_state=relay_state,
        managed_policies=sorted(managed),
        customer_managed_policies=[customer[k] for k in sorted(customer)],
        inline_policy=inline_policy,
        permissions_boundary=boundary,
        record=c.ref,
    )
    return spec, name, c.ref, c.problems


# --------------------------------------------------------------------------- assignments
def _parse_assignment(
    record: Mapping[str, Any],
    config: SyncConfig,
    app_id: str,
    known_permission_sets: set[str],
) -> tuple[list[AssignmentSpec], list[Problem]]:
    f = config.assignment_fields
    c = _Collector(_ref(record, "assignments", app_id))

    raw_type = _text(record, f.principal_type).strip()
    principal_type = raw_type.upper()
    principals: list[str] = []
    users = _users(record, f.users)
    group_name = _text(record, f.group_name).strip()
    if principal_type == "USER":
        if not users:
            c.add(
                "no_principals",
                f"No user is selected. Choose at least one user in '{f.users}' (or set '{f.principal_type}' to "
                "GROUP and fill in the group name).",
                field=f.users,
                principal_type="USER",
            )
        for code in users:
            try:
                principals.append(config.user_name_template.format(code=code).strip())
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                c.add(
                    "invalid_user_name_template",
                    f"The idc-sync setting user_name_template '{config.user_name_template}' cannot be applied "
                    f"({type(exc).__name__}: {exc}). An administrator must fix it; only {{code}} is available.",
                    template=config.user_name_template,
                    error=str(exc),
                )
                break
        if group_name:
            c.add(
                "ignored_field",
                f"'{f.group_name}' is ignored because '{f.principal_type}' is USER. Clear it, or set the type to "
                "GROUP to assign the group instead.",
                severity="warning",
                field=f.group_name,
                principal_type="USER",
            )
    elif principal_type == "GROUP":
        if not group_name:
            c.add(
                "no_principals",
                f"No group is named. Fill in '{f.group_name}' with the group's display name in IAM Identity "
                f"Center (or set '{f.principal_type}' to USER and select users).",
                field=f.group_name,
                principal_type="GROUP",
            )
        else:
            principals.append(group_name)
        if users:
            c.add(
                "ignored_field",
                f"'{f.users}' is ignored because '{f.principal_type}' is GROUP. Clear it, or set the type to USER "
                "to assign the users instead.",
                severity="warning",
                field=f.users,
                principal_type="GROUP",
            )
    else:
        c.add(
            "invalid_principal_type",
            f"'{f.principal_type}' is '{raw_type}'; it must be USER or GROUP.",
            field=f.principal_type,
            value=raw_type,
        )

    targets: list[str] = []
    items = split_lines(_text(record, f.targets), _TARGET_SEPARATORS)
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

    ps_name = _text(record, f.permission_set).strip()
    if not ps_name:
        c.add(
            "missing_permission_set",
            f"No permission set is chosen. Pick one in '{f.permission_set}'.",
            field=f.permission_set,
        )
    # A name not in the permission sets app (``known_permission_sets``) is not an error here: the lookup
    # may still hold the old name of a renamed record (kintone copies it at save time). The plan, which
    # knows IdC, tells a rename (``permission_set_renamed``) from an unknown name (``unknown_permission_set``).

    raw_expiry = _text(record, f.expires_on).strip()
    expires_on: dt.date | None = None
    if raw_expiry:
        try:
            expires_on = dt.date.fromisoformat(raw_expiry)
        except ValueError:
            c.add(
                "invalid_expires_on",
                f"'{f.expires_on}' is '{raw_expiry}', not a date. Write it as YYYY-MM-DD, or leave it empty for "
                "permanent access.",
                field=f.expires_on,
                value=raw_expiry,
            )

    # Target lines fail alone; every other error makes the whole record mean nothing.
    if any(p.severity == "error" and p.code != "invalid_target" for p in c.problems):
        return [], c.problems
    assert c.ref is not None
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
    return specs, c.problems


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
    problems = state.problems

    # --- permission sets
    ps_sorted = sorted(ps_records, key=_sort_key)
    pf = config.permission_set_fields
    ps_codes = [getattr(pf, n) for n in type(pf).model_fields if n not in ("cmp_name", "cmp_path")]
    subtable = [(pf.customer_managed_policies, pf.cmp_name), (pf.customer_managed_policies, pf.cmp_path)]
    ps_skip = _missing_fields(
        ps_sorted, ps_codes, "permission_sets", ids["permission_sets"], problems, subtable
    )
    first_by_name: dict[str, str] = {}  # casefolded name -> record id of the first record
    held: set[str] = set()
    for i, record in enumerate(ps_sorted):
        if i in ps_skip:
            if raw := _raw_name(record, pf.name):
                held.add(raw)
            continue
        ref: RecordRef | None
        try:
            spec, name, ref, record_problems = _parse_permission_set(record, config, ids["permission_sets"])
        except Exception as exc:  # anything unforeseen in one record must not stop the run
            problem = _unreadable(record, "permission_sets", ids, exc)
            spec, name, ref, record_problems = None, _raw_name(record, pf.name), problem.record, [problem]
        if name:
            key = name.casefold()
            if key in first_by_name:
                record_problems.append(
                    Problem(
                        code="duplicate_permission_set_name",
                        message=(
                            f"The permission set name '{name}' is already used by record {first_by_name[key]} "
                            "(names are case-insensitive). Rename this one or delete the duplicate record."
                        ),
                        record=ref,
                        params={"name": name, "first_record_id": first_by_name[key]},
                    )
                )
                problems.extend(record_problems)
                continue
            first_by_name[key] = _record_id(record)
        problems.extend(record_problems)
        if spec is not None:
            state.permission_sets[spec.name] = spec
        elif name:
            held.add(name)
    held -= set(state.permission_sets)
    state.held_permission_sets = sorted(held)

    # --- assignments
    known = set(state.permission_sets) | held
    asg_sorted = sorted(asg_records, key=_sort_key)
    af = config.assignment_fields
    asg_codes = [getattr(af, n) for n in type(af).model_fields if n != "reason"]
    asg_skip = _missing_fields(asg_sorted, asg_codes, "assignments", ids["assignments"], problems)
    index: dict[tuple[str, str, str, str], int] = {}
    for i, record in enumerate(asg_sorted):
        if i in asg_skip:
            continue
        try:
            specs, record_problems = _parse_assignment(record, config, ids["assignments"], known)
        except Exception as exc:
            specs, record_problems = [], [_unreadable(record, "assignments", ids, exc)]
        problems.extend(record_problems)
        duplicates: list[AssignmentSpec] = []
        for asg in specs:
            asg_key = (asg.principal_type, asg.principal_name, asg.target, asg.permission_set_name)
            at = index.get(asg_key)
            if at is None:
                index[asg_key] = len(state.assignments)
                state.assignments.append(asg)
                continue
            kept = state.assignments[at]
            merged = _later(kept.expires_on, asg.expires_on)
            if merged != kept.expires_on:
                state.assignments[at] = kept.model_copy(update={"expires_on": merged})
            duplicates.append(kept)
        if duplicates:
            first_ids = sorted({d.record.record_id for d in duplicates}, key=lambda r: (len(r), r))
            example = duplicates[0]
            problems.append(
                Problem(
                    code="duplicate_assignment",
                    message=(
                        f"{len(duplicates)} of this record's assignments (for example {example.principal_type} "
                        f"{example.principal_name} -> {example.target} with {example.permission_set_name}) are "
                        f"already given by record(s) {', '.join(first_ids)}. Nothing is wrong, but consider removing "
                        "the duplicate; access stays until every record that gives it is removed."
                    ),
                    severity="warning",
                    record=specs[0].record,
                    params={
                        "count": len(duplicates),
                        "first_record_ids": ", ".join(first_ids),
                        "example": f"{example.principal_type}:{example.principal_name} -> {example.target} "
                        f"({example.permission_set_name})",
                    },
                )
            )

    errors = sum(1 for p in problems if p.severity == "error")
    log.info(
        "parsed %d permission set records and %d assignment records: %d permission sets, %d held, "
        "%d assignments, %d errors, %d warnings",
        len(ps_records),
        len(asg_records),
        len(state.permission_sets),
        len(state.held_permission_sets),
        len(state.assignments),
        errors,
        len(problems) - errors,
    )
    return state


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
