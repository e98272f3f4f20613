"""Issue 9 defects 8, 9, 10, 12 through the real DAG against the sandbox: what notify tells is the true
cause, is never lost, counts what really happened and cannot be abused by record text."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from demo_grants import BY_RECORD, LEGACY, SEEDED, WANTED

from idc_sandbox import kintone as kintone_sandbox
from idc_sandbox.core import FaultRule
from idc_sandbox.state import Group

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HOSTILE = "<!channel> <https://evil|click> \x1b[31m\x07"


def _state(run: Any) -> str:
    return str(run.state).split(".")[-1].lower()


def _slack_texts(harness: Any) -> list[str]:
    out = []
    for m in harness.slack():
        out.append(m.get("text", ""))
        for b in m.get("blocks") or []:
            if isinstance(b.get("text"), dict):
                out.append(b["text"].get("text", ""))
            for e in b.get("elements") or []:
                out.append(e.get("text", ""))
    return out


def test_kintone_outage_names_extract_kintone_its_error_and_that_aws_is_untouched(harness: Any) -> None:
    harness.sandbox.faults.add(FaultRule(service="kintone", kind="outage", count=1000))
    run = harness.run()
    assert _state(run) == "failed"
    audit = harness.last_audit()
    assert audit["failure"]["task_id"] == "extract_kintone"
    cause = audit["failure"]["text"]
    assert "extract_kintone" in cause and "nothing was changed in AWS" in cause
    assert audit["failure"]["error"]["error_type"]  # the error type and text, not "see its log"
    assert audit["summary"].startswith(cause)
    [message] = harness.slack()
    assert "extract_kintone" in message["text"] and "nothing was changed in AWS" in message["text"]
    assert "failed or produced nothing" not in " ".join(_slack_texts(harness))
    tokens = [t for app in harness.sandbox.world.kintone.apps.values() for t in app.api_tokens]
    assert not [t for t in tokens if t and t in str(audit)]  # secrets scrubbed


def test_slack_500_then_a_healthy_run_delivers_the_message_late(harness: Any, caplog: Any) -> None:
    harness.sandbox.faults.add(FaultRule(service="slack", kind="error5xx", count=1000))
    with caplog.at_level(logging.ERROR):
        first = harness.run()
    first_summary = harness.last_audit()["summary"]
    first_applied = harness.last_audit()["outcome"]["applied"]
    assert harness.slack() == []
    assert any("could not post to Slack" in r.getMessage() for r in caplog.records)

    harness.sandbox.faults.clear()
    harness.run()
    texts = [m.get("text", "") for m in harness.slack()]
    late = [t for t in texts if t.startswith(f"late: from run {first.run_id}")]
    # run 1's summary (with the link to approve the seed's withheld LegacyDeveloper deletion) arrives,
    # before anything new
    assert len(late) == 1, texts
    assert first.run_id in first_summary and f"{first_applied} access changes applied" in late[0], late[0]
    assert texts[:1] == late  # pending ones go first
    # delivered once: a third run does not repeat them
    harness.run()
    assert len([m for m in harness.slack() if m.get("text", "").startswith("late:")]) == 1


def test_hostile_record_text_is_escaped_in_slack_comment_and_log(harness: Any, caplog: Any) -> None:
    sb = harness.sandbox
    with sb.lock:
        sb.world.identity_store.groups["g-hostile"] = Group(group_id="g-hostile", display_name=HOSTILE)
    kintone_sandbox.add_record(
        sb,
        harness.app_id("assignments"),
        {
            "principal_type": "GROUP",
            "group_name": HOSTILE,
            "targets": "444444444444",
            "permission_set": "Developer",
            "reason": HOSTILE,
        },
        user_code="frank@example.com",
    )
    # the assignment fails: its key (with the group name) and the error reach Slack and the comment
    sb.faults.add(
        FaultRule(service="sso-admin", kind="access_denied", operation="CreateAccountAssignment", count=1000)
    )
    with caplog.at_level(logging.INFO):
        harness.run(allow_mass_delete=True)
    slack = _slack_texts(harness)
    assert any("&lt;!channel&gt;" in t for t in slack), slack
    for text in slack:
        assert "<!channel>" not in text and "<https://evil|click>" not in text
        assert "\x1b" not in text and "\x07" not in text
    comments = [c[2] for c in harness.comments()]
    assert comments
    assert all("\x1b" not in c and "\x07" not in c for c in comments)
    project = [r for r in caplog.records if r.name.startswith("idc_sync")]
    assert any("<!channel>" in r.getMessage() for r in project)  # the name is logged ...
    assert not [r.getMessage() for r in project if "\x1b" in r.getMessage() or "\x07" in r.getMessage()]


def _access_news(harness: Any) -> Counter[tuple[int, int]]:
    """(app, record) -> how many comments told it that access is live (alone or after its problems)."""
    headers = ("アクセス権を AWS IAM Identity Center に反映しました。", "Your access is live")
    return Counter((a, r) for a, r, t, _ in harness.comments() if any(h in t for h in headers))


def test_retried_apply_reports_already_in_place_not_succeeded(harness: Any, monkeypatch: Any) -> None:
    """The first try of apply_assignments applies everything, then its process dies (an exception after
    the apply); the retry finds the work done and the summary says so instead of "N succeeded"."""
    from idc_sync_airflow import steps

    real = steps._log_results
    crashed: list[str] = []

    def crash_once(what: str, results: Any) -> None:
        real(what, results)
        if what == "assignment" and not crashed:
            crashed.append(what)
            raise RuntimeError("worker lost after applying")

    monkeypatch.setattr(steps, "_log_results", crash_once)
    run = harness.run(allow_mass_delete=True)
    assert crashed and _state(run) == "success"
    audit = harness.last_audit()
    asg = [r for r in audit["results"] if r["kind"] in ("create_assignment", "delete_assignment")]
    assert all(r["status"] == "already_in_place" for r in asg), [r["status"] for r in asg]
    # every assignment the records ask for was created, and the LegacyDeveloper one deleted
    assert harness.assignments() == (SEEDED - {LEGACY}) | WANTED
    assert len(asg) == len(WANTED - SEEDED) + 1
    assert audit["outcome"]["already_in_place"] == sum(
        r["status"] == "already_in_place" for r in audit["results"]
    )
    assert f"already in place {audit['outcome']['already_in_place']}" in audit["summary"]
    assert audit["outcome"]["applied"] == sum(r["status"] == "succeeded" for r in audit["results"])
    # ...and yet the first try made that access: every record whose grants went live is told so, once
    # (found by the Celery soak: a retry overwrote the first try's journal and nobody was told)
    told = _access_news(harness)
    granted_records = {(2, rec) for rec, gs in BY_RECORD.items() if gs & (WANTED - SEEDED)}
    assert granted_records and granted_records <= set(told), sorted(granted_records - set(told))
    assert max(told.values()) == 1
    harness.run()
    assert _access_news(harness) == told, "told once"
