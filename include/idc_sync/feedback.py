"""What people are told: record comments (once per change of problems), the Slack summary, the run note.

Requesters hear about *their* record, once when its problems appear or change and once when they are
resolved (DESIGN safety rule 5). The memory of what was last said is a small JSON state
(record key -> fingerprint) kept beside the audit artifacts, so it survives runs and machines and never
touches the record itself (writing to the record would change its revision and look like a user edit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from idc_sync.model import OpResult, Plan, Problem, RecordRef

RESOLVED = "resolved"

_HEADERS = {
    "ja": {
        "problems": "[idc-sync] このレコードの内容を AWS IAM Identity Center に反映できませんでした。",
        "pending": "[idc-sync] このレコードの一部は反映待ちです。",
        "resolved": "[idc-sync] 問題は解消され、このレコードの内容は AWS IAM Identity Center に反映されました。",
        "error": "エラー",
        "warning": "注意",
        "pending_label": "反映待ち",
        "info": "お知らせ",
        "footer": "レコードを修正すると、次回の同期（10分ごと）で再確認します。",
    },
    "en": {
        "problems": "[idc-sync] This record could not be fully applied to AWS IAM Identity Center.",
        "pending": "[idc-sync] Part of this record is waiting to be applied.",
        "resolved": "[idc-sync] Resolved: this record is now applied to AWS IAM Identity Center.",
        "error": "Error",
        "warning": "Warning",
        "pending_label": "Pending",
        "info": "Note",
        "footer": "Edit the record and the next sync (every 10 minutes) checks it again.",
    },
}
_LABEL = {"error": "error", "warning": "warning", "pending": "pending_label", "info": "info"}


class Comment(BaseModel):
    app_id: str
    record_id: str
    record_key: str
    text: str
    mentions: list[dict[str, str]] = Field(default_factory=list)
    fingerprint: str


class FeedbackPlan(BaseModel):
    comments: list[Comment] = Field(default_factory=list)
    state: dict[str, str] = Field(default_factory=dict)  # record key -> fingerprint after this run


def record_fingerprint(problems: Iterable[Problem]) -> str:
    """Stable digest of a record's set of problems (order-insensitive)."""
    lines = sorted({p.fingerprint for p in problems})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def group_by_record(problems: Iterable[Problem]) -> dict[str, tuple[RecordRef, list[Problem]]]:
    grouped: dict[str, tuple[RecordRef, list[Problem]]] = {}
    for problem in problems:
        if problem.record is None:
            continue
        _, items = grouped.setdefault(problem.record.key, (problem.record, []))
        if problem.fingerprint not in {p.fingerprint for p in items}:
            items.append(problem)
    return grouped


def render_comment(ref: RecordRef, problems: list[Problem], language: str) -> str:
    texts = _HEADERS.get(language, _HEADERS["en"])
    only_pending = all(p.severity == "pending" for p in problems)
    lines = [texts["pending"] if only_pending else texts["problems"], ""]
    order = {"error": 0, "pending": 1, "warning": 2, "info": 3}
    for p in sorted(problems, key=lambda p: (order.get(p.severity, 9), p.code, p.message)):
        lines.append(f"- [{texts[_LABEL[p.severity]]}] {p.message}")
    lines += ["", texts["footer"]]
    return "\n".join(lines)


def mentions_for(ref: RecordRef) -> list[dict[str, str]]:
    seen: list[str] = []
    for code in ref.mentions:
        if code and code not in seen:
            seen.append(code)
    return [{"code": c, "type": "USER"} for c in seen[:10]]  # kintone allows at most 10 mentions


def plan_feedback(
    problems: Iterable[Problem],
    previous: dict[str, str],
    *,
    language: str,
    live_records: set[str] | None = None,
    app_ids: dict[str, str] | None = None,
) -> FeedbackPlan:
    """Comments to post and the new state.

    ``previous`` maps record keys to the fingerprint last commented. A record whose problems are gone
    gets one "resolved" comment if it still exists (``live_records``: keys of records read this run;
    ``app_ids``: app key -> kintone app id, to address it).
    """
    grouped = group_by_record(problems)
    out = FeedbackPlan()
    for key, (ref, items) in sorted(grouped.items()):
        fp = record_fingerprint(items)
        out.state[key] = fp
        if previous.get(key) != fp:
            out.comments.append(
                Comment(
                    app_id=ref.app_id,
                    record_id=ref.record_id,
                    record_key=key,
                    text=render_comment(ref, items, language),
                    mentions=mentions_for(ref),
                    fingerprint=fp,
                )
            )
    for key, fp in previous.items():
        if key in grouped or fp == RESOLVED:
            continue
        if live_records is not None and key not in live_records:
            continue  # the record was deleted: nobody to tell
        out.state[key] = RESOLVED
        app_key, _, record_id = key.partition(":")
        out.comments.append(
            Comment(
                app_id=(app_ids or {}).get(app_key, ""),
                record_id=record_id,
                record_key=key,
                text=_HEADERS.get(language, _HEADERS["en"])["resolved"],
                fingerprint=RESOLVED,
            )
        )
    # keep resolved markers only for records that still exist, so the state does not grow forever
    for key, fp in previous.items():
        if fp == RESOLVED and key not in out.state and (live_records is None or key in live_records):
            out.state[key] = RESOLVED
    return out


def summarize_results(results: Iterable[OpResult]) -> dict[str, dict[str, int]]:
    """{kind: {succeeded: n, failed: n, skipped: n}}"""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        out.setdefault(r.kind.value, {}).setdefault(r.status, 0)
        out[r.kind.value][r.status] += 1
    return out


def run_summary_text(
    *,
    dag_run_id: str,
    plan: Plan,
    results: list[OpResult],
    problems: list[Problem],
    dry_run: bool,
    scim: dict[str, Any] | None,
    ui_url: str | None = None,
) -> str:
    """One short paragraph: used as the DagRun note and the first line of the Slack message."""
    failed = [r for r in results if r.status == "failed"]
    ok = [r for r in results if r.status == "succeeded"]
    record_problems = [p for p in problems if p.record is not None and p.severity == "error"]
    admin = [p for p in problems if p.record is None]
    mode = "dry run: planned" if dry_run else "applied"
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in plan.counts().items() if n)
    parts = [
        f"idc-sync {dag_run_id}: {mode} {len(plan.operations)} change(s)" + (f" ({counts})" if counts else "")
    ]
    if not dry_run:
        parts.append(f"{len(ok)} succeeded, {len(failed)} failed")
    if plan.skipped:
        parts.append(f"{len(plan.skipped)} skipped")
    if record_problems:
        parts.append(f"{len(record_problems)} record problem(s)")
    if admin:
        parts.append(f"{len(admin)} admin alert(s)")
    if scim:
        parts.append(f"SCIM {scim.get('status', 'unknown')}")
    text = "; ".join(parts) + "."
    if ui_url:
        text += f" {ui_url}"
    return text


def slack_message(
    summary: str,
    *,
    results: list[OpResult],
    problems: list[Problem],
    plan: Plan,
    max_lines: int = 15,
) -> dict[str, Any]:
    """Incoming-webhook payload (text + mrkdwn blocks): what changed, what failed, what needs an admin."""
    lines: list[str] = []
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines.append(f"*Failed ({len(failed)})*")
        lines += [f"• `{r.key}`: {r.message}" for r in failed[:max_lines]]
        if len(failed) > max_lines:
            lines.append(f"• … and {len(failed) - max_lines} more (see the audit artifact)")
    admin = [p for p in problems if p.record is None]
    if admin:
        lines.append(f"*Needs an admin ({len(admin)})*")
        lines += [f"• {p.message}" for p in admin[:max_lines]]
    drift = [op for op in plan.operations if op.reason.startswith("drift")]
    drift_skipped = [s for s in plan.skipped if s.reason.startswith("drift")]
    if drift or drift_skipped:
        lines.append(f"*Drift ({len(drift) + len(drift_skipped)})*")
        lines += [f"• {op.kind.value} `{op.key}` ({op.reason})" for op in drift[:max_lines]]
        lines += [f"• reported only: `{s.key}` ({s.reason})" for s in drift_skipped[:max_lines]]
    changed = [r for r in results if r.status == "succeeded"]
    if changed:
        by_kind = summarize_results(changed)
        lines.append("*Applied* " + ", ".join(f"{k}: {v['succeeded']}" for k, v in sorted(by_kind.items())))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": summary}}]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}})
    return {"text": summary, "blocks": blocks}
