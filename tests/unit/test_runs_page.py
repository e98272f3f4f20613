"""The runs page: an audit artifact as tables (what was created, removed, withheld, failed...), escaped,
bounded, dry runs marked; the app reads only the newest artifacts and refuses callers without a session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from idc_sync import runs_page
from idc_sync.audit import AuditStore
from idc_sync.model import AssignmentOp, OpKind, OpResult, Plan, RecordRef, Skipped, op_key

HOSTILE = '<script>alert("x")</script>'


def _op(
    kind: OpKind, account: str, name: str, user: str = "alice@example.com", record: str = "7"
) -> AssignmentOp:
    return AssignmentOp(
        key=op_key(kind, name, account_id=account, principal_type="USER", principal_name=user),
        kind=kind,
        permission_set_name=name,
        account_id=account,
        principal_type="USER",
        principal_id=f"u-{user}",
        principal_name=user,
        records=[RecordRef(app="assignments", app_id="2", record_id=record)],
    )


def _artifact(run_id: str = "scheduled__1", *, dry_run: bool = False, n: int = 1) -> dict[str, Any]:
    created = [_op(OpKind.CREATE_ASSIGNMENT, f"1000000{i:05d}", "ReadOnly") for i in range(n)]
    removed = _op(OpKind.DELETE_ASSIGNMENT, "222222222222", "Legacy", "bob@example.com")
    failed = _op(OpKind.CREATE_ASSIGNMENT, "333333333333", HOSTILE, HOSTILE)
    withheld = _op(OpKind.DELETE_ASSIGNMENT, "444444444444", "Legacy", "carol@example.com")
    plan = Plan(
        operations=[*created, removed, failed, withheld],
        skipped=[
            Skipped(
                key=op_key(
                    OpKind.CREATE_ASSIGNMENT,
                    "DataAnalyst",
                    account_id="555555555555",
                    principal_type="USER",
                    principal_name="ivan@example.com",
                ),
                reason="permission set DataAnalyst failed validation",
            )
        ],
    )
    results = [OpResult(key=op.key, kind=op.kind, status="succeeded") for op in [*created, removed]]
    results.append(OpResult(key=failed.key, kind=failed.kind, status="failed", message="AccessDenied"))
    return {
        "run_id": run_id,
        "try_number": 1,
        "params": {"dry_run": dry_run},
        "summary": f"{n + 1} access changes applied\nPlanned ...",
        "plan": plan.model_dump(mode="json"),
        "results": [] if dry_run else [r.model_dump(mode="json") for r in results],
        "deletions_withheld": [{"key": withheld.key, "reason": "guard"}],
        "failed_tasks": [],
    }


def test_an_artifact_becomes_tables_by_outcome() -> None:
    view = runs_page.summarize(_artifact())
    sizes = {k: len(v) for k, v in view.tables.items() if v}
    assert sizes == {"created": 1, "removed": 1, "failed": 1, "withheld": 1, "blocked": 1}
    [blocked] = view.tables["blocked"]
    assert (blocked.account, blocked.permission_set, blocked.principal) == (
        "555555555555",
        "DataAnalyst",
        "ivan@example.com",
    )
    assert view.tables["failed"][0].detail == "AccessDenied"
    assert view.tables["created"][0].records == (("2", "7"),)
    assert view.summary == "2 access changes applied" and not view.dry_run


def test_a_dry_run_shows_its_plan_as_planned_with_a_badge() -> None:
    view = runs_page.summarize(_artifact(dry_run=True))
    assert view.dry_run and len(view.tables["planned"]) == 3 and len(view.tables["withheld"]) == 1
    page = runs_page.render([view])
    assert "DRY RUN" in page and "Planned (dry run: nothing applied) (3)" in page


def test_everything_is_escaped_and_records_are_linked() -> None:
    page = runs_page.render(
        [runs_page.summarize(_artifact(run_id=f"manual__{HOSTILE}"))],
        kintone_url="https://example.cybozu.com",
        airflow_url="https://airflow.example.com",
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="https://example.cybozu.com/k/2/show#record=7"' in page
    assert 'href="https://airflow.example.com/dags/idc_sync/runs/manual__%3Cscript%3E' in page


def test_tables_and_runs_are_bounded() -> None:
    view = runs_page.summarize(_artifact(n=runs_page.MAX_ROWS + 25))
    page = runs_page.render([view] * (runs_page.MAX_RUNS + 5))
    assert page.count("<h2>") == runs_page.MAX_RUNS
    assert "… and 25 more" in page  # 525 created: 500 shown
    assert page.count("<tr>") <= runs_page.MAX_RUNS * (runs_page.MAX_ROWS + 10) * 6


def _write(store_root: Path, day: str, name: str, artifact: dict[str, Any] | str, mtime: float) -> None:
    import os

    path = store_root / "runs" / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(artifact if isinstance(artifact, str) else json.dumps(artifact))
    os.utime(path, (mtime, mtime))


def test_the_app_reads_the_newest_try_of_each_run_and_skips_a_broken_file(
    tmp_path: Path, caplog: Any
) -> None:
    from idc_sync_airflow.runs_page_app import newest_artifacts

    _write(tmp_path, "2026-12-03", "old.try1.json", _artifact("old"), 1000)
    _write(tmp_path, "2026-12-04", "r1.try1.json", {**_artifact("r1"), "try_number": 1}, 2000)
    _write(tmp_path, "2026-12-04", "r1.try2.json", {**_artifact("r1"), "try_number": 2}, 3000)
    _write(tmp_path, "2026-12-04", "broken.try1.json", "{not json", 4000)
    found = newest_artifacts(AuditStore(tmp_path), max_runs=5)
    assert [(a["run_id"], a["try_number"]) for a in found] == [("r1", 2), ("old", 1)]
    assert "skipped unreadable artifact broken.try1.json" in caplog.text
    assert [a["run_id"] for a in newest_artifacts(AuditStore(tmp_path), max_runs=1)] == ["r1"]


def test_the_page_needs_a_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from idc_sync_airflow import runs_page_app

    _write(tmp_path, "2026-12-04", "r1.try1.json", _artifact("r1"), 2000)
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({"audit_path": str(tmp_path)}))
    client = TestClient(runs_page_app.app)
    # no session cookie, no bearer token: Airflow's own check answers before anything is read
    assert client.get("/").status_code == 401
    assert client.post("/").status_code == 405  # read only
    runs_page_app.app.dependency_overrides[runs_page_app.can_read_runs] = lambda: None
    try:
        page = client.get("/")
    finally:
        runs_page_app.app.dependency_overrides.clear()
    assert page.status_code == 200 and "r1" in page.text and "Created (1)" in page.text


def test_invisible_characters_in_names_are_shown() -> None:
    artifact = _artifact()
    op = artifact["plan"]["operations"][0]
    op["principal_name"] = "alice\u200b@example.com"
    page = runs_page.render([runs_page.summarize(artifact)])
    assert "\u200b" not in page and "alice&lt;U+200B&gt;@example.com" in page


def test_the_app_shows_when_each_run_ended_links_a_bare_kintone_host_and_skips_malformed_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from idc_sync_airflow import api_server, runs_page_app

    _write(tmp_path, "2026-12-04", "r1.try1.json", _artifact("r1"), 1_796_375_400)  # 2026-12-04 09:10 UTC
    _write(tmp_path, "2026-12-04", "list.try1.json", "[1, 2]", 1_796_380_300)
    _write(tmp_path, "2026-12-04", "bad.try1.json", {**_artifact("bad"), "plan": "x"}, 1_796_380_400)
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({"audit_path": str(tmp_path)}))
    conn = SimpleNamespace(host="example.cybozu.com", schema="", port=None)
    monkeypatch.setattr(api_server, "connection", lambda conn_id: conn)
    runs_page_app.app.dependency_overrides[runs_page_app.can_read_runs] = lambda: None
    try:
        page = TestClient(runs_page_app.app).get("/")
    finally:
        runs_page_app.app.dependency_overrides.clear()
    assert page.status_code == 200
    assert "2026-12-04 09:10 UTC" in page.text
    assert 'href="https://example.cybozu.com/k/2/show#record=7"' in page.text
    assert "skipped unreadable artifact list.try1.json" in caplog.text
    assert "skipped malformed artifact of run 'bad'" in caplog.text
