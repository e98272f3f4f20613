"""The runs page of the Airflow UI (``plugins/idc_sync_runs_page.py``): the last runs' plans and outcomes as
tables, read from the audit artifacts ``notify`` writes (one per try of a run).

Per run: what was created, changed, removed, withheld for approval, failed, not done (deferred, waiting for
a dependency) and skipped by validation, per account, permission set and principal, with links to the
kintone records that asked for it. A dry run is marked as one: its plan is shown as "planned".
Everything shown comes from records and services, so everything is escaped (a name may hold ``<script>``)
and its invisible characters are shown (``<U+200B>``: a name that looks right but is not).
"""

from __future__ import annotations

import dataclasses as dc
import html
from collections.abc import Iterable
from typing import Any

from idc_sync.sanitize import visible

MAX_RUNS = 20
MAX_ROWS = 500  # per table; the rest is counted

SECTIONS = (
    ("planned", "Planned (dry run: nothing applied)"),
    ("created", "Created"),
    ("changed", "Changed"),
    ("removed", "Removed"),
    ("withheld", "Withheld: waiting for approval"),
    ("failed", "Failed"),
    ("not_done", "Not done in this run"),
    ("blocked", "Skipped (validation, scope or a record to fix)"),
)
_CREATE = {"create_assignment", "create_permission_set"}
_DELETE = {"delete_assignment", "delete_permission_set"}


@dc.dataclass(frozen=True)
class Row:
    what: str  # the operation's kind, as people say it
    account: str
    permission_set: str
    principal: str
    detail: str
    records: tuple[tuple[str, str], ...]  # (app id, record id)


@dc.dataclass
class RunView:
    run_id: str
    try_number: int
    dry_run: bool
    summary: str
    failed: bool
    tables: dict[str, list[Row]]
    when: str = ""  # when the artifact was written (the run's end), "" when unknown


def _row(op: dict[str, Any], detail: str) -> Row:
    principal = op.get("principal_name") or ""
    if principal and op.get("principal_type") == "GROUP":
        principal = f"group {principal}"
    return Row(
        what=str(op.get("kind") or "").replace("_", " "),
        account=str(op.get("account_id") or ""),
        permission_set=str(op.get("permission_set_name") or ""),
        principal=str(principal),
        detail=detail,
        records=tuple(
            (str(r.get("app_id", "")), str(r.get("record_id", ""))) for r in op.get("records") or []
        ),
    )


def _key_fields(key: str) -> dict[str, str]:
    """What an operation key names (``model.op_key``: ``<kind>:<account>:<set>:<TYPE>:<principal>`` for an
    assignment, ``<kind>:<set>[:<account>]`` otherwise)."""
    kind, _, rest = key.partition(":")
    parts = rest.split(":", 3)
    if kind.endswith("_assignment") and len(parts) == 4:
        return {
            "kind": kind,
            "account_id": parts[0],
            "permission_set_name": parts[1],
            "principal_type": parts[2],
            "principal_name": parts[3],
        }
    return {"kind": kind, "permission_set_name": parts[0], "account_id": parts[1] if len(parts) > 1 else ""}


def _section(kind: str, status: str | None, dry_run: bool, withheld: bool) -> str:
    if withheld:
        return "withheld"
    if dry_run or status is None:
        return "planned" if dry_run else "not_done"
    if status == "failed":
        return "failed"
    if status not in ("succeeded", "already_in_place"):
        return "not_done"
    return "created" if kind in _CREATE else "removed" if kind in _DELETE else "changed"


def summarize(artifact: dict[str, Any]) -> RunView:
    """One artifact (``steps._audit_artifact``) as the page's tables."""
    dry_run = bool((artifact.get("params") or {}).get("dry_run"))
    results = {r.get("key"): r for r in artifact.get("results") or []}
    withheld = {w.get("key") for w in artifact.get("deletions_withheld") or []}
    plan = artifact.get("plan") or {}
    tables: dict[str, list[Row]] = {key: [] for key, _ in SECTIONS}
    for op in plan.get("operations") or []:
        result = results.get(op.get("key"))
        status = result.get("status") if result else None
        detail = (result or {}).get("message") or op.get("reason") or ""
        tables[_section(str(op.get("kind")), status, dry_run, op.get("key") in withheld)].append(
            _row(op, detail)
        )
    for skipped in plan.get("skipped") or []:
        record = skipped.get("record")
        refs = [record] if record else []
        tables["blocked"].append(
            _row(
                {**_key_fields(str(skipped.get("key") or "")), "records": refs},
                str(skipped.get("reason") or ""),
            )
        )
    return RunView(
        run_id=str(artifact.get("run_id") or "?"),
        try_number=int(artifact.get("try_number") or 1),
        dry_run=dry_run,
        summary=str(artifact.get("summary") or "").split("\n", 1)[0],
        failed=bool(artifact.get("failure") or artifact.get("failed_tasks")),
        tables=tables,
        when=str(artifact.get("written_at") or ""),
    )


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a202c}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem} h3{font-size:.95rem;margin:.8rem 0 .3rem}
table{border-collapse:collapse;margin-bottom:.5rem;width:100%} td,th{border:1px solid #cbd5e0;
padding:.25rem .5rem;text-align:left;font-size:.85rem} th{background:#edf2f7}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.6rem;font-size:.75rem;margin-left:.5rem}
.dry{background:#fefcbf;color:#744210} .failed{background:#fed7d7;color:#822727}
.summary{color:#4a5568} .empty{color:#718096} .when{color:#718096;font-size:.8rem;margin-left:.5rem}
"""


def _esc(text: str) -> str:
    """Record or service text as HTML: invisible characters shown, then escaped (quotes too)."""
    return html.escape(visible(text))


def _links(records: Iterable[tuple[str, str]], kintone_url: str | None) -> str:
    out = []
    for app, record in records:
        label = _esc(f"{app}/{record}")
        if kintone_url:
            href = html.escape(f"{kintone_url.rstrip('/')}/k/{app}/show#record={record}", quote=True)
            out.append(f'<a href="{href}" target="_blank" rel="noopener">{label}</a>')
        else:
            out.append(label)
    return ", ".join(out)


def _table(rows: list[Row], kintone_url: str | None) -> str:
    esc = _esc
    body = [
        f"<tr><td>{esc(r.what)}</td><td>{esc(r.account)}</td><td>{esc(r.permission_set)}</td><td>{esc(r.principal)}</td>"
        f"<td>{esc(r.detail)}</td><td>{_links(r.records, kintone_url)}</td></tr>"
        for r in rows[:MAX_ROWS]
    ]
    more = f'<p class="empty">… and {len(rows) - MAX_ROWS:,} more</p>' if len(rows) > MAX_ROWS else ""
    head = "<tr><th>what</th><th>account</th><th>permission set</th><th>principal</th><th>why / result</th><th>records</th></tr>"
    return f"<table>{head}{''.join(body)}</table>{more}"


def _run(view: RunView, kintone_url: str | None, airflow_url: str | None) -> str:
    esc = _esc
    title = esc(view.run_id)
    if airflow_url:
        from urllib.parse import quote

        href = f"{airflow_url.rstrip('/')}/dags/idc_sync/runs/{quote(view.run_id, safe='')}"
        title = f'<a href="{html.escape(href, quote=True)}">{title}</a>'
    when = f'<span class="when">{esc(view.when)}</span>' if view.when else ""
    badges = ('<span class="badge dry">DRY RUN</span>' if view.dry_run else "") + (
        '<span class="badge failed">failed</span>' if view.failed else ""
    )
    parts = [f"<h2>{title}{badges}{when}</h2>", f'<p class="summary">{esc(view.summary)}</p>']
    shown = [(key, label) for key, label in SECTIONS if view.tables.get(key)]
    if not shown:
        parts.append('<p class="empty">No changes.</p>')
    for key, label in shown:
        rows = view.tables[key]
        parts.append(f"<h3>{esc(label)} ({len(rows):,})</h3>{_table(rows, kintone_url)}")
    return "\n".join(parts)


def render(runs: list[RunView], *, kintone_url: str | None = None, airflow_url: str | None = None) -> str:
    """The whole page (newest run first), at most :data:`MAX_RUNS` runs."""
    body = [_run(v, kintone_url, airflow_url) for v in runs[:MAX_RUNS]] or [
        '<p class="empty">No runs yet.</p>'
    ]
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>idc-sync runs</title>'
        f"<style>{_CSS}</style></head><body><h1>idc-sync: the last runs' plans and outcomes</h1>"
        + "\n".join(body)
        + "</body></html>"
    )
