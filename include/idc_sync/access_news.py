""" "Your access is live": one comment per record whose access this run changed.

Problems reach a record through ``feedback.plan_feedback``; this module tells the good news. After apply, each
record that asked for an operation that *succeeded* in this run (an assignment created, or removed because
the record expired or was edited; its permission set created or changed) gets one comment in the record's
language that says what changed per account, with the AWS access portal shortcut link of each account and
permission set (``<portal>/#/console?account_id=…&role_name=…``) when the portal URL is configured. Nothing
changed, nothing said; a group assignment over hundreds of accounts is summarised, not listed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from idc_sync.feedback import BILINGUAL, Comment, in_languages, mentions_for
from idc_sync.model import AssignmentOp, Cause, OpKind, OpResult, Plan, RecordRef
from idc_sync.sanitize import strip_control

MAX_ACCOUNTS_LISTED = 10  # per permission set and principal; the rest is "and N more accounts"
STATE = "state/access_news.json"  # run id -> record keys told, so a retried notify does not repeat

_TEXTS = {
    "ja": {
        "header": "アクセス権を AWS IAM Identity Center に反映しました。",
        "granted": "付与: {who} に権限セット {ps}",
        "removed": "削除: {who} の権限セット {ps}",
        "removed_expired": "期限切れで削除: {who} の権限セット {ps}",
        "set_created": "権限セット {ps} を作成しました。",
        "set_updated": "権限セット {ps} の定義を更新しました。",
        "more": "…ほか {n} アカウント",
        "open": "開く",
        "user": "ユーザー {name}",
        "group": "グループ {name}",
        "portal": "AWS アクセスポータル: {url}",
        "run": "実行の詳細: {url}",
    },
    "en": {
        "header": "Your access is live in AWS IAM Identity Center.",
        "granted": "Granted: permission set {ps} to {who}",
        "removed": "Removed: permission set {ps} of {who}",
        "removed_expired": "Removed (expired): permission set {ps} of {who}",
        "set_created": "Permission set {ps} was created.",
        "set_updated": "The definition of permission set {ps} was updated.",
        "more": "... and {n} more account(s)",
        "open": "open",
        "user": "user {name}",
        "group": "group {name}",
        "portal": "AWS access portal: {url}",
        "run": "Run details: {url}",
    },
}


def shortcut_link(portal_url: str, account_id: str, permission_set: str) -> str:
    """The access portal's shortcut to the console of ``account_id`` as ``permission_set``."""
    base = portal_url.rstrip("/")
    return f"{base}/#/console?account_id={quote(account_id)}&role_name={quote(permission_set)}"


@dataclass
class RecordNews:
    """What changed for one record: (action, permission set, principal) -> accounts, and set changes."""

    ref: RecordRef
    assignments: dict[tuple[str, str, str, str], list[str]] = field(default_factory=dict)
    sets: list[tuple[str, str]] = field(default_factory=list)  # (set_created | set_updated, name)

    @property
    def fingerprint(self) -> str:
        text = repr((sorted(self.assignments.items()), sorted(self.sets)))
        return "access:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def record_news(plan: Plan, results: Iterable[OpResult]) -> dict[str, RecordNews]:
    """Record key -> what this run changed for it: only operations that succeeded now (not those already in
    place, deferred, skipped or failed)."""
    done = {r.key for r in results if r.status == "succeeded"}
    news: dict[str, RecordNews] = {}
    for op in plan.operations:
        if op.key not in done:
            continue
        for ref in op.records:
            item = news.setdefault(ref.key, RecordNews(ref))
            if isinstance(op, AssignmentOp):
                action = (
                    "granted"
                    if op.kind is OpKind.CREATE_ASSIGNMENT
                    else "removed_expired"
                    if op.cause is Cause.EXPIRED
                    else "removed"
                )
                who = (op.principal_type, op.principal_name)
                item.assignments.setdefault((action, op.permission_set_name, *who), []).append(op.account_id)
            elif op.kind in (OpKind.CREATE_PERMISSION_SET, OpKind.UPDATE_PERMISSION_SET):
                what = "set_created" if op.kind is OpKind.CREATE_PERMISSION_SET else "set_updated"
                item.sets.append((what, op.permission_set_name))
    return news


def render_news(
    news: RecordNews, language: str, *, portal_url: str | None = None, run_url: str | None = None
) -> str:
    """The comment: a header, then one line per permission set and principal with its accounts (granted
    ones with their shortcut links), at most :data:`MAX_ACCOUNTS_LISTED` accounts each. ``"ja+en"``: both."""
    if language == BILINGUAL:
        return in_languages(
            language, lambda lang, _room: render_news(news, lang, portal_url=portal_url, run_url=run_url)
        )
    t = _TEXTS.get(language, _TEXTS["en"])
    lines = [t["header"], ""]
    for what, name in sorted(set(news.sets)):
        lines.append("- " + t[what].format(ps=name))
    for (action, ps, ptype, pname), accounts in sorted(news.assignments.items()):
        who = t["group" if ptype == "GROUP" else "user"].format(name=pname)
        lines.append("- " + t[action].format(ps=ps, who=who))
        shown = sorted(set(accounts))
        for account in shown[:MAX_ACCOUNTS_LISTED]:
            if action == "granted" and portal_url:
                lines.append(f"  - {account}: {shortcut_link(portal_url, account, ps)}")
            else:
                lines.append(f"  - {account}")
        if len(shown) > MAX_ACCOUNTS_LISTED:
            lines.append("  - " + t["more"].format(n=len(shown) - MAX_ACCOUNTS_LISTED))
    tail = []
    if portal_url:
        tail.append(t["portal"].format(url=portal_url))
    if run_url:
        tail.append(t["run"].format(url=run_url))
    if tail:
        lines += ["", *tail]
    return strip_control("\n".join(lines))


def including_owed(
    plan: Plan, results: Iterable[OpResult], owed: Iterable[AssignmentOp]
) -> tuple[Plan, list[OpResult]]:
    """The plan and results with the creations an interrupted earlier run made (``apply_journal.owed_news``)
    counted as made now: their records hear the news once, from this run."""
    out = list(results)
    ops = list(plan.operations)
    planned = {op.key for op in ops}
    succeeded = {r.key for r in out if r.status == "succeeded"}
    for op in owed:
        if op.key in succeeded:
            continue
        if op.key not in planned:
            ops.append(op)
        out.append(
            OpResult(key=op.key, kind=op.kind, status="succeeded", message="made by an interrupted run")
        )
    return plan.model_copy(update={"operations": ops}), out


def access_comments(
    plan: Plan,
    results: Iterable[OpResult],
    *,
    language: str,
    live_records: set[str],
    portal_url: str | None = None,
    run_url: str | None = None,
    already_told: Iterable[str] = (),
) -> list[Comment]:
    """One comment per live record whose access changed in this run (a deleted record has nobody to tell;
    ``already_told``: keys a previous try of this run's notify already commented on)."""
    told = set(already_told)
    out = []
    for key, item in sorted(record_news(plan, results).items()):
        if key not in live_records or key in told:
            continue
        out.append(
            Comment(
                app_id=item.ref.app_id,
                record_id=item.ref.record_id,
                record_key=key,
                text=render_news(item, language, portal_url=portal_url, run_url=run_url),
                mentions=mentions_for(item.ref),
                fingerprint=item.fingerprint,
            )
        )
    return out


def told_after(previous: Mapping[str, object], run_id: str, posted: Iterable[str]) -> dict[str, object]:
    """The state after posting: only this run's keys are kept (a later run starts afresh)."""
    before = previous.get("told") if previous.get("run_id") == run_id else None
    keys = set(before) if isinstance(before, list) else set()
    return {"run_id": run_id, "told": sorted(keys | set(posted))}


def already_told(previous: Mapping[str, object], run_id: str) -> list[str]:
    told = previous.get("told") if previous.get("run_id") == run_id else None
    return [str(k) for k in told] if isinstance(told, list) else []
