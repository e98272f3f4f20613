"""The run's Slack message for admins, in Block Kit: a header that says what happened, who got what, what
failed (with the error itself), what needs a human, and a context line with links (the run in Airflow, the
approval page); a message Slack did not take is sent later, marked late, by ``outbox``. Silence when nothing happened is decided by ``outcome`` (``feedback.should_post_summary``).

Every piece of text that comes from records or services (names, reasons, error messages) is escaped
(``sanitize.slack_escape``): a record named ``<!channel>`` shows as text and pings nobody. Slack's limits
are kept: a header of 150 characters, sections of 3,000, at most 50 blocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from idc_sync.feedback import outcome_counts
from idc_sync.model import AssignmentOp, OpKind, OpResult, Plan, Problem
from idc_sync.sanitize import slack_code, slack_escape

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
MAX_LINES = 15  # per list; the rest is "and N more (see the run)"

_VERB = {
    OpKind.CREATE_ASSIGNMENT: "granted",
    OpKind.DELETE_ASSIGNMENT: "removed",
    OpKind.CREATE_PERMISSION_SET: "created permission set",
    OpKind.UPDATE_PERMISSION_SET: "updated permission set",
    OpKind.PROVISION_PERMISSION_SET: "provisioned permission set",
    OpKind.DELETE_PERMISSION_SET: "deleted permission set",
}


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def headline(
    counts: dict[str, int], problems: Iterable[Problem], *, drift: int = 0, dry_run: bool = False
) -> str:
    """What happened, in one line: "3 access changes applied, 1 record needs a fix"."""
    items = list(problems)
    records = {p.record.key for p in items if p.record is not None and p.severity == "error"}
    admin = [p for p in items if p.record is None and p.code not in ("deletions_withheld", "task_failed")]
    tasks = [p for p in items if p.code == "task_failed"]
    parts = []
    if counts.get("applied"):
        parts.append(_plural(counts["applied"], "access change") + " applied")
    if counts.get("failed"):
        parts.append(_plural(counts["failed"], "change") + " failed")
    if tasks:
        parts.append(_plural(len(tasks), "task") + " failed")
    if counts.get("withheld"):
        parts.append(_plural(counts["withheld"], "deletion") + " waiting for approval")
    if records:
        parts.append(_plural(len(records), "record needs a fix", "records need a fix"))
    if drift:
        parts.append(_plural(drift, "hand-made change") + " found (drift)")
    if admin:
        parts.append(_plural(len(admin), "admin alert"))
    if counts.get("deferred"):
        parts.append(_plural(counts["deferred"], "change") + " left for the next run")
    text = ", ".join(parts) if parts else "Nothing changed"
    text = ("Dry run: " + text[0].lower() + text[1:]) if dry_run else text
    return text[:HEADER_LIMIT]


def _op_line(op: Any) -> str:
    esc = slack_escape
    verb = _VERB.get(op.kind, op.kind.value)
    if isinstance(op, AssignmentOp):
        who = ("group " if op.principal_type == "GROUP" else "") + op.principal_name
        prep = "to" if op.kind is OpKind.CREATE_ASSIGNMENT else "from"
        return f"• {verb} *{esc(op.permission_set_name)}* {prep} {esc(who)} on `{op.account_id}`"
    where = f" on `{op.account_id}`" if getattr(op, "account_id", None) else ""
    return f"• {verb} *{esc(op.permission_set_name)}*{where}"


def _list(title: str, lines: list[str], total: int | None = None) -> dict[str, Any] | None:
    if not lines:
        return None
    total = len(lines) if total is None else total
    shown = lines[:MAX_LINES]
    if total > len(shown):
        shown.append(f"• … and {total - len(shown):,} more (see the run)")
    text = f"*{title} ({total:,})*\n" + "\n".join(shown)
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _record_label(p: Problem) -> str:
    assert p.record is not None
    app = "permission set" if p.record.app == "permission_sets" else "assignment"
    return f"{app} record {p.record.record_id}"


def summary_message(
    *,
    run_id: str,
    summary: str,
    plan: Plan,
    results: list[OpResult],
    problems: list[Problem],
    withheld: int = 0,
    withheld_keys: Iterable[str] = (),
    run_url: str | None = None,
    approval_url: str | None = None,
    cause: str | None = None,
) -> dict[str, Any]:
    """The incoming-webhook payload: ``text`` (the notification line: the headline, then the run's first
    failure and what it means when there is one) and ``blocks``."""
    esc, code = slack_escape, slack_code
    counts = outcome_counts(results, plan, withheld=withheld, withheld_keys=withheld_keys)
    ops = {op.key: op for op in plan.operations}
    drift = [op for op in plan.operations if op.is_drift] + [s for s in plan.skipped if s.is_drift]
    title = headline(counts, problems, drift=len(drift))
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    applied = [ops[r.key] for r in results if r.status == "succeeded" and r.key in ops]
    failed = [r for r in results if r.status == "failed"]
    record_problems = [p for p in problems if p.record is not None and p.severity == "error"]
    admin = [p for p in problems if p.record is None]
    sections = [
        _list("Applied", [_op_line(op) for op in applied[:MAX_LINES]], len(applied)),
        _list(
            "Failed",
            [f"• `{code(r.key[:120])}`\n    {esc(r.message[:300])}" for r in failed[:MAX_LINES]],
            len(failed),
        ),
        _list("Needs an admin", [f"• {esc(p.message[:400])}" for p in admin[:MAX_LINES]], len(admin)),
        _list(
            "Records to fix",
            [f"• {_record_label(p)}: {esc(p.message[:300])}" for p in record_problems[:MAX_LINES]],
            len(record_problems),
        ),
        _list(
            "Drift (changed by hand in IAM Identity Center)",
            [f"• `{code(d.key[:120])}`: {esc(d.reason)}" for d in drift[:MAX_LINES]],
            len(drift),
        ),
    ]
    blocks += [s for s in sections if s is not None]
    links = [f"<{run_url}|Run in Airflow>"] if run_url else []
    if approval_url and counts.get("withheld"):
        links.append(f"<{approval_url}|Approve or reject the deletions>")
    context = " · ".join([*links, f"run `{code(run_id)}`", esc(summary)[:1500]])
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    text = f"{title}: {cause}" if cause else title
    return {"text": esc(text)[:3000], "blocks": blocks[:50]}
