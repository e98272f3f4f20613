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

from idc_sync.feedback import headline, outcome_counts
from idc_sync.model import AssignmentOp, OpKind, OpResult, Plan, Problem
from idc_sync.sanitize import slack_code, slack_escape

HEADER_LIMIT = 150  # characters of a header block
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
    """A titled bullet list in one section: at most :data:`MAX_LINES` lines, each clipped so that every
    listed line fits Slack's 3,000 characters (a long error is cut, never the line after it)."""
    if not lines:
        return None
    total = len(lines) if total is None else total
    shown = lines[:MAX_LINES]
    more = [f"• … and {total - len(shown):,} more (see the run)"] if total > len(shown) else []
    head = f"*{title} ({total:,})*"
    budget = (SECTION_LIMIT - len(head) - sum(len(m) + 1 for m in more)) // len(shown) - 1
    shown = [line if len(line) <= budget else line[: budget - 1] + "…" for line in shown]
    return {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join([head, *shown, *more])}}


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
    title = headline(counts, problems, drift=len(drift))[:HEADER_LIMIT]
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


def withheld_lines(plan: Plan, keys: Iterable[str]) -> list[str]:
    """One Slack line per withheld deletion (what, on which account, from whom, and why)."""
    wanted = set(keys)
    return [f"{_op_line(op)} — {slack_escape(op.reason)}" for op in plan.operations if op.key in wanted]


def duration_text(seconds: float) -> str:
    """``14400`` -> ``4 hours``; ``5400`` -> ``1 hour 30 minutes`` (Slack shows words, not ``4:00:00``)."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [(days, "day"), (hours, "hour"), (mins, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or f"{int(seconds)} seconds"


def approval_message(
    *,
    deletions: int,
    reasons: list[str],
    lines: list[str],
    link: str,
    timeout_seconds: float,
    requested_by: str,
) -> dict[str, Any]:
    """The approval request for admins: why the guard held the deletions back, what they are (a list),
    the button-like link to the approval page, and what happens without an answer."""
    esc = slack_escape
    wait = duration_text(timeout_seconds)
    title = f"{deletions:,} deletion(s) wait for your approval"
    text = f"idc-sync: {title}. Approve or reject: {link} (no answer within {wait}: nothing is deleted)."
    why = _list("Why they were held back", [f"• {esc(r)}" for r in reasons])
    what = _list("What would be deleted", lines, total=deletions)
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:HEADER_LIMIT]}},
        *[b for b in (why, what) if b],
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"<{link}|Approve or reject in Airflow>. Without an answer within {wait}, nothing is "
                "deleted. Creations and updates were applied without waiting; on Approve an idc_sync run "
                "starts and deletes what is still planned.",
            },
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"asked by run `{slack_code(requested_by)}`"}],
        },
    ]
    return {"text": text, "blocks": blocks}
