"""What a kintone webhook means for the sync: start a run now, and answer a requester's ``/sync``.

kintone posts a JSON body for a record added, edited or deleted and a comment posted (in either app). A
record change starts a run at once; a comment starts one only when it is the command ``/sync`` (the
pipeline's own comments arrive as webhooks too and must not start runs). kintone puts the names of the
mentioned people on the first line of a comment's text, so the command is read after them. Everything else
is ignored, with the reason (logged by the endpoint). kintone sends at most 60 webhooks a minute and never
retries: the ten-minute schedule stays the safety net.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from idc_sync.config import SyncConfig

SYNC_COMMAND = "/sync"
REQUESTS_FOLDER = "state/sync_requests"  # one file per /sync request: no read-modify-write between writers
SEEN_STATE = "state/webhook_ids.json"  # recent webhook ids: a replayed body is ignored
SEEN_KEEP = 2000
RECORD_EVENTS = ("ADD_RECORD", "UPDATE_RECORD", "DELETE_RECORD")


class SyncRequest(BaseModel):
    """A requester's ``/sync``: answered on their record once a run that started after it has finished."""

    app_id: str
    record_id: str
    comment_id: str
    requested_by: str  # kintone user code of the commenter (mentioned in the answers)
    at: dt.datetime

    @property
    def name(self) -> str:
        """The request's state file, unique per comment."""
        return f"{REQUESTS_FOLDER}/{self.app_id}-{self.record_id}-{self.comment_id}.json"


class Decision(BaseModel):
    trigger: bool
    reason: str
    request: SyncRequest | None = None
    webhook_id: str = ""


class _App(BaseModel):
    id: str | int


class _Creator(BaseModel):
    code: str = ""


class _Comment(BaseModel):
    id: str | int
    text: str = ""
    creator: _Creator = Field(default_factory=_Creator)
    mentions: list[Any] = Field(default_factory=list)


class _Body(BaseModel):
    id: str | int = ""
    type: str
    app: _App
    record: dict[str, Any] | None = None
    recordId: str | int | None = None  # DELETE_RECORD
    comment: _Comment | None = None


def command_of(text: str, mentions: list[Any]) -> str:
    """The comment's text without kintone's leading line of mentioned names."""
    if mentions and "\n" in text:
        text = text.split("\n", 1)[1]
    return text.strip()


def _record_id(body: _Body) -> str:
    if body.recordId is not None:
        return str(body.recordId)
    field = (body.record or {}).get("$id") or {}
    return str(field.get("value", "")) if isinstance(field, dict) else ""


def decide(payload: Any, config: SyncConfig, *, now: dt.datetime) -> Decision:
    """What one webhook body means (never raises: a body we cannot read is ignored with the reason)."""
    try:
        body = _Body.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return Decision(trigger=False, reason=f"not a kintone webhook body ({where}: {first.get('msg')})")
    app = str(body.app.id)
    webhook_id = str(body.id)
    if app not in (config.permission_sets_app_id, config.assignments_app_id):
        return Decision(trigger=False, reason=f"app {app} is not one of the two apps", webhook_id=webhook_id)
    if body.type in RECORD_EVENTS:
        return Decision(
            trigger=True, reason=f"{body.type} of record {_record_id(body)}", webhook_id=webhook_id
        )
    if body.type != "ADD_RECORD_COMMENT" or body.comment is None:
        return Decision(trigger=False, reason=f"{body.type} does not change access", webhook_id=webhook_id)
    if command_of(body.comment.text, body.comment.mentions).lower() != SYNC_COMMAND:
        return Decision(trigger=False, reason="a comment that is not /sync", webhook_id=webhook_id)
    request = SyncRequest(
        app_id=app,
        record_id=_record_id(body),
        comment_id=str(body.comment.id),
        requested_by=body.comment.creator.code,
        at=now,
    )
    return Decision(
        trigger=True, reason=f"/sync on record {request.record_id}", request=request, webhook_id=webhook_id
    )


def remember(seen: dict[str, Any], webhook_id: str) -> tuple[bool, dict[str, Any]]:
    """Whether ``webhook_id`` is new, and the memory with it (the newest :data:`SEEN_KEEP` ids)."""
    ids = [str(i) for i in seen.get("ids", [])] if isinstance(seen.get("ids"), list) else []
    if not webhook_id:
        return True, {"ids": ids}
    if webhook_id in ids:
        return False, {"ids": ids}
    return True, {"ids": [*ids, webhook_id][-SEEN_KEEP:]}


Verdict = Literal["changed", "unchanged", "problems", "failed"]

_STARTED = {
    "ja": "👀 同期を開始しました。終わったらこのレコードに結果をお知らせします。",
    "en": "👀 Sync started. The result for this record will be posted here when it finishes.",
}
_ANSWERS = {
    "ja": {
        "changed": "✅ 同期が終わりました。このレコードのアクセス権を反映しました（詳細は上のコメント）。",
        "unchanged": "✅ 同期が終わりました。このレコードについて変更はありません（すでに反映済みです）。",
        "problems": "⚠️ 同期が終わりました。このレコードには直すべき点があります（上のコメントをご覧ください）。",
        "failed": "❌ 同期が失敗しました。管理者に通知済みです。次回の同期（10分ごと）で再試行します。",
    },
    "en": {
        "changed": "✅ Sync finished: this record's access was applied (details in the comment above).",
        "unchanged": "✅ Sync finished: nothing to change for this record (it is already in place).",
        "problems": "⚠️ Sync finished: this record has something to fix (see the comment above).",
        "failed": "❌ The sync failed; admins were told. The next sync (every 10 minutes) tries again.",
    },
}


def started_text(language: str) -> str:
    return "\n\n".join(_STARTED[lang] for lang in _languages(language))


def answer_text(verdict: Verdict, language: str, run_url: str | None = None) -> str:
    text = "\n\n".join(_ANSWERS[lang][verdict] for lang in _languages(language))
    return f"{text}\n{run_url}" if run_url else text


def verdict_for(record_key: str, *, changed: set[str], with_problems: set[str], run_failed: bool) -> Verdict:
    """What happened to one record in the run that answers its ``/sync``."""
    if record_key in with_problems:
        return "problems"
    if record_key in changed:
        return "changed"
    return "failed" if run_failed else "unchanged"


def _languages(language: str) -> tuple[str, ...]:
    return ("ja", "en") if language == "ja+en" else (language if language in _STARTED else "en",)
