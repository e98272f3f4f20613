"""Sandbox kintone REST API (``/k/v1/...``) with the real service's semantics, limits and errors.

Why so much detail: the pipeline's kintone client must survive the real service, so the sandbox reproduces
what bites in production: API-token vs password auth (and who a write is authored by), the ``records.json``
paging bounds (limit ≤500, offset ≤10,000), the cursor API's 10 live cursors per domain and 10-minute
expiry, revision conflicts, comments that do not bump the revision, LOOKUP checks, the 100 concurrent
requests per domain and the per-app daily request count (kintone's documented limits).

Deliberate simplifications (documented in the README):
- app settings changes apply at once (``preview/...`` == live); deploy always reports ``SUCCESS``;
- API tokens cannot be created through kintone's REST API (also true of the real service): they come from
  the seed or ``POST /_sandbox/kintone/tokens``;
- the daily request limit does not fail requests by default (real kintone only e-mails the administrator);
  ``world.kintone.daily_limit_mode = "error"`` makes the sandbox refuse them with ``SANDBOX_DAILY_LIMIT``;
- the query language is a practical subset (comparisons, ``in``, ``like``, ``is empty``, ``and``/``or``,
  parentheses, ``order by``, ``limit``, ``offset``, ``NOW()``/``TODAY()``/``LOGINUSER()``).

In-process helpers for tests and the demo (``add_record``, ``update_record``, ``delete_record``,
``add_comment``, ``comments_of``) act as a person working in the kintone UI would, webhooks included
(``kintone_webhooks``: single-record REST writes, comments and UI actions notify; bulk REST calls and seeds
do not, as in kintone). Unknown paths under ``/k/`` answer ``CB_NF01`` like kintone; ``bulkRequest.json``
runs ``record.json`` (POST, PUT) and ``records.json`` (POST, PUT, DELETE) all or nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses as dc
import datetime as dt
import json
import re
import secrets
import string
import weakref
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from idc_sandbox import kintone_webhooks
from idc_sandbox.core import Sandbox
from idc_sandbox.state import KintoneApp, KintoneComment, KintoneCursor, utcnow

SERVICE = "kintone"
ADMIN = {"code": "Administrator", "name": "Administrator"}
MAX_LIMIT = 500
MAX_OFFSET = 10_000
MAX_BULK = 100
MAX_COMMENT_CHARS = 65_535
MAX_MENTIONS = 10
MAX_BULK_REQUESTS = 20  # requests in one bulkRequest.json
MAX_COMMENTS_PAGE = 10

# system fields every app has (English-locale default field codes)
SYSTEM_FIELDS: dict[str, dict[str, Any]] = {
    "Record_number": {
        "type": "RECORD_NUMBER",
        "code": "Record_number",
        "label": "Record number",
        "noLabel": False,
    },
    "Created_by": {"type": "CREATOR", "code": "Created_by", "label": "Created by", "noLabel": False},
    "Updated_by": {"type": "MODIFIER", "code": "Updated_by", "label": "Updated by", "noLabel": False},
    "Created_datetime": {
        "type": "CREATED_TIME",
        "code": "Created_datetime",
        "label": "Created datetime",
        "noLabel": False,
    },
    "Updated_datetime": {
        "type": "UPDATED_TIME",
        "code": "Updated_datetime",
        "label": "Updated datetime",
        "noLabel": False,
    },
}
SYSTEM_TYPES = {p["type"] for p in SYSTEM_FIELDS.values()}
# field types a client may not write
READ_ONLY_TYPES = SYSTEM_TYPES | {"CALC", "STATUS", "STATUS_ASSIGNEE", "CATEGORY", "__ID__", "__REVISION__"}

# --------------------------------------------------------------------------- errors and messages
# code -> (HTTP status, Japanese, English); ``{}`` placeholders are filled from KintoneError.args
MESSAGES: dict[str, tuple[int, str, str]] = {
    "CB_AU01": (401, "ログインしてください。", "Please login."),
    "CB_WA01": (
        401,
        "ユーザーのパスワード認証に失敗しました。「X-Cybozu-Authorization」ヘッダーの値が正しくありません。",
        "Password authentication failed. The value in http header of X-Cybozu-Authorization is not valid.",
    ),
    "CB_WA01_TOKEN": (
        401,
        "APIトークン認証に失敗しました。「X-Cybozu-API-Token」ヘッダーの値が正しくありません。",
        "API token authentication failed. The value in http header of X-Cybozu-API-Token is not valid.",
    ),
    "GAIA_IA02": (
        400,
        "指定したAPIトークンは、アプリで生成されたトークンと異なります。アプリのAPIトークンの設定を確認してください。",
        "The specified API token does not match the API token generated via an app.",
    ),
    "GAIA_DA03": (
        400,
        "同じアプリのAPIトークンを重複して指定することはできません。",
        "You cannot specify a duplicate API token for the same app.",
    ),
    "GAIA_NO01": (
        403,
        "このAPIトークンでは、指定したAPIを実行できません。",
        "Using this API token, you cannot run the specified API.",
    ),
    "CB_NO02": (403, "権限がありません。", "No privilege to proceed."),
    "CB_VA01": (400, "入力内容が正しくありません。", "Missing or invalid input."),
    "CB_IJ01": (400, "不正なJSON文字列です。", "Invalid JSON string."),
    "CB_NF01": (404, "指定したAPIが見つかりません。", "The specified API is not found."),
    "GAIA_AP01": (
        404,
        "指定したアプリ（id: {}）が見つかりません。削除されている可能性があります。",
        "The app (ID: {}) not found. The app may have been deleted.",
    ),
    "GAIA_RE01": (
        404,
        "指定したレコード（id: {}）が見つかりません。",
        "The specified record (ID: {}) is not found.",
    ),
    "GAIA_RE03": (
        404,
        "指定したカーソルが見つかりません。",
        "The specified cursor does not exist.",
    ),
    "GAIA_CO02": (
        409,
        "指定したリビジョンは最新ではありません。ほかのユーザーがレコードを更新した可能性があります。",
        "The revision is not the latest. Someone may update a record.",
    ),
    "GAIA_QU01": (400, "limitには500以下の値を指定してください。", "The limit must be 500 or less."),
    "GAIA_QU02": (400, "offsetには10,000以下の値を指定してください。", "The offset must be 10,000 or less."),
    "GAIA_IQ11": (400, "指定されたフィールド（{}）が見つかりません。", "Specified field ({}) not found."),
    "GAIA_IL26": (
        400,
        "指定したユーザー（code：{}）が見つかりません。",
        "The specified user (code: {}) not found.",
    ),
    "GAIA_LO04": (
        400,
        "フィールド「{}」の値「{}」が、ルックアップの参照先のフィールドにないか、"
        "またはアプリやフィールドの閲覧権限がありません。",
        'A value "{1}" in the field "{0}" does not exist in the lookup source or you have no permission to '
        "view it.",
    ),
    "GAIA_TM12": (
        429,
        "作成できるカーソルの上限に達しているため、カーソルを作成できません。"
        "不要なカーソルを削除するか、しばらく経ってから再実行してください。",
        "Cannot create a new cursor because the limit of cursors has been reached. Delete unnecessary "
        "cursors or try again later.",
    ),
    "GAIA_TO04": (
        429,
        "同時に実行できるリクエスト数の上限を超えました。しばらく経ってから再実行してください。",
        "The number of concurrent requests exceeded the limit. Please try again later.",
    ),
    "GAIA_DA02": (
        520,
        "データベースのロックに失敗したため、変更を保存できませんでした。時間をおいて再度お試しください。",
        "Failed to lock the database. Changes were not saved. Please try again later.",
    ),
    "GAIA_UN03": (500, "予期しないエラーが発生しました。", "An unexpected error has occurred."),
    "CB_UN01": (503, "サービスを利用できません。", "The service is unavailable."),
    "SANDBOX_DAILY_LIMIT": (
        429,
        "（sandbox）アプリ（id: {}）の1日のAPIリクエスト数の上限（{}）を超えました。",
        "(sandbox) The app (ID: {}) exceeded its daily API request limit ({}). Real kintone would only "
        "e-mail the administrator.",
    ),
}


class KintoneError(Exception):
    """An error in kintone's terms; rendered as ``{code, id, message, errors?}`` in the caller's language."""

    def __init__(
        self,
        code: str,
        *args: Any,
        errors: dict[str, Any] | None = None,
        status: int | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.args_ = args
        self.errors = errors
        self.status = status or MESSAGES.get(code, (400, "", ""))[0]
        self.message = message
        self.headers = headers or {}

    def text(self, lang: str) -> str:
        if self.message:
            return self.message
        _, ja, en = MESSAGES.get(self.code, (400, self.code, self.code))
        template = en if lang == "en" else ja
        try:
            return template.format(*self.args_)
        except (IndexError, KeyError):
            return template

    @property
    def wire_code(self) -> str:
        return "CB_WA01" if self.code == "CB_WA01_TOKEN" else self.code


def invalid(errors: dict[str, list[str]]) -> KintoneError:
    return KintoneError("CB_VA01", errors={k: {"messages": v} for k, v in errors.items()})


def _error_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(20))


def _lang(request: Request) -> str:
    header = request.headers.get("accept-language", "").strip().lower()
    return "en" if header.startswith("en") else "ja"


# --------------------------------------------------------------------------- runtime (not world state)
@dc.dataclass
class _Runtime:
    running: int = 0
    day: str = ""


_RUNTIMES: weakref.WeakKeyDictionary[Sandbox, _Runtime] = weakref.WeakKeyDictionary()


def _runtime(sandbox: Sandbox) -> _Runtime:
    rt = _RUNTIMES.get(sandbox)
    if rt is None:
        rt = _RUNTIMES[sandbox] = _Runtime()
    return rt


def _count_request(sandbox: Sandbox, app: KintoneApp) -> bool:
    """Counts one request against the app's daily budget; True when the budget is exceeded.

    The day resets at 09:00 JST (= 00:00 UTC), like kintone's counter.
    """
    rt = _runtime(sandbox)
    today = sandbox.now().date().isoformat()
    if rt.day != today:
        rt.day = today
        for a in sandbox.world.kintone.apps.values():
            a.requests_today = 0
    app.requests_today += 1
    return app.requests_today > sandbox.world.kintone.daily_limit


# --------------------------------------------------------------------------- auth
@dc.dataclass
class Principal:
    kind: str  # "token" | "user"
    user: dict[str, str]  # {code, name}: who a write is authored by
    apps: set[int] | None = None  # token auth: the apps its tokens belong to


def authenticate(sandbox: Sandbox, headers: Any) -> Principal:
    kintone = sandbox.world.kintone
    basic = headers.get("x-cybozu-authorization")
    if basic:
        try:
            login, sep, password = base64.b64decode(basic, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise KintoneError("CB_WA01") from None
        if not sep or login not in kintone.logins or kintone.logins[login] != password:
            raise KintoneError("CB_WA01")
        return Principal("user", {"code": login, "name": kintone.users.get(login, login)})
    raw = headers.get("x-cybozu-api-token")
    if raw:
        apps: set[int] = set()
        for token in (t.strip() for t in raw.split(",") if t.strip()):
            owner = next((a.id for a in kintone.apps.values() if token in a.api_tokens), None)
            if owner is None:
                raise KintoneError("CB_WA01_TOKEN")
            if owner in apps:
                raise KintoneError("GAIA_DA03")
            apps.add(owner)
        if not apps:
            raise KintoneError("CB_WA01_TOKEN")
        return Principal("token", dict(ADMIN), apps)
    raise KintoneError("CB_AU01")


def _app(sandbox: Sandbox, principal: Principal, app_param: Any) -> KintoneApp:
    try:
        app_id = int(str(app_param))
    except (TypeError, ValueError):
        raise invalid(
            {"app": ["必須です。" if app_param in (None, "") else "数値である必要があります。"]}
        ) from None
    app = sandbox.world.kintone.apps.get(app_id)
    if principal.kind == "token" and principal.apps is not None and app_id not in principal.apps:
        # kintone does not reveal whether the app exists to a token of another app
        raise KintoneError("GAIA_IA02")
    if app is None:
        raise KintoneError("GAIA_AP01", app_id)
    return app


# --------------------------------------------------------------------------- record helpers
def _fmt_time(t: dt.datetime) -> str:
    # kintone keeps CREATED_TIME/UPDATED_TIME to the minute
    return t.astimezone(dt.UTC).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> dt.datetime:
    s = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)
    s = s.replace("Z", "+00:00")
    s = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", s)
    parsed = dt.datetime.fromisoformat(s)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def all_properties(app: KintoneApp) -> dict[str, dict[str, Any]]:
    """The app's top-level form properties including the system fields."""
    return app.fields


def _system_code(app: KintoneApp, ftype: str) -> str | None:
    return next((c for c, p in app.fields.items() if p.get("type") == ftype), None)


def _user_entity(sandbox: Sandbox, code: str) -> dict[str, str]:
    users = sandbox.world.kintone.users
    if code not in users and code != "Administrator":
        raise KintoneError("GAIA_IL26", code)
    return {"code": code, "name": users.get(code, code)}


def _default_value(prop: dict[str, Any]) -> Any:
    ftype = prop.get("type")
    if ftype in ("USER_SELECT", "ORGANIZATION_SELECT", "GROUP_SELECT", "CHECK_BOX", "MULTI_SELECT", "FILE"):
        return list(prop.get("defaultValue") or [])
    if ftype == "SUBTABLE":
        return []
    if ftype in ("RADIO_BUTTON",):
        return prop.get("defaultValue", "")
    default = prop.get("defaultValue", "")
    return default if isinstance(default, str) else ""


class _RowIds:
    """Subtable row ids are unique per domain in kintone; a module counter per sandbox is close enough."""

    counters: weakref.WeakKeyDictionary[Sandbox, int] = weakref.WeakKeyDictionary()

    @classmethod
    def next(cls, sandbox: Sandbox) -> str:
        n = cls.counters.get(sandbox, 1000) + 1
        cls.counters[sandbox] = n
        return str(n)


def _coerce(
    sandbox: Sandbox,
    app: KintoneApp,
    code: str,
    prop: dict[str, Any],
    value: Any,
    path: str,
    errors: dict[str, list[str]],
    *,
    old: Any = None,
    check_lookup: bool = True,
) -> Any:
    """One field's value as stored (wire shape), appending CB_VA01-style messages to ``errors``."""
    ftype = prop.get("type")
    if ftype in ("SINGLE_LINE_TEXT", "MULTI_LINE_TEXT", "RICH_TEXT", "LINK"):
        if value is None:
            value = ""
        if not isinstance(value, str | int | float):
            errors.setdefault(path, []).append("文字列である必要があります。")
            return ""
        text = str(value)
        max_len = str(prop.get("maxLength") or "")
        if max_len.isdigit() and len(text) > int(max_len):
            errors.setdefault(path, []).append(f"{max_len}文字より短くなければなりません。")
        min_len = str(prop.get("minLength") or "")
        if text and min_len.isdigit() and len(text) < int(min_len):
            errors.setdefault(path, []).append(f"{min_len}文字より長くなければなりません。")
        if check_lookup and prop.get("lookup") and text:
            _check_lookup(sandbox, code, prop["lookup"], text)
        return text
    if ftype == "NUMBER":
        if value in (None, ""):
            return ""
        try:
            Decimal(str(value))
        except InvalidOperation:
            errors.setdefault(path, []).append("数字でなければなりません。")
            return ""
        return str(value)
    if ftype == "DATE":
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            errors.setdefault(path, []).append("日付が不正です。")
            return None
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            errors.setdefault(path, []).append("日付が不正です。")
            return None
        return value
    if ftype == "DATETIME":
        if value in (None, ""):
            return None
        try:
            return _fmt_time(_parse_time(str(value)))
        except ValueError:
            errors.setdefault(path, []).append("日時が不正です。")
            return None
    if ftype in ("DROP_DOWN", "RADIO_BUTTON"):
        if value in (None, ""):
            return None if ftype == "DROP_DOWN" else ""
        if not isinstance(value, str) or value not in (prop.get("options") or {}):
            errors.setdefault(path, []).append(f"「{value}」は選択肢にありません。")
            return None
        return value
    if ftype in ("CHECK_BOX", "MULTI_SELECT"):
        if value in (None, ""):
            return []
        if not isinstance(value, list) or any(v not in (prop.get("options") or {}) for v in value):
            errors.setdefault(path, []).append("選択肢にない値が含まれています。")
            return []
        return list(value)
    if ftype in ("USER_SELECT", "ORGANIZATION_SELECT", "GROUP_SELECT"):
        if value in (None, ""):
            return []
        if not isinstance(value, list):
            errors.setdefault(path, []).append("配列である必要があります。")
            return []
        out = []
        for entity in value:
            entity_code = entity.get("code") if isinstance(entity, dict) else entity
            if not isinstance(entity_code, str) or not entity_code:
                errors.setdefault(path, []).append("codeは必須です。")
                continue
            if ftype == "USER_SELECT":
                out.append(_user_entity(sandbox, entity_code))
            else:
                out.append({"code": entity_code, "name": entity_code})
        return out
    if ftype == "SUBTABLE":
        if value in (None, ""):
            return []
        if not isinstance(value, list):
            errors.setdefault(path, []).append("配列である必要があります。")
            return []
        old_ids = {str(r.get("id")) for r in (old or []) if isinstance(r, dict)}
        rows = []
        inner: dict[str, dict[str, Any]] = prop.get("fields") or {}
        for i, row in enumerate(value):
            if not isinstance(row, dict):
                errors.setdefault(f"{path}[{i}]", []).append("オブジェクトである必要があります。")
                continue
            row_value = row.get("value", {}) if "value" in row else row
            row_id = str(row.get("id")) if row.get("id") not in (None, "") else None
            if row_id is None or row_id not in old_ids:
                row_id = _RowIds.next(sandbox)
            cells: dict[str, Any] = {}
            for inner_code, inner_prop in inner.items():
                raw = row_value.get(inner_code)
                given = raw.get("value") if isinstance(raw, dict) and "value" in raw else raw
                if inner_code not in row_value:
                    given = _default_value(inner_prop)
                cells[inner_code] = {
                    "type": inner_prop["type"],
                    "value": _coerce(
                        sandbox,
                        app,
                        inner_code,
                        inner_prop,
                        given,
                        f"{path}[{i}].value.{inner_code}.value",
                        errors,
                        check_lookup=check_lookup,
                    ),
                }
            rows.append({"id": row_id, "value": cells})
        return rows
    return value


def _check_lookup(sandbox: Sandbox, code: str, lookup: dict[str, Any], value: str) -> None:
    related = lookup.get("relatedApp") or {}
    key = lookup.get("relatedKeyField")
    try:
        related_app = sandbox.world.kintone.apps.get(int(str(related.get("app"))))
    except ValueError:
        related_app = None
    if related_app is None or not key:
        return  # an unconfigured lookup behaves like a text field
    for rec in related_app.records.values():
        if str(rec.get(key, {}).get("value", "")) == value:
            return
    raise KintoneError("GAIA_LO04", code, value, errors=None)


def _apply_fields(
    sandbox: Sandbox,
    app: KintoneApp,
    record: dict[str, Any],
    given: dict[str, Any],
    errors: dict[str, list[str]],
    prefix: str,
    *,
    creating: bool,
    check_lookup: bool = True,
    exclude_record_id: int | None = None,
) -> None:
    """Writes ``given`` ({code: {value}}) into ``record``; fills defaults when creating; checks required/unique."""
    if not isinstance(given, dict):
        errors.setdefault(prefix.rstrip("."), []).append("オブジェクトである必要があります。")
        return
    for code, prop in app.fields.items():
        ftype = prop.get("type")
        if ftype in READ_ONLY_TYPES or ftype in ("LABEL", "SPACER", "HR", "GROUP", "REFERENCE_TABLE"):
            continue
        path = f"{prefix}{code}.value"
        if code in given:
            raw = given[code]
            value = raw.get("value") if isinstance(raw, dict) else raw
            record[code] = {
                "type": ftype,
                "value": _coerce(
                    sandbox,
                    app,
                    code,
                    prop,
                    value,
                    path,
                    errors,
                    old=record.get(code, {}).get("value"),
                    check_lookup=check_lookup,
                ),
            }
        elif creating:
            default = _default_value(prop)
            record[code] = {"type": ftype, "value": default if ftype != "DROP_DOWN" or default else None}
        if code not in given and not creating:
            continue  # an update checks only what it changes
        current = record.get(code, {}).get("value")
        if prop.get("required") and current in (None, "", []):
            errors.setdefault(path, []).append("必須です。")
        if prop.get("unique") and current not in (None, ""):
            for other_id, other in app.records.items():
                if other_id != exclude_record_id and other.get(code, {}).get("value") == current:
                    errors.setdefault(path, []).append("値がほかのレコードと重複しています。")
                    break


def _new_record(sandbox: Sandbox, app: KintoneApp, author: dict[str, str], at: dt.datetime) -> dict[str, Any]:
    rid = app.next_record_id
    record: dict[str, Any] = {
        "$id": {"type": "__ID__", "value": str(rid)},
        "$revision": {"type": "__REVISION__", "value": "1"},
    }
    stamp = _fmt_time(at)
    for code, prop in app.fields.items():
        ftype = prop.get("type")
        if ftype == "RECORD_NUMBER":
            record[code] = {"type": ftype, "value": str(rid)}
        elif ftype in ("CREATOR", "MODIFIER"):
            record[code] = {"type": ftype, "value": dict(author)}
        elif ftype in ("CREATED_TIME", "UPDATED_TIME"):
            record[code] = {"type": ftype, "value": stamp}
    return record


def _touch(app: KintoneApp, record: dict[str, Any], author: dict[str, str], at: dt.datetime) -> None:
    record["$revision"]["value"] = str(int(record["$revision"]["value"]) + 1)
    for code, prop in app.fields.items():
        if prop.get("type") == "MODIFIER":
            record[code] = {"type": "MODIFIER", "value": dict(author)}
        elif prop.get("type") == "UPDATED_TIME":
            record[code] = {"type": "UPDATED_TIME", "value": _fmt_time(at)}


def _create(
    sandbox: Sandbox,
    app: KintoneApp,
    given: dict[str, Any],
    author: dict[str, str],
    errors: dict[str, list[str]],
    prefix: str,
    *,
    at: dt.datetime | None = None,
    check_lookup: bool = True,
) -> dict[str, Any]:
    record = _new_record(sandbox, app, author, at or sandbox.now())
    _apply_fields(sandbox, app, record, given, errors, prefix, creating=True, check_lookup=check_lookup)
    return record


def _commit_new(app: KintoneApp, record: dict[str, Any]) -> int:
    rid = int(record["$id"]["value"])
    app.records[rid] = record
    app.next_record_id = rid + 1
    return rid


def _project(record: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if not fields:
        return copy.deepcopy(record)
    return {k: copy.deepcopy(v) for k, v in record.items() if k in fields}


def _record_id(value: Any, path: str = "id") -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise invalid(
            {path: ["必須です。" if value in (None, "") else "数値である必要があります。"]}
        ) from None


def _find_record(app: KintoneApp, params: dict[str, Any], path: str = "") -> tuple[int, dict[str, Any]]:
    if params.get("id") not in (None, ""):
        rid = _record_id(params.get("id"), f"{path}id")
        record = app.records.get(rid)
        if record is None:
            raise KintoneError("GAIA_RE01", rid)
        return rid, record
    update_key = params.get("updateKey")
    if isinstance(update_key, dict) and update_key.get("field") in app.fields:
        field, value = update_key["field"], str(update_key.get("value", ""))
        for rid, record in app.records.items():
            if str(record.get(field, {}).get("value")) == value:
                return rid, record
        raise KintoneError("GAIA_RE01", value)
    raise invalid({f"{path}id": ["必須です。"]})


def _check_revision(record: dict[str, Any], revision: Any, path: str) -> None:
    if revision in (None, "", -1, "-1"):
        return
    try:
        wanted = int(str(revision))
    except ValueError:
        raise invalid({path: ["数値である必要があります。"]}) from None
    if wanted != int(record["$revision"]["value"]):
        raise KintoneError("GAIA_CO02")


# --------------------------------------------------------------------------- query language (subset)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:\\.|[^"\\])*")
      | (?P<op>!=|>=|<=|=|>|<)
      | (?P<punct>[(),])
      | (?P<word>[^\s()=!<>,"]+)
    )""",
    re.VERBOSE,
)


class QuerySyntaxError(ValueError):
    pass


@dc.dataclass
class ParsedQuery:
    condition: Any  # nested tuples: ("and"|"or", [..]) | ("cmp", field, op, values)
    order: list[tuple[str, bool]]  # (field, descending)
    limit: int | None
    offset: int | None


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QuerySyntaxError(text[pos:])
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        for k, w in enumerate(words):
            tok = self.peek(k)
            if tok is None or tok[0] != "word" or tok[1].lower() != w:
                return False
        return True

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise QuerySyntaxError("unexpected end")
        self.i += 1
        return tok

    def expect_punct(self, p: str) -> None:
        tok = self.take()
        if tok != ("punct", p):
            raise QuerySyntaxError(f"expected {p}")

    def parse(self) -> ParsedQuery:
        condition = None
        if (
            self.peek()
            and not self.keyword("order", "by")
            and not self.keyword("limit")
            and not self.keyword("offset")
        ):
            condition = self.expr()
        order: list[tuple[str, bool]] = []
        if self.keyword("order", "by"):
            self.i += 2
            while True:
                kind, field = self.take()
                if kind != "word":
                    raise QuerySyntaxError("order by")
                desc = False
                if self.keyword("desc"):
                    desc, self.i = True, self.i + 1
                elif self.keyword("asc"):
                    self.i += 1
                order.append((field, desc))
                if self.peek() == ("punct", ","):
                    self.i += 1
                    continue
                break
        limit = offset = None
        while self.keyword("limit") or self.keyword("offset"):
            word = self.take()[1].lower()
            kind, num = self.take()
            if kind != "word" or not num.isdigit():
                raise QuerySyntaxError(word)
            if word == "limit":
                limit = int(num)
            else:
                offset = int(num)
        if self.peek() is not None:
            raise QuerySyntaxError(f"unexpected {self.peek()}")
        return ParsedQuery(condition, order, limit, offset)

    def expr(self) -> Any:
        parts = [self.term()]
        while self.keyword("or"):
            self.i += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def term(self) -> Any:
        parts = [self.factor()]
        while self.keyword("and"):
            self.i += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def factor(self) -> Any:
        if self.peek() == ("punct", "("):
            self.i += 1
            inner = self.expr()
            self.expect_punct(")")
            return inner
        kind, field = self.take()
        if kind != "word":
            raise QuerySyntaxError("field expected")
        if self.keyword("not", "in"):
            self.i += 2
            return ("cmp", field, "not in", self.value_list())
        if self.keyword("in"):
            self.i += 1
            return ("cmp", field, "in", self.value_list())
        if self.keyword("not", "like"):
            self.i += 2
            return ("cmp", field, "not like", [self.value()])
        if self.keyword("like"):
            self.i += 1
            return ("cmp", field, "like", [self.value()])
        if self.keyword("is", "not", "empty"):
            self.i += 3
            return ("cmp", field, "is not empty", [])
        if self.keyword("is", "empty"):
            self.i += 2
            return ("cmp", field, "is empty", [])
        kind, op = self.take()
        if kind != "op":
            raise QuerySyntaxError("operator expected")
        return ("cmp", field, op, [self.value()])

    def value_list(self) -> list[Any]:
        self.expect_punct("(")
        values = [self.value()]
        while self.peek() == ("punct", ","):
            self.i += 1
            values.append(self.value())
        self.expect_punct(")")
        return values

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text
        if kind == "word":
            if self.peek() == ("punct", "("):  # function call: NOW(), TODAY(), LOGINUSER(), ...
                self.i += 1
                args = []
                while self.peek() != ("punct", ")"):
                    tok = self.take()
                    if tok != ("punct", ","):
                        args.append(tok[1])
                self.i += 1
                return ("fn", text.upper(), args)
            return text  # bare number
        raise QuerySyntaxError("value expected")


def parse_query(text: str) -> ParsedQuery:
    try:
        return _Parser(text or "").parse()
    except QuerySyntaxError:
        raise invalid({"query": ["クエリ記法が間違っています。"]}) from None


_NUMERIC = {"__ID__", "__REVISION__", "RECORD_NUMBER", "NUMBER", "CALC"}
_TIMES = {"CREATED_TIME", "UPDATED_TIME", "DATETIME"}
_ENTITY = {"CREATOR", "MODIFIER", "USER_SELECT", "ORGANIZATION_SELECT", "GROUP_SELECT", "STATUS_ASSIGNEE"}
_LISTS = {"CHECK_BOX", "MULTI_SELECT"}


def _field_type(app: KintoneApp, field: str) -> str:
    if field == "$id":
        return "__ID__"
    if field == "$revision":
        return "__REVISION__"
    prop = app.fields.get(field)
    if prop is None:
        raise KintoneError("GAIA_IQ11", field)
    return str(prop.get("type"))


def _resolve(value: Any, ftype: str, login: str) -> Any:
    if isinstance(value, tuple) and value[0] == "fn":
        name = value[1]
        now = utcnow()
        if name == "NOW":
            return now
        if name == "TODAY":
            return now.date().isoformat() if ftype == "DATE" else now.replace(hour=0, minute=0, second=0)
        if name == "LOGINUSER":
            return login
        raise invalid({"query": [f"関数{name}()は使用できません。"]})
    if ftype in _NUMERIC:
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise invalid({"query": ["クエリ記法が間違っています。"]}) from None
    if ftype in _TIMES:
        try:
            return _parse_time(str(value))
        except ValueError:
            raise invalid({"query": ["クエリ記法が間違っています。"]}) from None
    return str(value)


def _field_values(record: dict[str, Any], field: str, ftype: str) -> list[Any]:
    """The comparable value(s) of a field in one record (lists for entity/multi-choice fields)."""
    raw = record.get(field, {}).get("value")
    if ftype in _NUMERIC:
        return [Decimal(str(raw))] if raw not in (None, "") else []
    if ftype in _TIMES:
        return [_parse_time(raw)] if raw else []
    if ftype in _ENTITY:
        if isinstance(raw, dict):
            return [raw.get("code")]
        return [e.get("code") for e in raw or []]
    if ftype in _LISTS:
        return list(raw or [])
    return [raw] if raw not in (None, "") else []


def _matches(cond: Any, record: dict[str, Any], app: KintoneApp, login: str) -> bool:
    if cond is None:
        return True
    if cond[0] == "and":
        return all(_matches(c, record, app, login) for c in cond[1])
    if cond[0] == "or":
        return any(_matches(c, record, app, login) for c in cond[1])
    _, field, op, raw_values = cond
    ftype = _field_type(app, field)
    values = [_resolve(v, ftype, login) for v in raw_values]
    have = _field_values(record, field, ftype)
    if op == "is empty":
        return not have
    if op == "is not empty":
        return bool(have)
    if op in ("in", "not in"):
        hit = any(h in values for h in have) or (not have and "" in values)
        return hit if op == "in" else not hit
    if op in ("like", "not like"):
        needle = str(values[0]).lower()
        hit = any(needle in str(h).lower() for h in have)
        return hit if op == "like" else not hit
    target = values[0]
    if ftype in _TIMES and isinstance(target, dt.datetime):
        have = [h.replace(second=0, microsecond=0) for h in have]
    if op == "=":
        return target in have if have else target in ("",)
    if op == "!=":
        return target not in have if have else target not in ("",)
    if not have:
        return False
    h = have[0]
    try:
        if op == ">":
            return bool(h > target)
        if op == "<":
            return bool(h < target)
        if op == ">=":
            return bool(h >= target)
        if op == "<=":
            return bool(h <= target)
    except TypeError:
        return False
    return False


def _sort_key(record: dict[str, Any], field: str, ftype: str) -> tuple[int, Any]:
    values = _field_values(record, field, ftype)
    if not values:
        return (0, "")
    v = values[0]
    return (1, v if not isinstance(v, dict) else str(v))


def select(app: KintoneApp, parsed: ParsedQuery, login: str = "") -> list[int]:
    """Record ids matching ``parsed`` in its order (default ``$id desc``), before limit/offset."""
    ids = [rid for rid, rec in app.records.items() if _matches(parsed.condition, rec, app, login)]
    order = parsed.order or [("$id", True)]
    for field, _desc in order:
        _field_type(app, field)  # unknown order field -> GAIA_IQ11
    for field, desc in reversed(order):
        if field == "$id":
            ids.sort(reverse=desc)
            continue
        ids.sort(key=_sorter(app, field, _field_type(app, field)), reverse=desc)
    return ids


def _sorter(app: KintoneApp, field: str, ftype: str) -> Callable[[int], tuple[int, Any]]:
    def key(rid: int) -> tuple[int, Any]:
        return _sort_key(app.records[rid], field, ftype)

    return key


# --------------------------------------------------------------------------- request plumbing
Handler = Callable[[Sandbox, Principal, dict[str, Any]], dict[str, Any]]


def _multi_params(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Query string to params; ``fields[0]=a&fields[1]=b``, ``fields[]=a`` and ``fields=a&fields=b`` -> lists."""
    out: dict[str, Any] = {}
    lists: dict[str, list[tuple[int, str]]] = {}
    for key, value in items:
        m = re.fullmatch(r"(\w+)\[(\d*)\](?:\.(\w+))?", key)
        if m:
            name, idx, _sub = m.groups()
            lists.setdefault(name, []).append((int(idx) if idx else len(lists.get(name, [])), value))
        elif key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    for name, pairs in lists.items():
        out[name] = [v for _, v in sorted(pairs, key=lambda p: p[0])]
    return out


async def _read_params(request: Request, method: str) -> dict[str, Any]:
    params: dict[str, Any] = _multi_params(parse_qsl(request.url.query, keep_blank_values=True))
    raw = await request.body()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise KintoneError("CB_IJ01") from None
        if not isinstance(body, dict):
            raise KintoneError("CB_IJ01")
        params.update(body)
    elif method in ("POST", "PUT") and "json" not in request.headers.get("content-type", "json"):
        raise KintoneError("CB_IJ01")
    return params


class BulkRequestFailed(KintoneError):
    """One request of a bulkRequest failed: kintone answers ``{"results": [...]}`` with that request's error
    at its index, ``{}`` for every other one, and nothing of the bulk is kept."""

    def __init__(self, failed: KintoneError, index: int, count: int) -> None:
        super().__init__(failed.code, *failed.args_, errors=failed.errors, status=failed.status)
        self.failed, self.index, self.count = failed, index, count


def _error_body(err: KintoneError, lang: str) -> dict[str, Any]:
    body: dict[str, Any] = {"code": err.wire_code, "id": _error_id(), "message": err.text(lang)}
    if err.errors:
        body["errors"] = err.errors
    return body


def _error_response(err: KintoneError, lang: str, extra_headers: dict[str, str]) -> Response:
    if isinstance(err, BulkRequestFailed):
        results: list[dict[str, Any]] = [{} for _ in range(err.count)]
        results[err.index] = _error_body(err.failed, lang)
        return JSONResponse({"results": results}, status_code=err.status, headers=extra_headers)
    body = _error_body(err, lang)
    return JSONResponse(body, status_code=err.status, headers={**extra_headers, **err.headers})


def _fault(sandbox: Sandbox, path: str) -> None:
    faults = sandbox.faults
    if faults.take(SERVICE, path, ("outage",)):
        raise KintoneError("CB_UN01", status=503)
    rule = faults.take(SERVICE, path, ("throttle",))
    if rule:
        raise KintoneError("GAIA_TO04", message=rule.message)
    rule = faults.take(SERVICE, path, ("db_lock",))
    if rule:
        raise KintoneError("GAIA_DA02", message=rule.message)
    rule = faults.take(SERVICE, path, ("error5xx",))
    if rule:
        raise KintoneError("GAIA_UN03", message=rule.message, status=500)


def _endpoint(
    path: str, method: str, fn: Handler, *, counts: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    operation = f"{method} {path}"

    async def handle(request: Request) -> Response:
        sandbox: Sandbox = request.app.state.sandbox
        lang = _lang(request)
        rt = _runtime(sandbox)
        kintone = sandbox.world.kintone
        limit = kintone.max_concurrent_requests
        rt.running += 1
        params: dict[str, Any] = {}
        status, error = 200, None
        try:
            conc = {"X-ConcurrencyLimit-Limit": str(limit), "X-ConcurrencyLimit-Running": str(rt.running)}
            try:
                if rt.running > limit:
                    raise KintoneError("GAIA_TO04")
                delay = sandbox.faults.latency_seconds(SERVICE, path)
                if delay:
                    await asyncio.sleep(delay)
                params = await _read_params(request, method)
                _fault(sandbox, path)
                with sandbox.lock:
                    principal = authenticate(sandbox, request.headers)
                    over = False
                    if counts and params.get("app") not in (None, ""):
                        app = _app(sandbox, principal, params.get("app"))
                        over = _count_request(sandbox, app)
                        if over and kintone.daily_limit_mode == "error":
                            raise KintoneError("SANDBOX_DAILY_LIMIT", app.id, kintone.daily_limit)
                    result = fn(sandbox, principal, params)
                if over:
                    error = "daily_limit_exceeded"  # real kintone answers normally; visible in the call log
                return JSONResponse(result, headers=conc)
            except KintoneError as err:
                status, error = err.status, err.wire_code
                return _error_response(err, lang, conc)
        finally:
            rt.running -= 1
            logged = {"app": params.get("app"), "id": params.get("id"), "record": params.get("record")}
            sandbox.calls.record(
                SERVICE, operation, {k: v for k, v in logged.items() if v is not None}, status, error
            )

    return handle


def _method_router(
    path: str, handlers: dict[str, Handler], **kw: Any
) -> Callable[[Request], Awaitable[Response]]:
    """One route per path; ``X-HTTP-Method-Override: GET`` on POST (long queries) is honoured."""
    endpoints = {m: _endpoint(path, m, h, **kw) for m, h in handlers.items()}

    async def route(request: Request) -> Response:
        method = request.method
        override = request.headers.get("x-http-method-override", "").upper()
        if method == "POST" and override in endpoints:
            method = override
        endpoint = endpoints.get(method)
        if endpoint is None:
            err = KintoneError("CB_NF01", status=404)
            return _error_response(err, _lang(request), {})
        return await endpoint(request)

    return route


# --------------------------------------------------------------------------- handlers: records
def _fields_param(params: dict[str, Any]) -> list[str] | None:
    fields = params.get("fields")
    if fields in (None, "", []):
        return None
    if isinstance(fields, str):
        return [fields]
    return [str(f) for f in fields]


def _login(principal: Principal) -> str:
    return principal.user["code"]


def get_record(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    _, record = _find_record(app, params)
    return {"record": copy.deepcopy(record)}


def get_records(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    parsed = parse_query(str(params.get("query") or ""))
    limit = 100 if parsed.limit is None else parsed.limit
    offset = parsed.offset or 0
    if limit > MAX_LIMIT:
        raise KintoneError("GAIA_QU01")
    if offset > MAX_OFFSET:
        raise KintoneError("GAIA_QU02")
    ids = select(app, parsed, _login(principal))
    fields = _fields_param(params)
    records = [_project(app.records[rid], fields) for rid in ids[offset : offset + limit]]
    if records and sandbox.faults.take(SERVICE, "records.json", ("short_read",)):
        # Like the cursor's short_read: the page silently lacks its last record while totalCount still
        # counts it; a client paging with records.json must notice on its own.
        records.pop()
    total = str(len(ids)) if str(params.get("totalCount", "")).lower() == "true" else None
    return {"records": records, "totalCount": total}


def _author(principal: Principal) -> dict[str, str]:
    return dict(principal.user)


def _insert_record(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> tuple[KintoneApp, int]:
    app = _app(sandbox, principal, params.get("app"))
    errors: dict[str, list[str]] = {}
    record = _create(sandbox, app, params.get("record") or {}, _author(principal), errors, "record.")
    if errors:
        raise invalid(errors)
    return app, _commit_new(app, record)


def post_record(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app, rid = _insert_record(sandbox, principal, params)
    notify_record(sandbox, app, "ADD_RECORD", rid)
    return {"id": str(rid), "revision": "1"}


def post_records(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    given = params.get("records")
    if not isinstance(given, list) or not given:
        raise invalid({"records": ["必須です。"]})
    if len(given) > MAX_BULK:
        raise invalid({"records": [f"一度に{MAX_BULK}件までしか登録できません。"]})
    errors: dict[str, list[str]] = {}
    created = []
    saved_next = app.next_record_id
    for i, rec in enumerate(given):
        record = _create(sandbox, app, rec or {}, _author(principal), errors, f"records[{i}].")
        created.append(record)
        app.next_record_id += 1  # reserve the id so the next one differs
    app.next_record_id = saved_next
    if errors:
        raise invalid(errors)
    ids = [_commit_new(app, r) for r in created]
    return {"ids": [str(i) for i in ids], "revisions": ["1"] * len(ids)}


def _update(
    sandbox: Sandbox,
    app: KintoneApp,
    item: dict[str, Any],
    author: dict[str, str],
    errors: dict[str, list[str]],
    prefix: str,
) -> tuple[int, dict[str, Any]]:
    rid, record = _find_record(app, item, prefix)
    _check_revision(record, item.get("revision"), f"{prefix}revision")
    staged = copy.deepcopy(record)
    _apply_fields(
        sandbox,
        app,
        staged,
        item.get("record") or {},
        errors,
        f"{prefix}record.",
        creating=False,
        exclude_record_id=rid,
    )
    _touch(app, staged, author, sandbox.now())
    return rid, staged


def _replace_record(
    sandbox: Sandbox, principal: Principal, params: dict[str, Any]
) -> tuple[KintoneApp, int, str]:
    app = _app(sandbox, principal, params.get("app"))
    errors: dict[str, list[str]] = {}
    rid, staged = _update(sandbox, app, params, _author(principal), errors, "")
    if errors:
        raise invalid(errors)
    app.records[rid] = staged
    return app, rid, str(staged["$revision"]["value"])


def put_record(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app, rid, revision = _replace_record(sandbox, principal, params)
    notify_record(sandbox, app, "UPDATE_RECORD", rid)
    return {"revision": revision}


# --------------------------------------------------------------------------- webhooks (payloads)
def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_url(sandbox: Sandbox, app_id: int, record_id: int) -> str:
    return f"https://{sandbox.world.kintone.domain}/k/{app_id}/show#record={record_id}"


def _record_title(app: KintoneApp, record: dict[str, Any]) -> str:
    """kintone's record title is a field chosen in the app settings; the sandbox takes the first text field."""
    code = next((c for c, p in app.fields.items() if p.get("type") == "SINGLE_LINE_TEXT"), None)
    return str(record.get(code, {}).get("value") or "") if code else ""


def notify_record(sandbox: Sandbox, app: KintoneApp, event: str, record_id: int) -> None:
    """ADD_RECORD / UPDATE_RECORD webhooks for a committed record (caller holds ``sandbox.lock``)."""

    def build() -> dict[str, Any]:
        record = app.records[record_id]
        return {
            "type": event,
            "app": {"id": str(app.id), "name": app.name},
            "record": copy.deepcopy(record),
            "recordTitle": _record_title(app, record),
            "url": _record_url(sandbox, app.id, record_id),
        }

    kintone_webhooks.emit(sandbox, app.id, event, record_id, build)


def notify_deleted(sandbox: Sandbox, app: KintoneApp, record_id: int, by: dict[str, str]) -> None:
    def build() -> dict[str, Any]:
        return {
            "type": "DELETE_RECORD",
            "app": {"id": str(app.id), "name": app.name},
            "recordId": str(record_id),
            "deletedBy": dict(by),
            "deletedAt": _stamp(sandbox.now()),
        }

    kintone_webhooks.emit(sandbox, app.id, "DELETE_RECORD", record_id, build)


def notify_comment(sandbox: Sandbox, app: KintoneApp, record_id: int, comment: KintoneComment) -> None:
    def build() -> dict[str, Any]:
        return {
            "type": "ADD_RECORD_COMMENT",
            "app": {"id": str(app.id), "name": app.name},
            "recordId": str(record_id),
            "comment": comment_json(comment),
            "url": f"{_record_url(sandbox, app.id, record_id)}&comment={comment.id}",
        }

    kintone_webhooks.emit(sandbox, app.id, "ADD_RECORD_COMMENT", record_id, build)


def put_records(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    given = params.get("records")
    if not isinstance(given, list) or not given:
        raise invalid({"records": ["必須です。"]})
    if len(given) > MAX_BULK:
        raise invalid({"records": [f"一度に{MAX_BULK}件までしか更新できません。"]})
    errors: dict[str, list[str]] = {}
    staged: list[tuple[int, dict[str, Any]]] = []
    for i, item in enumerate(given):
        if not isinstance(item, dict):
            raise invalid({f"records[{i}]": ["オブジェクトである必要があります。"]})
        staged.append(_update(sandbox, app, item, _author(principal), errors, f"records[{i}]."))
    if errors:
        raise invalid(errors)
    for rid, rec in staged:  # all or nothing, like kintone
        app.records[rid] = rec
    return {"records": [{"id": str(rid), "revision": rec["$revision"]["value"]} for rid, rec in staged]}


def delete_records(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    ids = params.get("ids")
    if isinstance(ids, str | int):
        ids = [ids]
    if not isinstance(ids, list) or not ids:
        raise invalid({"ids": ["必須です。"]})
    if len(ids) > MAX_BULK:
        raise invalid({"ids": [f"一度に{MAX_BULK}件までしか削除できません。"]})
    revisions = params.get("revisions") or []
    if isinstance(revisions, str | int):
        revisions = [revisions]
    targets = []
    for i, raw in enumerate(ids):
        rid = _record_id(raw, f"ids[{i}]")
        record = app.records.get(rid)
        if record is None:
            raise KintoneError("GAIA_RE01", rid)
        if i < len(revisions):
            _check_revision(record, revisions[i], f"revisions[{i}]")
        targets.append(rid)
    for rid in targets:
        app.records.pop(rid, None)
        app.comments.pop(rid, None)
    return {}


# --------------------------------------------------------------------------- handlers: cursor
def _purge_cursors(sandbox: Sandbox) -> None:
    now = sandbox.monotonic()
    cursors = sandbox.world.kintone.cursors
    for cid in [c.id for c in cursors.values() if c.expires_at <= now]:
        cursors.pop(cid, None)


def post_cursor(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    kintone = sandbox.world.kintone
    app = _app(sandbox, principal, params.get("app"))
    size_raw = params.get("size", 100)
    try:
        size = int(str(size_raw)) if size_raw not in (None, "") else 100
    except ValueError:
        raise invalid({"size": ["数値である必要があります。"]}) from None
    if size < 1 or size > MAX_LIMIT:
        raise invalid({"size": [f"1以上{MAX_LIMIT}以下である必要があります。"]})
    parsed = parse_query(str(params.get("query") or ""))
    if parsed.limit is not None or parsed.offset is not None:
        raise invalid({"query": ["カーソルAPIのクエリにlimit句、offset句は指定できません。"]})
    _purge_cursors(sandbox)
    if len(kintone.cursors) >= kintone.max_cursors:
        raise KintoneError("GAIA_TM12")
    ids = select(app, parsed, _login(principal))
    cid = f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
    kintone.cursors[cid] = KintoneCursor(
        id=cid,
        app_id=app.id,
        record_ids=ids,
        fields=_fields_param(params),
        position=0,
        total=len(ids),
        expires_at=sandbox.monotonic() + kintone.cursor_ttl_seconds,
        size=size,
    )
    return {"id": cid, "totalCount": str(len(ids))}


def _get_cursor(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> KintoneCursor:
    cid = str(params.get("id") or "")
    if not cid:
        raise invalid({"id": ["必須です。"]})
    _purge_cursors(sandbox)
    cursor = sandbox.world.kintone.cursors.get(cid)
    if cursor is None:
        raise KintoneError("GAIA_RE03")
    if principal.kind == "token" and principal.apps is not None and cursor.app_id not in principal.apps:
        raise KintoneError("GAIA_IA02")
    return cursor


def get_cursor(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    kintone = sandbox.world.kintone
    cursor = _get_cursor(sandbox, principal, params)
    app = kintone.apps.get(cursor.app_id)
    if app is not None:
        _count_request(sandbox, app)
    chunk = cursor.record_ids[cursor.position : cursor.position + cursor.size]
    cursor.position += len(chunk)
    records = [_project(app.records[rid], cursor.fields) for rid in chunk if app and rid in app.records]
    if records and sandbox.faults.take(SERVICE, "records/cursor.json", ("short_read",)):
        # A page that loses a record without an error: the read ends short of the announced totalCount
        # (what a client sees if kintone drops records mid-read); the client must notice on its own.
        records.pop()
    more = cursor.position < len(cursor.record_ids)
    if more:
        cursor.expires_at = sandbox.monotonic() + kintone.cursor_ttl_seconds
    else:
        kintone.cursors.pop(cursor.id, None)  # kintone deletes a cursor once its last page is read
    return {"records": records, "next": more}


def delete_cursor(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    cursor = _get_cursor(sandbox, principal, params)
    app = sandbox.world.kintone.apps.get(cursor.app_id)
    if app is not None:
        _count_request(sandbox, app)
    sandbox.world.kintone.cursors.pop(cursor.id, None)
    return {}


# --------------------------------------------------------------------------- handlers: comments
def comment_json(c: KintoneComment) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "text": c.text,
        "createdAt": c.created_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "creator": dict(c.creator),
        "mentions": [dict(m) for m in c.mentions],
    }


def _add_comment(
    sandbox: Sandbox, app: KintoneApp, record_id: int, comment: Any, author: dict[str, str]
) -> KintoneComment:
    if record_id not in app.records:
        raise KintoneError("GAIA_RE01", record_id)
    if not isinstance(comment, dict):
        raise invalid({"comment": ["必須です。"]})
    text = comment.get("text")
    if not isinstance(text, str) or not text:
        raise invalid({"comment.text": ["必須です。"]})
    if len(text) > MAX_COMMENT_CHARS:
        raise invalid({"comment.text": [f"{MAX_COMMENT_CHARS}文字より短くなければなりません。"]})
    mentions = comment.get("mentions") or []
    if not isinstance(mentions, list):
        raise invalid({"comment.mentions": ["配列である必要があります。"]})
    if len(mentions) > MAX_MENTIONS:
        raise invalid({"comment.mentions": [f"メンションは{MAX_MENTIONS}件までです。"]})
    clean = []
    for i, m in enumerate(mentions):
        code = m.get("code") if isinstance(m, dict) else None
        mtype = (m.get("type") if isinstance(m, dict) else None) or "USER"
        if not isinstance(code, str) or not code:
            raise invalid({f"comment.mentions[{i}].code": ["必須です。"]})
        if mtype not in ("USER", "GROUP", "ORGANIZATION"):
            raise invalid({f"comment.mentions[{i}].type": ["USER、GROUP、ORGANIZATIONのいずれかです。"]})
        if mtype == "USER":
            _user_entity(sandbox, code)
        clean.append({"code": code, "type": mtype})
    if clean:
        # kintone puts the mentioned names in front of the text ("@" dropped): "Name1 Name2 \ntext"
        users = sandbox.world.kintone.users
        names = [users.get(m["code"], m["code"]) if m["type"] == "USER" else m["code"] for m in clean]
        text = f"{' '.join(names)} \n{text}"
    entry = KintoneComment(app.next_comment_id, text, clean, dict(author), sandbox.now())
    app.next_comment_id += 1
    app.comments.setdefault(record_id, []).append(entry)
    return entry


def post_comment(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    rid = _record_id(params.get("record"), "record")
    entry = _add_comment(sandbox, app, rid, params.get("comment"), _author(principal))
    notify_comment(sandbox, app, rid, entry)
    return {"id": str(entry.id)}


def delete_comment(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    rid = _record_id(params.get("record"), "record")
    if rid not in app.records:
        raise KintoneError("GAIA_RE01", rid)
    cid = _record_id(params.get("comment"), "comment")
    comments = app.comments.get(rid, [])
    mine = [c for c in comments if c.id == cid]
    if not mine:
        raise invalid({"comment": ["指定したコメントが見つかりません。"]})
    if mine[0].creator.get("code") != principal.user["code"]:
        raise KintoneError("CB_NO02")
    app.comments[rid] = [c for c in comments if c.id != cid]
    return {}


def _count_param(params: dict[str, Any], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(str(raw))
    except ValueError:
        raise invalid({name: ["数値である必要があります。"]}) from None


def get_comments(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    rid = _record_id(params.get("record"), "record")
    if rid not in app.records:
        raise KintoneError("GAIA_RE01", rid)
    order = str(params.get("order") or "desc")
    offset = _count_param(params, "offset", 0)
    limit = _count_param(params, "limit", MAX_COMMENTS_PAGE)
    if limit < 0 or limit > MAX_COMMENTS_PAGE:  # kintone documents 0 to 10
        raise invalid({"limit": [f"0以上{MAX_COMMENTS_PAGE}以下である必要があります。"]})
    if offset < 0:
        raise invalid({"offset": ["0以上である必要があります。"]})
    comments = sorted(app.comments.get(rid, []), key=lambda c: c.id, reverse=order != "asc")
    page = comments[offset : offset + limit]
    return {
        "comments": [comment_json(c) for c in page],
        "older": offset + limit < len(comments),
        "newer": offset > 0,
    }


# --------------------------------------------------------------------------- handlers: apps
def _require_user(principal: Principal) -> None:
    if principal.kind != "user":
        raise KintoneError("GAIA_NO01")


def create_app(sandbox: Sandbox, name: str, *, fields: dict[str, dict[str, Any]] | None = None) -> KintoneApp:
    """An app with kintone's system fields (English codes) plus ``fields``."""
    kintone = sandbox.world.kintone
    app = KintoneApp(id=kintone.next_app_id, name=name)
    kintone.next_app_id += 1
    app.fields = copy.deepcopy(SYSTEM_FIELDS)
    if fields:
        app.fields.update(copy.deepcopy(fields))
    kintone.apps[app.id] = app
    return app


def post_app(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    _require_user(principal)
    name = params.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid({"name": ["必須です。"]})
    if len(name) > 64:
        raise invalid({"name": ["64文字より短くなければなりません。"]})
    app = create_app(sandbox, name)
    app.revision = 2
    return {"app": str(app.id), "revision": str(app.revision)}


def _app_info(app: KintoneApp) -> dict[str, Any]:
    return {
        "appId": str(app.id),
        "code": "",
        "name": app.name,
        "description": "",
        "spaceId": None,
        "threadId": None,
        "createdAt": "2024-01-01T00:00:00.000Z",
        "creator": dict(ADMIN),
        "modifiedAt": "2024-01-01T00:00:00.000Z",
        "modifier": dict(ADMIN),
    }


def get_app(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    return _app_info(_app(sandbox, principal, params.get("id")))


def get_apps(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    apps = sorted(sandbox.world.kintone.apps.values(), key=lambda a: a.id)
    if principal.kind == "token":
        apps = [a for a in apps if principal.apps and a.id in principal.apps]
    name = params.get("name")
    if name:
        apps = [a for a in apps if str(name).lower() in a.name.lower()]
    ids = params.get("ids")
    if ids:
        wanted = {int(str(i)) for i in (ids if isinstance(ids, list) else [ids])}
        apps = [a for a in apps if a.id in wanted]
    limit = int(str(params.get("limit") or 100))
    offset = int(str(params.get("offset") or 0))
    return {"apps": [_app_info(a) for a in apps[offset : offset + limit]]}


def get_fields(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    return {"properties": copy.deepcopy(app.fields), "revision": str(app.revision)}


_FIELD_CODE = re.compile(
    r"^[^\s0-9\-!\"#$%&'()*+,./:;<=>?@\[\\\]^`{|}~][^\s!\"#%&'()*+,./:;<=>?@\[\\\]^`{|}~\-]*$"
)


def post_fields(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    app = _app(sandbox, principal, params.get("app"))
    if principal.kind == "token" and principal.apps is not None and app.id not in principal.apps:
        raise KintoneError("GAIA_NO01")
    _check_app_revision(app, params.get("revision"))
    props = params.get("properties")
    if not isinstance(props, dict) or not props:
        raise invalid({"properties": ["必須です。"]})
    errors: dict[str, list[str]] = {}
    existing = _all_codes(app.fields)
    for code, prop in props.items():
        path = f"properties.{code}"
        if not isinstance(prop, dict) or "type" not in prop:
            errors.setdefault(f"{path}.type", []).append("必須です。")
            continue
        if prop["type"] in SYSTEM_TYPES or prop["type"] in ("__ID__", "__REVISION__"):
            errors.setdefault(f"{path}.type", []).append("このフィールドタイプは追加できません。")
        if prop.get("code", code) != code or not _FIELD_CODE.match(code) or len(code) > 128:
            errors.setdefault(f"{path}.code", []).append("フィールドコードが正しくありません。")
        codes = [code, *((prop.get("fields") or {}).keys() if prop["type"] == "SUBTABLE" else [])]
        for c in codes:
            if c in existing:
                errors.setdefault(f"{path}.code", []).append(f"フィールドコード「{c}」は重複しています。")
            existing.add(c)
        lookup = prop.get("lookup")
        if lookup:
            related = str((lookup.get("relatedApp") or {}).get("app") or "")
            key = lookup.get("relatedKeyField")
            target = sandbox.world.kintone.apps.get(int(related)) if related.isdigit() else None
            if target is None:
                errors.setdefault(f"{path}.lookup.relatedApp.app", []).append(
                    "参照先のアプリが見つかりません。"
                )
            elif key not in target.fields or not target.fields[key].get("unique"):
                errors.setdefault(f"{path}.lookup.relatedKeyField", []).append(
                    "コピー元のフィールドには「値の重複を禁止する」を設定したフィールドを指定してください。"
                )
    if errors:
        raise invalid(errors)
    for code, prop in props.items():
        stored = copy.deepcopy(prop)
        stored["code"] = code
        app.fields[code] = stored
    app.revision += 1
    return {"revision": str(app.revision)}


def _all_codes(props: dict[str, Any]) -> set[str]:
    codes = set(props)
    for prop in props.values():
        if prop.get("type") == "SUBTABLE":
            codes |= set(prop.get("fields") or {})
    return codes


def _check_app_revision(app: KintoneApp, revision: Any) -> None:
    if revision in (None, "", -1, "-1"):
        return
    if str(revision) != str(app.revision):
        raise KintoneError("GAIA_CO02")


def post_deploy(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    apps = params.get("apps")
    if not isinstance(apps, list) or not apps:
        raise invalid({"apps": ["必須です。"]})
    for item in apps:
        app = _app(sandbox, principal, item.get("app") if isinstance(item, dict) else None)
        _check_app_revision(app, item.get("revision"))
    return {}


def get_deploy(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    apps = params.get("apps")
    if isinstance(apps, str):
        apps = [apps]
    if not isinstance(apps, list) or not apps:
        raise invalid({"apps": ["必須です。"]})
    return {"apps": [{"app": str(_app(sandbox, principal, a).id), "status": "SUCCESS"} for a in apps]}


# --------------------------------------------------------------------------- bulkRequest
def _bulk_record_post(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    _, rid = _insert_record(sandbox, principal, params)
    return {"id": str(rid), "revision": "1"}


def _bulk_record_put(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    return {"revision": _replace_record(sandbox, principal, params)[2]}


# what bulkRequest runs in the sandbox (kintone also runs record(s)/status and assignees: no process
# management here); none of them sends webhooks, as kintone's bulk calls do not
BULK_APIS: dict[tuple[str, str], Handler] = {
    ("POST", "record.json"): _bulk_record_post,
    ("PUT", "record.json"): _bulk_record_put,
    ("POST", "records.json"): post_records,
    ("PUT", "records.json"): put_records,
    ("DELETE", "records.json"): delete_records,
}


def bulk_request(sandbox: Sandbox, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    """Runs up to 20 record writes over several apps all or nothing, as kintone's bulkRequest does."""
    given = params.get("requests")
    if not isinstance(given, list) or not given:
        raise invalid({"requests": ["必須です。"]})
    if len(given) > MAX_BULK_REQUESTS:
        raise invalid({"requests": [f"一度に{MAX_BULK_REQUESTS}件までしか実行できません。"]})
    steps: list[tuple[Handler, dict[str, Any]]] = []
    for i, req in enumerate(given):
        if not isinstance(req, dict):
            raise invalid({f"requests[{i}]": ["オブジェクトである必要があります。"]})
        api = str(req.get("api") or "")
        m = re.fullmatch(r"/k/v1/([\w/]+?)(?:\.json)?", api)
        handler = BULK_APIS.get((str(req.get("method") or "").upper(), f"{m.group(1)}.json" if m else ""))
        if handler is None:
            supported = ", ".join(f"{meth} /k/v1/{path}" for meth, path in BULK_APIS)
            raise invalid({f"requests[{i}].api": [f"一括処理できないAPIです（sandbox: {supported}）。"]})
        payload = req.get("payload")
        if not isinstance(payload, dict):
            raise invalid({f"requests[{i}].payload": ["必須です。"]})
        steps.append((handler, payload))
    apps = sandbox.world.kintone.apps
    # the writes only replace, add or pop entries of these dicts, so shallow copies undo them
    saved = {a.id: (dict(a.records), dict(a.comments), a.next_record_id) for a in apps.values()}
    counted: set[int] = set()
    results = []
    for i, (handler, payload) in enumerate(steps):
        try:
            app = _app(sandbox, principal, payload.get("app"))
            if app.id not in counted:
                counted.add(app.id)
                _count_request(sandbox, app)
            results.append(handler(sandbox, principal, payload))
        except KintoneError as err:
            for app_id, (records, comments, next_id) in saved.items():
                if app_id in apps:
                    apps[app_id].records, apps[app_id].comments = records, comments
                    apps[app_id].next_record_id = next_id
            raise BulkRequestFailed(err, i, len(steps)) from None
    return {"results": results}


# --------------------------------------------------------------------------- routes
async def not_found(request: Request) -> Response:
    """Any other path under ``/k/``: kintone's JSON 404 (``CB_NF01``), never an HTML page."""
    sandbox: Sandbox = request.app.state.sandbox
    path = request.path_params.get("rest", "")
    sandbox.calls.record(SERVICE, f"{request.method} {path}", {}, 404, "CB_NF01")
    return _error_response(KintoneError("CB_NF01", status=404), _lang(request), {})


def routes() -> list[BaseRoute]:
    table: list[tuple[str, dict[str, Handler], dict[str, Any]]] = [
        ("record.json", {"GET": get_record, "POST": post_record, "PUT": put_record}, {}),
        (
            "records.json",
            {"GET": get_records, "POST": post_records, "PUT": put_records, "DELETE": delete_records},
            {},
        ),
        ("records/cursor.json", {"POST": post_cursor, "GET": get_cursor, "DELETE": delete_cursor}, {}),
        ("record/comment.json", {"POST": post_comment, "DELETE": delete_comment}, {}),
        ("record/comments.json", {"GET": get_comments}, {}),
        ("app.json", {"GET": get_app}, {"counts": False}),
        ("apps.json", {"GET": get_apps}, {"counts": False}),
        ("app/form/fields.json", {"GET": get_fields}, {}),
        ("preview/app/form/fields.json", {"GET": get_fields, "POST": post_fields}, {"counts": False}),
        ("preview/app.json", {"POST": post_app}, {"counts": False}),
        ("preview/app/deploy.json", {"POST": post_deploy, "GET": get_deploy}, {"counts": False}),
        ("bulkRequest.json", {"POST": bulk_request}, {"counts": False}),
    ]
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return [
        *(
            Route(f"/k/v1/{path}", _method_router(path, handlers, **kw), methods=methods)
            for path, handlers, kw in table
        ),
        Route("/k/{rest:path}", not_found, methods=methods),  # last: only what no route above took
    ]


# --------------------------------------------------------------------------- in-process helpers
def _wire_fields(app: KintoneApp, fields: dict[str, Any]) -> dict[str, Any]:
    """Accepts plain values (``{"name": "X", "users": ["alice"]}``) or wire shape (``{"name": {"value": "X"}}``)."""
    out: dict[str, Any] = {}
    for code, value in fields.items():
        if isinstance(value, dict) and "value" in value:
            out[code] = {"value": value["value"]}
            continue
        prop = app.fields.get(code, {})
        if prop.get("type") == "SUBTABLE" and isinstance(value, list):
            value = [
                row
                if isinstance(row, dict) and "value" in row and isinstance(row["value"], dict)
                else {"value": row}
                for row in value
            ]
            value = [
                {
                    **({"id": r["id"]} if "id" in r else {}),
                    "value": {k: v if isinstance(v, dict) else {"value": v} for k, v in r["value"].items()},
                }
                for r in value
            ]
        out[code] = {"value": value}
    return out


def _author_of(sandbox: Sandbox, user_code: str) -> dict[str, str]:
    if user_code == "Administrator":
        return dict(ADMIN)
    return {"code": user_code, "name": sandbox.world.kintone.users.get(user_code, user_code)}


def add_record(
    sandbox: Sandbox,
    app_id: int | str,
    fields: dict[str, Any],
    *,
    user_code: str,
    at: dt.datetime | None = None,
    check_lookup: bool = True,
) -> int:
    """Adds a record as ``user_code`` would in the kintone UI (CREATOR/MODIFIER that user); returns its id.

    Raises :class:`KintoneError` (``CB_VA01`` etc.) like the UI would refuse to save.
    """
    with sandbox.lock:
        app = sandbox.world.kintone.apps[int(app_id)]
        errors: dict[str, list[str]] = {}
        record = _create(
            sandbox,
            app,
            _wire_fields(app, fields),
            _author_of(sandbox, user_code),
            errors,
            "record.",
            at=at,
            check_lookup=check_lookup,
        )
        if errors:
            raise invalid(errors)
        rid = _commit_new(app, record)
        notify_record(sandbox, app, "ADD_RECORD", rid)
        return rid


def update_record(
    sandbox: Sandbox,
    app_id: int | str,
    record_id: int | str,
    fields: dict[str, Any],
    *,
    user_code: str,
    at: dt.datetime | None = None,
) -> str:
    """Edits a record as ``user_code`` (revision +1, MODIFIER/UPDATED_TIME); returns the new revision."""
    with sandbox.lock:
        app = sandbox.world.kintone.apps[int(app_id)]
        rid = int(record_id)
        if rid not in app.records:
            raise KintoneError("GAIA_RE01", rid)
        staged = copy.deepcopy(app.records[rid])
        errors: dict[str, list[str]] = {}
        _apply_fields(
            sandbox,
            app,
            staged,
            _wire_fields(app, fields),
            errors,
            "record.",
            creating=False,
            exclude_record_id=rid,
        )
        if errors:
            raise invalid(errors)
        _touch(app, staged, _author_of(sandbox, user_code), at or sandbox.now())
        app.records[rid] = staged
        notify_record(sandbox, app, "UPDATE_RECORD", rid)
        return str(staged["$revision"]["value"])


def delete_record(
    sandbox: Sandbox, app_id: int | str, record_id: int | str, *, user_code: str = "Administrator"
) -> None:
    """Deletes a record as ``user_code`` would in the UI (its DELETE_RECORD webhook names that user)."""
    with sandbox.lock:
        app = sandbox.world.kintone.apps[int(app_id)]
        if app.records.pop(int(record_id), None) is None:
            raise KintoneError("GAIA_RE01", record_id)
        app.comments.pop(int(record_id), None)
        notify_deleted(sandbox, app, int(record_id), _author_of(sandbox, user_code))


def comments_of(sandbox: Sandbox, app_id: int | str, record_id: int | str) -> list[dict[str, Any]]:
    """The record's comments, oldest first, in the REST API's shape."""
    with sandbox.lock:
        app = sandbox.world.kintone.apps.get(int(app_id))
        if app is None:
            return []
        return [comment_json(c) for c in sorted(app.comments.get(int(record_id), []), key=lambda c: c.id)]


def add_comment(
    sandbox: Sandbox,
    app_id: int | str,
    record_id: int | str,
    text: str,
    *,
    user_code: str,
    mentions: list[dict[str, str]] | None = None,
) -> int:
    """A comment written by a person (e.g. a requester answering the pipeline)."""
    with sandbox.lock:
        app = sandbox.world.kintone.apps[int(app_id)]
        entry = _add_comment(
            sandbox,
            app,
            int(record_id),
            {"text": text, "mentions": mentions or []},
            _author_of(sandbox, user_code),
        )
        notify_comment(sandbox, app, int(record_id), entry)
        return entry.id


def get_record_json(sandbox: Sandbox, app_id: int | str, record_id: int | str) -> dict[str, Any]:
    with sandbox.lock:
        return copy.deepcopy(sandbox.world.kintone.apps[int(app_id)].records[int(record_id)])


def add_api_token(sandbox: Sandbox, app_id: int | str, token: str | None = None) -> str:
    """Creates an API token for an app (kintone has no REST API for this: it is a UI action)."""
    with sandbox.lock:
        app = sandbox.world.kintone.apps[int(app_id)]
        token = token or secrets.token_urlsafe(30)[:40]
        if token not in app.api_tokens:
            app.api_tokens.append(token)
        return token


def build_record(
    sandbox: Sandbox,
    app: KintoneApp,
    fields: dict[str, Any],
    *,
    user_code: str,
    at: dt.datetime,
    modified_by: str | None = None,
    updated_at: dt.datetime | None = None,
    revision: int = 1,
) -> int:
    """Fast path for seeds: no lookup check, no uniqueness scan (the seed is trusted), record committed."""
    errors: dict[str, list[str]] = {}
    record = _new_record(sandbox, app, _author_of(sandbox, user_code), at)
    saved = {c: p for c, p in app.fields.items() if p.get("unique")}
    for p in saved.values():
        p["unique"] = False
    try:
        _apply_fields(
            sandbox,
            app,
            record,
            _wire_fields(app, fields),
            errors,
            "record.",
            creating=True,
            check_lookup=False,
        )
    finally:
        for p in saved.values():
            p["unique"] = True
    if errors:
        raise invalid(errors)
    if modified_by or updated_at or revision != 1:
        record["$revision"]["value"] = str(revision)
        for code, prop in app.fields.items():
            if prop.get("type") == "MODIFIER" and modified_by:
                record[code]["value"] = _author_of(sandbox, modified_by)
            elif prop.get("type") == "UPDATED_TIME" and updated_at:
                record[code]["value"] = _fmt_time(updated_at)
    return _commit_new(app, record)
