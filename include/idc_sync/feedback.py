"""What people are told: record comments (once per change of problems), the Slack summary, the run note.

Requesters hear about *their* record, once when its problems appear or change and once when they are
resolved (DESIGN safety rule 5). The memory of what was last said is a small JSON state
(record key -> fingerprint) kept beside the audit artifacts, so it survives runs and machines and never
touches the record itself (writing to the record would change its revision and look like a user edit).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from idc_sync import messages
from idc_sync.model import OpResult, Plan, Problem, RecordRef
from idc_sync.sanitize import strip_control

log = logging.getLogger(__name__)

RESOLVED = "resolved"
INFO_PREFIX = "info:"  # state value of a record whose last comment carried only notes ("info" problems)

_HEADERS = {
    "ja": {
        "problems": "[idc-sync] このレコードの内容を AWS IAM Identity Center に反映できませんでした。",
        "warnings": "[idc-sync] このレコードは AWS IAM Identity Center に反映されました。次の点をご確認ください。",
        "pending": "[idc-sync] このレコードの一部は反映待ちです（エラーではありません）。",
        "info": "[idc-sync] このレコードについてのお知らせです。",
        "resolved": "[idc-sync] 問題は解消され、このレコードの内容は AWS IAM Identity Center に反映されました。",
        "error": "エラー",
        "warning": "注意",
        "pending_label": "反映待ち",
        "info_label": "お知らせ",
        "footer": "レコードを修正すると、次回の同期（10分ごと）で再確認します。",
        "footer_pending": "反映され次第、このレコードでお知らせします。",
        "footer_info": "",
    },
    "en": {
        "problems": "[idc-sync] This record could not be fully applied to AWS IAM Identity Center.",
        "warnings": "[idc-sync] This record is applied to AWS IAM Identity Center. Please check the following.",
        "pending": "[idc-sync] Part of this record is waiting to be applied (not an error).",
        "info": "[idc-sync] A note about this record.",
        "resolved": "[idc-sync] Resolved: this record is now applied to AWS IAM Identity Center.",
        "error": "Error",
        "warning": "Warning",
        "pending_label": "Pending",
        "info_label": "Note",
        "footer": "Edit the record and the next sync (every 10 minutes) checks it again.",
        "footer_pending": "This record is told when it is applied.",
        "footer_info": "",
    },
}
_LABEL = {"error": "error", "warning": "warning", "pending": "pending_label", "info": "info_label"}
_ORDER = {"error": 0, "pending": 1, "warning": 2, "info": 3}

# Codes whose English message carries volatile text (an AWS error with a request id...): their identity in
# a fingerprint is these params instead, so the same failure every run is not a "changed" problem.
_FINGERPRINT_PARAMS: dict[str, tuple[str, ...]] = {"apply_failed": ("operation", "key")}


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


def problem_fingerprint(problem: Problem) -> str:
    keys = _FINGERPRINT_PARAMS.get(problem.code)
    if keys and all(problem.params.get(k) is not None for k in keys):
        return f"{problem.severity}:{problem.code}:" + "|".join(str(problem.params[k]) for k in keys)
    return problem.fingerprint


def record_fingerprint(problems: Iterable[Problem]) -> str:
    """Stable digest of a record's set of problems (order-insensitive, language-independent)."""
    lines = sorted({problem_fingerprint(p) for p in problems})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def group_by_record(problems: Iterable[Problem]) -> dict[str, tuple[RecordRef, list[Problem]]]:
    """Record-level problems by record key (deduplicated); run-level ones (``record=None``) are left out:
    they are for admins (Slack), never for a record."""
    grouped: dict[str, tuple[RecordRef, list[Problem]]] = {}
    for problem in problems:
        if problem.record is None:
            continue
        _, items = grouped.setdefault(problem.record.key, (problem.record, []))
        if problem_fingerprint(problem) not in {problem_fingerprint(p) for p in items}:
            items.append(problem)
    return grouped


BILINGUAL = "ja+en"  # every comment in Japanese, then in English (mixed teams)
BILINGUAL_RULE = "\n\n――――――――――\n\n"


def languages(language: str) -> tuple[str, ...]:
    """The languages a comment is written in: ``"ja+en"`` is both, Japanese first."""
    return ("ja", "en") if language == BILINGUAL else (language,)


def in_languages(language: str, render: Callable[[str, int], str], limit: int = 65_535) -> str:
    """``render(lang, room)`` once per language of ``language``, joined; each gets its share of ``limit``."""
    langs = languages(language)
    room = (limit - len(BILINGUAL_RULE) * (len(langs) - 1)) // len(langs)
    return BILINGUAL_RULE.join(render(lang, room) for lang in langs)


def _texts(language: str) -> dict[str, str]:
    return _HEADERS.get(language, _HEADERS["en"])


KINTONE_COMMENT_LIMIT = 65_535  # characters of one kintone comment (POST /k/v1/record/comment.json)
_MORE = {
    "ja": "- ……ほか {n} 件（すべての内容は Airflow の実行結果をご覧ください: {run}）",
    "en": "- … and {n} more (see the Airflow run for all of them: {run})",
}


def render_comment(
    ref: RecordRef | None,
    problems: list[Problem],
    language: str,
    *,
    resolved: bool = False,
    limit: int = KINTONE_COMMENT_LIMIT,
    run_url: str | None = None,
) -> str:
    """The comment text: a header saying what kind of news this is, one line per problem in the reader's
    language (what is wrong and what to do), and a footer. ``resolved``: the record's errors are gone and
    only notes remain (the header says so).

    kintone refuses comments over 65,535 characters, and a refused comment means the requester hears
    nothing: whatever the number of problems, the text is cut between problem lines to fit ``limit``,
    ending with "and N more" and a pointer to the Airflow run (``run_url``). Control characters from
    record text are removed. ``language`` ``"ja+en"``: the comment in both languages, one after the other."""
    if language == BILINGUAL:
        return in_languages(
            language,
            lambda lang, room: render_comment(
                ref, problems, lang, resolved=resolved, limit=room, run_url=run_url
            ),
            limit,
        )
    texts = _texts(language)
    severities = {p.severity for p in problems}
    if resolved:
        header, footer = texts["resolved"], texts["footer_info"]
    elif "error" in severities:
        header, footer = texts["problems"], texts["footer"]
    elif "pending" in severities:  # waiting is the news; warnings below are advice
        header, footer = texts["pending"], texts["footer_pending"]
    elif "warning" in severities:
        header, footer = texts["warnings"], texts["footer"]
    else:
        header, footer = texts["info"], texts["footer_info"]
    items = []
    for p in sorted(problems, key=lambda p: (_ORDER.get(p.severity, 9), p.code, p.message)):
        text = strip_control(messages.render_problem(p, language))
        items.append(f"- [{texts[_LABEL.get(p.severity, 'error')]}] {text}")
    tail = ["", footer] if footer else []
    return _fit_comment([header, ""], items, tail, language, limit, run_url)


def _fit_comment(
    head: list[str], items: list[str], tail: list[str], language: str, limit: int, run_url: str | None
) -> str:
    """head + as many whole item lines as fit + "and N more" + tail, within ``limit`` characters."""
    full = "\n".join([*head, *items, *tail])
    if len(full) <= limit:
        return full
    more = _MORE.get(language, _MORE["en"])
    run = run_url or "the Airflow UI, DAG idc_sync"
    fixed = len("\n".join([*head, *tail])) + 2  # the newlines around the item block
    kept: list[str] = []
    used = fixed
    for i, line in enumerate(items):
        # room for this line and the "and N more" line that follows it (N <= len(items))
        reserve = len(more.format(n=len(items) - i - 1, run=run)) + 1
        if used + len(line) + 1 + reserve > limit:
            break
        kept.append(line)
        used += len(line) + 1
    if not kept and items:  # one enormous problem line: cut it, a cut sentence beats no comment
        room = limit - fixed - len(more.format(n=len(items) - 1, run=run)) - 2
        kept.append(_clip(items[0], max(room, 1)))
    rest = len(items) - len(kept)
    text = "\n".join([*head, *kept, more.format(n=rest, run=run), *tail])
    return text[:limit]


def mentions_for(ref: RecordRef | None) -> list[dict[str, str]]:
    """The record's people (last modifier first, then the permission set's owners), deduplicated, at
    most 10 (kintone's limit)."""
    seen: list[str] = []
    for code in ref.mentions if ref is not None else ():
        code = code.strip()
        if code and code not in seen:
            seen.append(code)
    return [{"code": c, "type": "USER"} for c in seen[:10]]


def plan_feedback(
    problems: Iterable[Problem],
    previous: dict[str, str],
    *,
    language: str,
    live_records: set[str] | None = None,
    app_ids: dict[str, str] | None = None,
    refs: Mapping[str, RecordRef] | None = None,
    complete: bool = True,
    run_url: str | None = None,
) -> FeedbackPlan:
    """Comments to post and the new state (DESIGN rule 5: a comment when a record's problems appear,
    change or are resolved; never the same comment twice).

    ``previous`` maps record keys to what was last said: a fingerprint of the record's problems,
    ``"info:<fp>"`` when only notes were said, or ``"resolved"``. A record whose problems are gone gets one
    "resolved" comment if it still exists (``live_records``: keys of records read this run; ``app_ids``:
    app key -> kintone app id, to address it; ``refs``: record key -> ref, to mention its people).
    Notes (severity "info", e.g. an expiry reminder) are said once; their disappearance says nothing.
    ``complete=False`` (some checks could not run, e.g. Access Analyzer was down): a missing problem may
    only be unchecked, so no "resolved" comment is posted and what was last said is kept.
    """
    grouped = group_by_record(problems)
    out = FeedbackPlan()
    say = _RecordNews(out, previous, language, complete, run_url, app_ids or {})
    for key, (ref, items) in sorted(grouped.items()):
        try:
            say.problems(key, ref, items)
        except Exception:  # one record's comment never stops the others (DESIGN rule 6)
            log.exception("could not build the comment for %s; it is tried again next run", key)
            if key in previous:
                out.state[key] = previous[key]  # what was last said stays: nothing is lost or repeated
            else:
                out.state.pop(key, None)

    for key, fp in previous.items():
        if key in grouped or fp == RESOLVED or fp.startswith(INFO_PREFIX):
            continue  # notes disappear silently
        if live_records is not None and key not in live_records:
            continue  # the record was deleted: nobody to tell
        if not complete:
            out.state[key] = fp
            continue
        out.state[key] = RESOLVED
        resolved = in_languages(language, lambda lang, _room: _texts(lang)["resolved"])
        out.comments.append(say.comment((refs or {}).get(key), key, resolved, RESOLVED))
    # keep resolved markers only for records that still exist, so the state does not grow forever
    for key, fp in previous.items():
        if fp == RESOLVED and key not in out.state and (live_records is None or key in live_records):
            out.state[key] = RESOLVED
    return out


class _RecordNews:
    """What ``plan_feedback`` says to one record about its problems (the comment and the new state)."""

    def __init__(
        self,
        out: FeedbackPlan,
        previous: dict[str, str],
        language: str,
        complete: bool,
        run_url: str | None,
        app_ids: dict[str, str],
    ) -> None:
        self.out, self.previous, self.language = out, previous, language
        self.complete, self.run_url, self.app_ids = complete, run_url, app_ids

    def comment(self, ref: RecordRef | None, key: str, text: str, fp: str) -> Comment:
        app_key, _, record_id = key.partition(":")
        return Comment(
            app_id=ref.app_id if ref is not None else self.app_ids.get(app_key, ""),
            record_id=ref.record_id if ref is not None else record_id,
            record_key=key,
            text=text,
            mentions=mentions_for(ref),
            fingerprint=fp,
        )

    def problems(self, key: str, ref: RecordRef | None, items: list[Problem]) -> None:
        before = self.previous.get(key)
        if all(p.severity == "info" for p in items):
            self.notes(key, ref, items, before)
            return
        fp = record_fingerprint(items)
        self.out.state[key] = fp
        if before != fp:
            text = render_comment(ref, items, self.language, run_url=self.run_url)
            self.out.comments.append(self.comment(ref, key, text, fp))

    def notes(self, key: str, ref: RecordRef | None, items: list[Problem], before: str | None) -> None:
        """Only notes ("info"): said once; errors last said and now gone are "resolved" along with them."""
        fp = INFO_PREFIX + record_fingerprint(items)
        self.out.state[key] = fp
        if before == fp:
            return
        was_problem = before is not None and before != RESOLVED and not before.startswith(INFO_PREFIX)
        if was_problem and not self.complete and before is not None:
            self.out.state[key] = before  # maybe only unchecked: keep the last word
            return
        text = render_comment(ref, items, self.language, resolved=was_problem, run_url=self.run_url)
        self.out.comments.append(self.comment(ref, key, text, fp))


def summarize_results(results: Iterable[OpResult]) -> dict[str, dict[str, int]]:
    """{kind: {status: n}} with status succeeded / already_in_place / failed / skipped."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        out.setdefault(r.kind.value, {}).setdefault(r.status, 0)
        out[r.kind.value][r.status] += 1
    return out


OUTCOMES = ("applied", "already_in_place", "deferred", "withheld", "skipped", "failed")


def outcome_counts(
    results: Iterable[OpResult], plan: Plan, *, withheld: int = 0, withheld_keys: Iterable[str] = ()
) -> dict[str, int]:
    """What really happened, counted from the RESULTS (not from the plan): ``applied`` (a change was
    made), ``already_in_place`` (nothing to do: an earlier try did it), ``withheld`` (deletions not
    approved), ``deferred`` (not started within apply's time budget: the next run continues), ``skipped``
    (results skipped + the plan's skipped items), ``failed``. The note, Slack and
    the audit artifact all show these numbers."""
    items = list(results)
    # the plan's skipped items, unless also a result or withheld (not counted twice)
    seen = {r.key for r in items} | set(withheld_keys)
    return {
        "applied": sum(r.status == "succeeded" for r in items),
        "already_in_place": sum(r.status == "already_in_place" for r in items),
        "deferred": sum(r.status == "deferred" for r in items),
        "withheld": withheld,
        "skipped": sum(r.status == "skipped" for r in items) + sum(s.key not in seen for s in plan.skipped),
        "failed": sum(r.status == "failed" for r in items),
    }


def _outcome_text(counts: Mapping[str, int]) -> str:
    labels = {"already_in_place": "already in place", "deferred": "deferred to the next run"}
    shown = [k for k in OUTCOMES if k != "deferred" or counts.get(k)]  # deferred: only during a long sync
    return ", ".join(f"{labels.get(k, k)} {counts.get(k, 0)}" for k in shown)


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
    return text


def run_summary_text(
    *,
    dag_run_id: str,
    plan: Plan,
    results: list[OpResult],
    problems: list[Problem],
    dry_run: bool,
    scim: dict[str, Any] | None,
    ui_url: str | None = None,
    withheld: int = 0,
    withheld_keys: Iterable[str] = (),
    cause: str | None = None,
) -> str:
    """The run's note in the Airflow UI (and the audit's summary), a few lines that read as a summary:
    the outcome first (the first failure and what it means, else the :func:`headline`), then the counts,
    then what needs a human, then SCIM and the run id.

    The plan is said as *planned*; what was done comes from the results (``outcome_counts``), so a
    rejected deletion or a retried no-op is never reported as applied. Control characters of record
    text are removed (the note is shown in a browser, the summary in logs)."""
    record_problems = [p for p in problems if p.record is not None and p.severity == "error"]
    admin = [p for p in problems if p.record is None and p.code not in ("deletions_withheld", "task_failed")]
    counted = outcome_counts(results, plan, withheld=withheld, withheld_keys=withheld_keys)
    drift = sum(op.is_drift for op in plan.operations) + sum(s.is_drift for s in plan.skipped)
    kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in plan.counts().items() if n)
    planned = f"Planned {len(plan.operations)} change(s)" + (f" ({kinds})" if kinds else "")
    if dry_run:
        first = f"DRY RUN: nothing was changed; {len(plan.operations)} change(s) would be made."
        counts = planned + (f"; {len(plan.skipped)} skipped." if plan.skipped else ".")
    else:
        first = headline(counted, problems, drift=drift) + "."
        counts = f"{planned}; {_outcome_text(counted)}."
    lines = [f"{cause} {first}" if cause else first, counts]
    human = []
    if record_problems:
        n = len({p.record.key for p in record_problems if p.record is not None})
        human.append(f"{n} record(s) to fix (told on the record)")
    if withheld and not dry_run:
        human.append(f"{withheld} deletion(s) to approve or reject (DAG idc_sync_approval)")
    human += [strip_control(p.message)[:300] for p in admin[:3]]
    if len(admin) > 3:
        human.append(f"{len(admin) - 3} more admin alert(s) (see Slack and the audit)")
    if human:
        lines.append("Needs a human: " + "; ".join(human) + ".")
    tail = f"SCIM {scim.get('status', 'unknown')}. " if scim else ""
    lines.append(f"{tail}Run {dag_run_id}." + (f" {ui_url}" if ui_url else ""))
    return strip_control("\n".join(lines))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


ATTENTION_STATE = "state/slack_attention.json"


def attention_fingerprint(admin: Iterable[Problem], drift_keys: Iterable[str]) -> str:
    """What needs an admin this run (admin problems and drift), as a fingerprint: "" when nothing does."""
    items = sorted({f"{p.code}|{p.message}" for p in admin} | {f"drift|{k}" for k in drift_keys})
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16] if items else ""


def should_post_summary(*, changed: bool, failed: bool, attention: str, last_attention: str) -> bool:
    """Slack hears about a run that changed or failed something, and about a new or changed need for an
    admin (a withheld deletion, drift, an admin alert): once, not every ten minutes while it stays."""
    return changed or failed or (bool(attention) and attention != last_attention)
